"""Devices: the registry of which driver owns which device, and the service that routes thing operations.

``codes`` is imported inside function instances too (by the SDK and the Link IoT Edge shims), so this package
imports nothing heavy at its top.
"""

"""``leda_python`` (the device bus library under Link IoT Edge's Python device-access SDK), as far as drivers use it.

Drivers import two things from it: the error codes and exceptions (``from leda_python import ledaException``,
``from leda_python.ledaException import LedaException``) and the callback base class
(``from leda_python import leda``; ``leda.BaseDeviceCallback``). Both are here, shared with ``lethingaccesssdk``,
so that ``except LedaException`` catches what the shim raises. The D-Bus layer (``LedaModule``, ``mbus``) is not:
on edgefc the device bus is the worker's socket, reached through ``lethingaccesssdk``.
"""

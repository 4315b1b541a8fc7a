"""``lecoresdk`` (Link IoT Edge's function SDK for Python) on edgefc: ``IoTData``, ``Client``,
``CredentialProviderChain``; see ``iot.py``, ``fc.py``, ``credential.py``."""

from lecoresdk.credential import CredentialProviderChain
from lecoresdk.fc import Client
from lecoresdk.iot import IoTData, RequestException

__all__ = ["Client", "CredentialProviderChain", "IoTData", "RequestException"]

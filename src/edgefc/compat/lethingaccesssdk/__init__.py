"""``lethingaccesssdk`` (Link IoT Edge's device-access SDK for Python) on edgefc; see ``thing_access.py``."""

from lethingaccesssdk.thing_access import Config, ThingAccessClient, ThingCallback, getConfig

__all__ = ["Config", "ThingAccessClient", "ThingCallback", "getConfig"]

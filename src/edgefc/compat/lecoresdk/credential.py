"""``CredentialProviderChain().get_credential()``: the function's Alibaba Cloud credentials.

On Link IoT Edge the gateway hands out STS credentials of the instance's role. edgefc has no cloud account of its
own: the credentials come from the function's ``env`` (``ALIBABA_CLOUD_ACCESS_KEY_ID``,
``ALIBABA_CLOUD_ACCESS_KEY_SECRET``, optionally ``ALIBABA_CLOUD_SECURITY_TOKEN`` — the names Alibaba Cloud's own
SDKs read). Without them ``get_credential()`` logs an error and returns None, as the SDK does when the gateway
cannot give any.
"""

from __future__ import annotations

import logging
import os
from typing import Any


class DefaultCredentialProvider:
    """Reads the credentials from the environment on each call."""

    def get(self) -> dict[str, str] | None:
        key_id = os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID")
        secret = os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        if not key_id or not secret:
            logging.error("FC_PYTHON:get credential fail: set ALIBABA_CLOUD_ACCESS_KEY_ID and "
                          "ALIBABA_CLOUD_ACCESS_KEY_SECRET in the function's env")  # fmt: skip
            return None
        return {"accessKeyId": key_id, "accessKeySecret": secret,
                "securityToken": os.environ.get("ALIBABA_CLOUD_SECURITY_TOKEN", "")}  # fmt: skip


class CredentialProviderChain:
    """A singleton, as in the SDK: every ``CredentialProviderChain()`` is the same object."""

    _instance: CredentialProviderChain | None = None
    providers: list[Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> CredentialProviderChain:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
            cls._instance.providers = [DefaultCredentialProvider()]
        return cls._instance

    def get_credential(self) -> dict[str, str] | None:
        """``{"accessKeyId", "accessKeySecret", "securityToken"}``, or None (logged) without credentials."""
        return self.providers[0].get()  # type: ignore[no-any-return]

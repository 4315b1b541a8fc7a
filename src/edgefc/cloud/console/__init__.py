"""The web console of the cloud (CONTRACT §7): server-rendered pages at ``/``, enhanced by small local scripts.

The cloud app calls :func:`mount`; its admin-route guard calls :func:`session_user` so that a signed-in browser
may use ``/v1`` too (unsafe methods then need the ``X-CSRF-Token`` header).
"""

from __future__ import annotations

from edgefc.cloud.console.mount import is_console_path, mount, session_user

__all__ = ["is_console_path", "mount", "session_user"]

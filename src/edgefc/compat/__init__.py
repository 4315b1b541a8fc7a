"""Shims of Alibaba Link IoT Edge's Python SDKs, so that code written for Link IoT Edge runs unmodified.

This folder (not the package) is on ``sys.path`` inside every function instance, *after* the function's code
and site-packages: ``import lethingaccesssdk`` and ``import lecoresdk`` find ``lethingaccesssdk/`` and
``lecoresdk/`` here unless the function ships its own copy or a real package of that name is installed, which
then wins. Each shim only translates names and shapes onto ``edgefc.sdk`` (``fc.driver``, ``fc.things``,
``fc.publish``, ``fc.invoke``); there is no second implementation. See docs/devices.md.
"""

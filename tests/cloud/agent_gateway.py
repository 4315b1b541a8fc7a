"""``python -m tests.cloud.agent_gateway gateway run …``: the real CLI, its API on a given address.

The gateway harness always asks for 127.0.0.1:0; a gateway in a test's network namespace must listen on the
namespace's end of the veth instead (``EDGEFC_TEST_LISTEN``), so the test (outside) can reach its API. The cloud
agent itself is the gateway's own, entered by its composition root when ``cloud.url`` is set.
"""

from __future__ import annotations

import os
import sys

from edgefc.cli.main import main

if __name__ == "__main__":
    listen = os.environ.get("EDGEFC_TEST_LISTEN")
    if listen and "--listen" in sys.argv:
        sys.argv[sys.argv.index("--listen") + 1] = listen
    main()

"""The fakes listen as a real service does: a burst of connections is queued by the
kernel, not dropped.

With socketserver's backlog of 5, the engine opening eight connections at once to a fake
whose accepting thread was waiting for the GIL had SYNs dropped and resent after Linux's
1 s retransmission timeout: one call in a batch took a second, and a benchmark run a
third longer (docs/performance.md, round 9).
"""

from __future__ import annotations

import contextlib
import socket

from tests.fakes.server import _HTTPServer, _KeepAliveHandler

BURST = 40  # connections at once, more than the engine's eight calls in flight


def test_a_burst_of_connections_is_queued_while_nothing_accepts() -> None:
    # The server is bound and listening but its loop never runs: every handshake the
    # kernel completes waits in the backlog. A dropped SYN would leave connect() hanging
    # past its timeout (the first retransmission comes after 1 s).
    httpd = _HTTPServer(("127.0.0.1", 0), _KeepAliveHandler)
    port = httpd.server_address[1]
    with contextlib.ExitStack() as stack:
        stack.callback(httpd.server_close)
        for _ in range(BURST):
            client = stack.enter_context(socket.socket())
            client.settimeout(2.0)
            client.connect(("127.0.0.1", port))

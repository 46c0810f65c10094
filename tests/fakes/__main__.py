"""Serve a fake from the command line, for multi-process tests.

    python -m tests.fakes worker --port 0 --key K [--max-sessions 8] [--item-latency 0.1]
    python -m tests.fakes writer --port 0 --key K [--max-batch-records 1000]
    python -m tests.fakes etl --port 0 --key K

Prints the base URL on the first line of stdout (flushed), then serves until SIGTERM or
SIGINT. The remote control is on: ``POST {root}/__fake__/call`` with
``{"method": "fail_next_requests", "args": [3]}``, ``POST {root}/__fake__/set`` with
``{"latency": 2.0}``, ``GET {root}/__fake__/calls``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from tests.fakes.etl import FakeEtl
from tests.fakes.server import FakeServer
from tests.fakes.worker import FakeWorker
from tests.fakes.writer import FakeWriter


def build(argv: list[str] | None = None) -> FakeServer:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes")
    parser.add_argument("kind", choices=("worker", "writer", "etl"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", default=None, help="bearer key (none: no auth)")
    parser.add_argument("--prefix", default=None, help="path prefix (default per kind)")
    parser.add_argument("--max-sessions", type=int, default=8)
    parser.add_argument("--ready-delay", type=float, default=0.0)
    parser.add_argument("--item-latency", type=float, default=0.0)
    parser.add_argument("--max-batch-records", type=int, default=1000)
    parser.add_argument("--keep-alive", action="store_true", help="HTTP/1.1 persistent connections")
    args = parser.parse_args(argv)
    common = {
        "api_key": args.key,
        "host": args.host,
        "port": args.port,
        "control": True,
        "keep_alive": args.keep_alive,
    }
    if args.prefix is not None:
        common["prefix"] = args.prefix
    if args.kind == "worker":
        return FakeWorker(
            max_sessions=args.max_sessions,
            ready_delay=args.ready_delay,
            item_latency=args.item_latency,
            **common,
        )
    if args.kind == "writer":
        return FakeWriter(max_batch_records=args.max_batch_records, **common)
    return FakeEtl(**common)


def main(argv: list[str] | None = None) -> int:
    server = build(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with server:
        print(server.base_url, flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

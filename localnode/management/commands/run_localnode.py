"""Runs the local worker's jobs: `manage.py run_localnode` (until SIGTERM/SIGINT) or
`--once` (process what is queued, then exit)."""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand

from localnode.runner import Runner


class Command(BaseCommand):
    help = "Run the built-in worker's scrape jobs (one thread per session, up to max_sessions)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="Process queued jobs and exit.")
        parser.add_argument(
            "--workers", type=int, default=None, help="Threads (default max_sessions)."
        )
        parser.add_argument("--poll", type=float, default=1.0, help="Seconds between polls.")

    def handle(self, *args: Any, **options: Any) -> None:
        runner = Runner(max_workers=options["workers"])
        if options["once"]:
            ran = runner.run_once()
            self.stdout.write(f"localnode: {ran} job(s) processed")
            return

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if runner.stopping.is_set():
                # A second signal: leave now; the leases of running jobs expire and
                # another runner resumes them.
                os._exit(1)
            self.stdout.write("localnode: stopping after the current items…")
            runner.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.stdout.write(f"localnode runner {runner.name} ({runner.max_workers} threads)")
        runner.run_forever(poll_s=options["poll"])
        self.stdout.write("localnode: stopped")

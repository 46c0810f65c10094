"""Start forward proxies on loopback and register them, so proxy rotation can be seen."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from registry.forward_proxy import ForwardProxy
from registry.models import Proxy, ProxyStatus

COUNTRIES = ["BR", "BR", "US", "MX"]


class Command(BaseCommand):
    help = "Run N forward proxies on 127.0.0.1 and register them as proxies until Ctrl-C."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--count", type=int, default=3)
        parser.add_argument("--first-port", type=int, default=8901)

    def handle(self, *args: Any, **options: Any) -> None:
        proxies = []
        for n in range(options["count"]):
            port = options["first_port"] + n
            proxy = ForwardProxy("127.0.0.1", port, "demo", "demo-pass").start()
            proxies.append(proxy)
            Proxy.objects.update_or_create(
                external_id=f"demo-px-{n + 1}",
                defaults={
                    "type": "datacenter",
                    "host": "127.0.0.1",
                    "port": port,
                    "username": "demo",
                    "password": "demo-pass",
                    "country": COUNTRIES[n % len(COUNTRIES)],
                    "enabled": True,
                    "status": ProxyStatus.AVAILABLE,
                    "provider": "demo",
                },
            )
            self.stdout.write(f"demo-px-{n + 1}: {proxy.url} (user demo)")
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *a: stop.set())
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
        self.stdout.write("Proxies running; Ctrl-C stops them and disables their rows.")
        while not stop.wait(1.0):
            pass
        for proxy in proxies:
            proxy.stop()
        Proxy.objects.filter(external_id__startswith="demo-px-").update(enabled=False)
        self.stdout.write("Stopped. " + ", ".join(f"{len(p.requests)} requests" for p in proxies))

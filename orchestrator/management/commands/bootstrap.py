"""First-run set-up, safe to repeat: the admin login (password printed once), the
built-in worker and writer, a default proxy strategy, and a few demo missions the
first time only, with a site rule for the demo's host that runs it in the browser
(Chromium) when the built-in worker can start one, so blocked pages keep a screenshot
of the block, and over HTTP otherwise."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from mission_control import extensions
from orchestrator import actions
from orchestrator.models import Mission
from registry.models import ConfigEntry, Engine, SiteConfig, Uploader, Worker, Writer

DEMO_MARKER = "bootstrap_demo_done"


class Command(BaseCommand):
    help = "Prepare an installation: admin login, local worker/writer, demo data (idempotent)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")
        parser.add_argument("--no-demo", action="store_true", help="Queue no demo missions.")
        parser.add_argument(
            "--banner", action="store_true", help="End with where to go: URLs, login, API token."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        base = options["base_url"].rstrip("/")
        self._admin(options["username"])
        if settings.LOCALNODE_ENABLED:
            self._localnode(base)
            if not options["no_demo"]:
                self._demo(base)
        if options["banner"]:
            self._banner(base, options["username"])

    def _banner(self, base: str, username: str) -> None:
        lines = [
            "",
            self.style.SUCCESS(f"Mission Control: {base}/"),
            f"  Dashboard      {base}/   (login: {username}; password printed on the first run)",
        ]
        if settings.LOCALNODE_ENABLED:
            lines.append(
                f"  Demo catalogue {base}/local/demo/   (products {base}/local/demo/p/1/ to /p/300/;"
                " paste them into Nova missão)"
            )
            lines += self._demo_engine_lines(base)
        lines += [
            f"  Admin          {base}/admin/",
            f"  API            {base}/api/   docs {base}/api/docs/",
            f"  API token      curl -d username={username} -d password=... {base}/api/auth/token/",
            "                 then send the header 'Authorization: Token <token>'",
            "  Ctrl-C stops everything.",
            "",
        ]
        self.stdout.write("\n".join(lines))

    def _demo_engine_lines(self, base: str) -> list[str]:
        """Which engine the demo's site rule runs (none without the demo)."""
        domain = actions.domain_of(base)
        if not SiteConfig.objects.filter(domain=domain).exists():
            return []
        _, reason = extensions.first("demo_engine")()
        if SiteConfig.for_domain(domain).engine == Engine.BROWSER:
            text = "browser (Chromium): blocked pages keep a screenshot of the block"
            return [f"  Demo engine    {text}" + (f"; but {reason}" if reason else "")]
        why = reason or f"the site rules for {domain} say so"
        return [
            f"  Demo engine    HTTP ({why}): blocked pages keep their status and HTML, no"
            " screenshot"
        ]

    def _admin(self, username: str) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("Admin login already exists (password was shown on the first run).")
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username, "", password)
        self.stdout.write(self.style.SUCCESS("Admin login created — shown only this once:"))
        self.stdout.write(f"  user: {username}\n  password: {password}")

    def _localnode(self, base: str) -> None:
        key = settings.LOCALNODE_API_KEY
        _, created = Worker.objects.update_or_create(
            name="local",
            defaults={
                "base_url": f"{base}/local/worker/api/v1",
                "api_key": key,
                "providers": ["local"],
            },
        )
        Writer.objects.update_or_create(
            name="local",
            defaults={"base_url": f"{base}/local/writer/api/v1", "api_key": key},
        )
        # The built-in uploader is enabled; nothing is sent until `uploads_enabled` is on.
        uploader, made = Uploader.objects.update_or_create(
            name="local", defaults={"base_url": f"{base}/local/uploader/api/v1", "api_key": key}
        )
        if made:
            Uploader.objects.filter(pk=uploader.pk).update(enabled=True)
        if not Writer.objects.filter(is_default=True).exists():
            Writer.objects.filter(name="local").update(is_default=True)
        # Direct connections unless the operator configures proxy strategies.
        SiteConfig.objects.get_or_create(
            domain="*", defaults={"proxy_types": [], "max_sessions": 2, "items_per_job": 25}
        )
        self.stdout.write(f"Local worker and writer {'registered' if created else 'up to date'}.")

    def _demo(self, base: str) -> None:
        if ConfigEntry.objects.filter(key=DEMO_MARKER).exists():
            return
        urls = extensions.first("demo_urls")(base, 120)
        # A few pages the demo's robots.txt disallows: they end robots_disallowed.
        urls[-3:] = extensions.first("demo_private_urls")(base, 3)
        engine, _ = extensions.first("demo_engine")()
        # The demo's host gets its own rule; an operator's rule for it is kept.
        SiteConfig.objects.get_or_create(
            domain=actions.domain_of(base), defaults={"engine": engine}
        )
        for n, chunk in enumerate((urls[:40], urls[40:80], urls[80:]), start=1):
            actions.create_mission(name=f"Demonstração {n}: catálogo", urls=chunk, priority=n)
        ConfigEntry.objects.create(key=DEMO_MARKER, value=True)
        self.stdout.write(
            f"Queued 3 demo missions ({Mission.objects.count()} missions in total);"
            f" the demo site runs with the {engine} engine."
        )

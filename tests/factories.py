"""factory-boy factories: valid defaults; a test overrides only what it is about."""

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from orchestrator.models import (
    BrowserSession,
    Mission,
    MissionEvent,
    MissionItem,
    OrchestratorInstance,
    RecurringMission,
)
from orchestrator.states import MissionStatus
from registry.models import ConfigEntry, Proxy, SiteConfig, Uploader, Worker, Writer


class UserFactory(factory.django.DjangoModelFactory[Any]):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "senha-forte-123")

    @factory.post_generation
    def role(self, create: bool, extracted: str | None, **kwargs: Any) -> None:
        if create and extracted:
            group, _ = Group.objects.get_or_create(name=extracted)
            self.groups.add(group)  # type: ignore[attr-defined]
        if create:
            self.save()  # type: ignore[attr-defined]


class WorkerFactory(factory.django.DjangoModelFactory[Worker]):
    class Meta:
        model = Worker

    name = factory.Sequence(lambda n: f"worker-{n}")
    base_url = factory.Sequence(lambda n: f"http://127.0.0.1:{18000 + n}/api/v1")
    api_key = "worker-secret-key"
    providers = factory.LazyFunction(lambda: ["local"])
    max_sessions = 8
    health_status = "ok"


class WriterFactory(factory.django.DjangoModelFactory[Writer]):
    class Meta:
        model = Writer

    name = factory.Sequence(lambda n: f"writer-{n}")
    base_url = factory.Sequence(lambda n: f"http://127.0.0.1:{19000 + n}/api/v1")
    api_key = "writer-secret-key"
    health_status = "ok"


class UploaderFactory(factory.django.DjangoModelFactory[Uploader]):
    class Meta:
        model = Uploader

    name = factory.Sequence(lambda n: f"uploader-{n}")
    base_url = factory.Sequence(lambda n: f"http://127.0.0.1:{20000 + n}/api/v1")


class ProxyFactory(factory.django.DjangoModelFactory[Proxy]):
    class Meta:
        model = Proxy

    external_id = factory.Sequence(lambda n: f"px-{n}")
    type = "datacenter"
    scheme = "http"
    host = factory.Sequence(lambda n: f"203.0.113.{n % 250 + 1}")
    port = 8000
    username = "cliente"
    password = "proxy-secret-pass"
    country = "BR"


class SiteConfigFactory(factory.django.DjangoModelFactory[SiteConfig]):
    class Meta:
        model = SiteConfig
        django_get_or_create = ("domain",)

    domain = "*"
    proxy_types = factory.LazyFunction(lambda: ["datacenter", "residential"])
    # Explicit, as the model's defaults were before settings inherited field by field.
    countries = factory.LazyFunction(list)
    blocked_proxies = factory.LazyFunction(list)
    max_sessions = 4
    items_per_job = 50


class MissionFactory(factory.django.DjangoModelFactory[Mission]):
    """`MissionFactory(urls=[...])` or `MissionFactory(n_items=10)` creates items too."""

    class Meta:
        model = Mission
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Missão {n}")
    domain = "example.com"
    status = MissionStatus.QUEUED

    @factory.post_generation
    def urls(self, create: bool, extracted: list[str] | None, **kwargs: Any) -> None:
        if not create or extracted is None:
            return
        MissionItem.objects.bulk_create(MissionItem(mission=self, url=u) for u in extracted)
        Mission.objects.filter(pk=self.pk).update(total_items=len(extracted))
        self.total_items = len(extracted)  # type: ignore[attr-defined]

    @factory.post_generation
    def n_items(self, create: bool, extracted: int | None, **kwargs: Any) -> None:
        if not create or not extracted:
            return
        domain = self.domain  # type: ignore[attr-defined]
        MissionItem.objects.bulk_create(
            MissionItem(mission=self, url=f"https://{domain}/p/{i}") for i in range(extracted)
        )
        Mission.objects.filter(pk=self.pk).update(total_items=extracted)
        self.total_items = extracted  # type: ignore[attr-defined]


class MissionItemFactory(factory.django.DjangoModelFactory[MissionItem]):
    class Meta:
        model = MissionItem

    mission = factory.SubFactory(MissionFactory)
    url = factory.Sequence(lambda n: f"https://example.com/item/{n}")


class BrowserSessionFactory(factory.django.DjangoModelFactory[BrowserSession]):
    class Meta:
        model = BrowserSession

    mission = factory.SubFactory(MissionFactory)
    worker = factory.SubFactory(WorkerFactory)
    proxy = factory.SubFactory(ProxyFactory)
    session_key = factory.Sequence(lambda n: f"m0-s{n}")
    proxy_external_id = factory.LazyAttribute(lambda s: s.proxy.external_id if s.proxy else "")
    proxy_type = factory.LazyAttribute(lambda s: s.proxy.type if s.proxy else "")
    proxy_country = factory.LazyAttribute(lambda s: s.proxy.country if s.proxy else "")
    holds_slot = False
    worker_slot = factory.Sequence(lambda n: n % 30000)
    proxy_slot = factory.Sequence(lambda n: n % 30000)


class MissionEventFactory(factory.django.DjangoModelFactory[MissionEvent]):
    class Meta:
        model = MissionEvent

    mission = factory.SubFactory(MissionFactory)
    kind = MissionEvent.Kind.INFO
    message = "evento"
    created_at = factory.LazyFunction(timezone.now)


class OrchestratorInstanceFactory(factory.django.DjangoModelFactory[OrchestratorInstance]):
    class Meta:
        model = OrchestratorInstance

    name = factory.Sequence(lambda n: f"host:{1000 + n}")
    hostname = "host"
    pid = factory.Sequence(lambda n: 1000 + n)
    started_at = factory.LazyFunction(timezone.now)
    heartbeat_at = factory.LazyFunction(timezone.now)


class RecurringMissionFactory(factory.django.DjangoModelFactory[RecurringMission]):
    class Meta:
        model = RecurringMission

    name = factory.Sequence(lambda n: f"Recorrente {n}")
    cron = "0 6 * * *"
    urls = factory.LazyFunction(lambda: ["https://example.com/a", "https://example.com/b"])


class ConfigEntryFactory(factory.django.DjangoModelFactory[ConfigEntry]):
    class Meta:
        model = ConfigEntry

    key = "max_retries"
    value = 2

"""`run_localnode --once` (and the django-q2 task) run jobs against the demo shop served
by live_server; a running job can be paged while it runs."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command
from django.db import OperationalError, connections
from django.test import Client
from django.utils import timezone

from localnode import engines, runner, tasks, worker_api
from localnode.demo import demo_urls
from localnode.models import LocalJob, LocalResult, LocalSession
from registry.models import SiteConfig
from tests.patience import Deadline

pytestmark = [pytest.mark.urls("localnode.root_urls")]


def wait_for(condition: Callable[[], Any], deadline_s: float = 15.0) -> Any:
    """`deadline_s` is a hang guard counted in the machine's time (tests.patience)."""
    deadline = Deadline(deadline_s)
    while not deadline.expired():
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    value = condition()
    if value:
        return value
    raise AssertionError("condition not met before the deadline")


def open_job(
    key: str, urls: list[str], *, options: dict[str, Any] | None = None, proxy_url: str = ""
) -> LocalJob:
    now = timezone.now()
    session, _ = worker_api.create_session(
        worker_api.validate_session_request(
            {
                "session_key": f"{key}-s",
                "proxy": {"id": "px", "url": proxy_url} if proxy_url else None,
            }
        ),
        now,
    )
    job, _ = worker_api.create_job(
        session.public_id,
        worker_api.validate_job_request(
            {
                "job_key": key,
                "items": [{"item_id": str(i), "url": u} for i, u in enumerate(urls)],
                "options": options or {"timeout_s": 10},
            }
        ),
        now,
    )
    return job


def results(job: LocalJob) -> dict[str, LocalResult]:
    return {r.item_id: r for r in LocalResult.objects.filter(job=job).order_by("sequence")}


@pytest.mark.django_db(transaction=True)
def test_run_once_scrapes_the_demo_shop(
    live_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    base = live_server.url.replace("127.0.0.1", "localhost")
    urls = [
        *demo_urls(base, 2),
        f"{base}/local/demo/status/404/",
        f"{base}/local/demo/p/97/",
        f"{base}/local/demo/p/89/",
        f"{base}/local/demo/captcha/",
        f"{base}/local/demo/status/503/",
    ]
    # The page timeout only turns a hang into a failure: generous, so a loaded 2-core
    # machine (Chromium, the live server and this run sharing it) never times a page out.
    job = open_job(
        "demo-j1", urls, options={"timeout_s": 120, "selectors": {"price": ".price", "sku": ".sku"}}
    )

    call_command("run_localnode", "--once")

    assert "1 job(s) processed" in capsys.readouterr().out
    job.refresh_from_db()
    assert job.status == "completed" and job.finished_at is not None
    assert (job.total, job.done, job.failed) == (7, 2, 5)
    got = results(job)
    assert list(got) == ["0", "1", "2", "3", "4", "5", "6"]  # one per item, in finish order
    first = got["0"]
    assert first.status == "ok" and first.http_status == 200
    assert first.data["title"].endswith("| Loja Demo")
    assert first.data["fields"]["price"].startswith("R$ ")
    assert first.data["fields"]["sku"] == "DEMO-00001"
    assert first.data["json_ld"][0]["@type"] == "Product"
    assert first.data["language"] == "pt-BR"
    assert first.data["canonical_url"].endswith("/local/demo/p/1/")
    assert (got["2"].status, got["2"].error_code, got["2"].http_status) == (
        "error",
        "http_error",
        404,
    )
    assert (got["3"].error_code, got["3"].http_status) == ("blocked", 429)
    assert (got["4"].error_code, got["4"].http_status) == ("blocked", 403)
    assert (got["5"].error_code, got["5"].http_status) == ("blocked", 200)
    assert (got["6"].error_code, got["6"].http_status) == ("http_error", 503)
    session = LocalSession.objects.get(pk=job.session_id)
    assert session.status == "ready" and session.current_job_id is None and session.phase == "idle"


@pytest.mark.django_db(transaction=True)
def test_job_options_selectors_win_over_the_site_config(live_server: Any) -> None:
    SiteConfig.objects.create(domain="*", selectors={"price": ".price"})
    job = open_job(
        "sel-j1",
        demo_urls(live_server.url, 1),
        options={"timeout_s": 10, "selectors": {"name": "h1", "nothing": ".nope"}},
    )
    runner.run_pending_jobs()
    data = results(job)["0"].data
    assert data["fields"]["name"].startswith(("Liquidificador", "Furadeira", "Cafeteira"))
    assert data["fields"] == {"name": data["h1"][0], "nothing": None}


@pytest.mark.django_db(transaction=True)
def test_network_failures_are_classified(live_server: Any) -> None:
    slow = open_job("slow-j1", [f"{live_server.url}/local/demo/p/37/"], options={"timeout_s": 0.3})
    dead_proxy = open_job("proxy-j1", ["http://example.com/"], proxy_url="http://127.0.0.1:9")
    no_dns = open_job("dns-j1", ["http://no-such-host.invalid/"])
    tasks.run_pending_jobs()
    assert results(slow)["0"].error_code == "timeout"
    assert results(dead_proxy)["0"].error_code == "proxy_error"
    assert results(no_dns)["0"].error_code == "dns_error"


@pytest.mark.django_db(transaction=True)
def test_a_running_job_can_be_paged_until_it_finishes(live_server: Any, settings: Any) -> None:
    settings.LOCALNODE_API_KEY = ""
    base = live_server.url
    job = open_job(
        "page-j1",
        [f"{base}/local/demo/p/1/", f"{base}/local/demo/p/37/", f"{base}/local/demo/p/2/"],
    )
    client = Client()
    url = f"/local/worker/api/v1/jobs/{job.public_id}/results"

    def run_in_thread() -> None:
        try:
            runner.run_pending_jobs()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run_in_thread)
    thread.start()
    try:
        # p/37 is slow: the first result is there while the job still runs.
        def first_page() -> dict[str, Any] | None:
            try:
                page: dict[str, Any] = client.get(url).json()
            except OperationalError:  # in-memory SQLite: the runner holds the table
                return None
            return page if page["results"] else None

        first = wait_for(first_page)
        assert first["job_status"] == "running"
        assert [r["item_id"] for r in first["results"]] == ["0"]
        assert first["next_cursor"] is not None
    finally:
        thread.join(30)
    rest = client.get(url, {"cursor": first["next_cursor"]}).json()
    assert [r["item_id"] for r in rest["results"]] == ["1", "2"]
    assert rest["next_cursor"] is None and rest["job_status"] == "completed"
    again = client.get(url, {"cursor": first["next_cursor"]}).json()
    assert again["results"] == rest["results"]


@pytest.mark.django_db(transaction=True)
def test_a_job_whose_runner_died_resumes_after_its_results(live_server: Any) -> None:
    job = open_job("resume-j1", demo_urls(live_server.url, 3))
    now = timezone.now()
    [claim] = runner.claim_jobs("dead-runner", 5, now - dt.timedelta(seconds=runner.LEASE_S + 1))
    LocalResult.objects.create(
        job=job, sequence=1, item_id="0", url=job.items[0]["url"], status="ok", fetched_at=now
    )
    assert runner.claim_jobs("other", 5, now) == []  # still leased (expired, not reaped)

    assert runner.run_pending_jobs() == 1  # the tick requeues the expired lease

    job.refresh_from_db()
    assert job.status == "completed" and job.lease_token == claim.token + 1
    assert [r.item_id for r in LocalResult.objects.filter(job=job).order_by("sequence")] == [
        "0",
        "1",
        "2",
    ]
    assert job.done == 2  # the progress of the dead runner's item was never counted


@pytest.mark.django_db(transaction=True)
def test_a_stale_runner_writes_nothing(live_server: Any) -> None:
    job = open_job("stale-j1", demo_urls(live_server.url, 1))
    [claim] = runner.claim_jobs("me", 1, timezone.now())
    LocalJob.objects.filter(pk=job.pk).update(lease_token=claim.token + 1)  # taken over
    assert runner.JobRun(claim, "me", threading.Event()).run() == "lost"
    assert not LocalResult.objects.filter(job=job).exists()


@pytest.mark.django_db(transaction=True)
def test_a_job_of_a_closed_session_is_cancelled_not_run(live_server: Any) -> None:
    job = open_job("closed-j1", demo_urls(live_server.url, 1))
    LocalSession.objects.filter(pk=job.session_id).update(status="closed")
    runner.run_pending_jobs()
    job.refresh_from_db()
    assert job.status == "cancelled" and not LocalResult.objects.filter(job=job).exists()


@pytest.mark.django_db(transaction=True)
def test_stopping_releases_the_job_back_to_the_queue(live_server: Any) -> None:
    job = open_job("stop-j1", demo_urls(live_server.url, 3))
    [claim] = runner.claim_jobs("me", 1, timezone.now())
    stopping = threading.Event()
    stopping.set()
    assert runner.JobRun(claim, "me", stopping).run() == "released"
    job.refresh_from_db()
    assert job.status == "queued" and job.locked_by == ""


@pytest.mark.django_db
def test_idle_sessions_past_their_timeout_are_closed() -> None:
    now = timezone.now()
    session, _ = worker_api.create_session(
        worker_api.validate_session_request({"session_key": "idle", "timeout_s": 60}), now
    )
    assert runner.close_idle_sessions(now + dt.timedelta(seconds=30)) == 0
    assert runner.close_idle_sessions(now + dt.timedelta(seconds=61)) == 1
    session.refresh_from_db()
    assert session.status == "closed" and session.error_code == "session_timeout"


@pytest.mark.browser
@pytest.mark.skipif(
    engines.browser_unavailable_reason() is not None,
    reason=f"browser engine unavailable: {engines.browser_unavailable_reason()}",
)
@pytest.mark.django_db(transaction=True)
def test_a_browser_session_scrapes_with_chromium(live_server: Any) -> None:
    now = timezone.now()
    session, _ = worker_api.create_session(
        worker_api.validate_session_request({"session_key": "br-s", "engine": "browser"}), now
    )
    job, _ = worker_api.create_job(
        session.public_id,
        worker_api.validate_job_request(
            {
                "job_key": "br-j1",
                "items": [
                    {"item_id": "a", "url": demo_urls(live_server.url, 1)[0]},
                    {"item_id": "b", "url": f"{live_server.url}/local/demo/status/404/"},
                ],
                "options": {"timeout_s": 30, "selectors": {"price": ".price"}},
            }
        ),
        now,
    )
    runner.run_pending_jobs()
    got = results(job)
    assert got["a"].status == "ok" and got["a"].data["fields"]["price"].startswith("R$ ")
    assert (got["b"].error_code, got["b"].http_status) == ("http_error", 404)

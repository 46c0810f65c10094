"""UploaderClient against docs/contracts/uploader-api.md."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from orchestrator.clients.base import ClientSettings, ServiceError
from orchestrator.clients.uploader import UploaderClient
from registry.models import Uploader
from tests.unit.test_clients_base import Recorder, error

FAST = ClientSettings(deadline=5, max_attempts=3, backoff_base=0.001)


def client(rec: Recorder) -> UploaderClient:
    return UploaderClient("http://up.test", "up-key", FAST, transport=httpx.MockTransport(rec))


def test_health() -> None:
    rec = Recorder(httpx.Response(200, json={"status": "ok", "version": "0.3", "disk": "90%"}))
    health = client(rec).health()
    assert (health.status, health.version) == ("ok", "0.3")


def test_upload_sends_the_content_in_base64() -> None:
    rec = Recorder(httpx.Response(201, json={"upload_id": "u-1", "url": "https://files/u-1"}))
    content = b'{"a": 1}\n\x00\xff'
    ack = client(rec).upload(
        "m42-export-1", 42, "export", "m42.jsonl", "application/x-ndjson", content
    )
    assert (ack.upload_id, ack.url) == ("u-1", "https://files/u-1")
    sent = json.loads(rec.requests[0].content)
    assert str(rec.requests[0].url) == "http://up.test/uploads"
    assert sent == {
        "upload_key": "m42-export-1",
        "mission_id": 42,
        "kind": "export",
        "filename": "m42.jsonl",
        "content_type": "application/x-ndjson",
        "content_base64": base64.b64encode(content).decode(),
    }
    assert base64.b64decode(sent["content_base64"]) == content


def test_upload_is_retried_with_the_same_key() -> None:
    rec = Recorder(
        error(503, "unavailable"), httpx.Response(200, json={"upload_id": "u-1", "url": "u"})
    )
    client(rec).upload("k", 1, "export", "f", "text/plain", b"x")
    assert [json.loads(r.content)["upload_key"] for r in rec.requests] == ["k", "k"]


def test_too_large_is_permanent() -> None:
    rec = Recorder(error(413, "too_large", "max 5 MB"))
    with pytest.raises(ServiceError) as info:
        client(rec).upload("k", 1, "export", "f", "text/plain", b"x")
    assert info.value.code == "too_large"
    assert not info.value.transient
    assert rec.calls == 1


def test_an_ack_without_url_is_invalid() -> None:
    rec = Recorder(httpx.Response(201, json={"upload_id": "u-1"}))
    with pytest.raises(ServiceError) as info:
        client(rec).upload("k", 1, "export", "f", "text/plain", b"x")
    assert info.value.code == "invalid_response"


def test_for_uploader_builds_from_a_registry_row() -> None:
    rec = Recorder(httpx.Response(200, json={"status": "ok"}))
    row = Uploader(name="u", base_url="http://up.test/v1/", api_key="k-123")
    UploaderClient.for_uploader(row, transport=httpx.MockTransport(rec)).health()
    assert str(rec.requests[0].url) == "http://up.test/v1/health"
    assert rec.requests[0].headers["Authorization"] == "Bearer k-123"

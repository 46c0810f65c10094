"""The built-in uploader (uploader-api.md): one file per upload_key under the data folder,
served only to logged-in users (issue #21)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from localnode.models import LocalUpload

pytestmark = [pytest.mark.django_db, pytest.mark.urls("localnode.root_urls")]


@pytest.fixture
def uploads_dir(settings: Any, tmp_path: Path) -> Path:
    settings.LOCALNODE_UPLOADS_DIR = tmp_path
    settings.LOCALNODE_API_KEY = "node-key"
    return tmp_path


def _post(client: Client, key: str, content: bytes) -> Any:
    return client.post(
        "/local/uploader/api/v1/uploads",
        {
            "upload_key": key,
            "mission_id": 7,
            "kind": "snapshot",
            "filename": "../../etc/passwd.json",
            "content_type": "application/json",
            "content_base64": base64.b64encode(content).decode(),
        },
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer node-key",
    )


def test_upload_is_stored_once_and_served_to_logged_in_users_only(
    uploads_dir: Path, client: Client, login: Callable[..., Client]
) -> None:
    first = _post(client, "m7-i1-a1-snapshot", b'{"a": 1}')
    assert first.status_code == 201
    again = _post(client, "m7-i1-a1-snapshot", b"other")
    assert again.status_code == 200 and again.json() == first.json()
    upload = LocalUpload.objects.get()
    stored = uploads_dir / upload.relpath
    assert stored.read_bytes() == b'{"a": 1}' and uploads_dir in stored.resolve().parents
    url = first.json()["url"]
    path = url[url.index("/local/") :]
    assert Client().get(path).status_code == 302  # to the login page
    viewer = login("viewer")
    response = viewer.get(path)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b'{"a": 1}'


def test_wrong_key_and_bad_body_are_4xx(uploads_dir: Path, client: Client) -> None:
    anon = client.post("/local/uploader/api/v1/uploads", {}, content_type="application/json")
    assert anon.status_code == 401
    bad = client.post(
        "/local/uploader/api/v1/uploads",
        {"upload_key": "k", "content_base64": "!!"},
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer node-key",
    )
    assert bad.status_code == 422 and "content_base64" in bad.json()["error"]["fields"]

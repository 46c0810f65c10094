"""The built-in uploader (docs/contracts/uploader-api.md): files under the data folder, one per
`upload_key` (the same key answers the same upload), served only to logged-in users."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError, transaction
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from localnode.http import BATCH_KEY_RE, api_view, invalid, json_body
from localnode.models import LocalUpload

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@api_view(("GET",))
def health(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok", "version": "1.0.0"})


def _answer(request: HttpRequest, upload: LocalUpload, status: int) -> JsonResponse:
    url = request.build_absolute_uri(reverse("localnode:upload-file", args=[upload.pk]))
    return JsonResponse({"upload_id": f"u-{upload.pk}", "url": url}, status=status)


def _validate(payload: dict[str, Any]) -> tuple[str, bytes]:
    key = payload.get("upload_key")
    errors: dict[str, str] = {}
    if not isinstance(key, str) or not BATCH_KEY_RE.match(key):
        errors["upload_key"] = "required: 1-128 characters of A-Za-z0-9._:-"
    for name in ("filename", "content_type"):
        if not isinstance(payload.get(name), str) or not payload.get(name):
            errors[name] = "required: a string"
    try:
        content = base64.b64decode(str(payload.get("content_base64") or ""), validate=True)
    except (binascii.Error, ValueError):
        errors["content_base64"] = "not base64"
        content = b""
    if errors:
        raise invalid(errors)
    assert isinstance(key, str)
    return key, content


@api_view(("POST",))
def uploads(request: HttpRequest) -> HttpResponse:
    payload = json_body(request)
    key, content = _validate(payload)
    known = LocalUpload.objects.filter(upload_key=key).first()
    if known is not None:
        return _answer(request, known, 200)
    mission = str(payload.get("mission_id"))
    mission_id = int(mission) if mission.isdigit() and len(mission) < 18 else None
    name = _SAFE_NAME.sub("_", str(payload["filename"]))[-120:] or "file"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    relpath = f"{mission_id or 'other'}/{digest}-{name}"
    path = Path(settings.LOCALNODE_UPLOADS_DIR) / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    try:
        with transaction.atomic():
            upload = LocalUpload.objects.create(
                upload_key=key,
                mission_id=mission_id,
                kind=str(payload.get("kind") or "")[:40],
                filename=name,
                content_type=str(payload["content_type"])[:100],
                relpath=relpath,
                size=len(content),
                created_at=timezone.now(),
            )
    except IntegrityError:
        return _answer(request, LocalUpload.objects.get(upload_key=key), 200)
    return _answer(request, upload, 201)


def prune_uploads(cutoff: dt.datetime) -> int:
    """Retention (the ``prune_uploads`` hook): files stored before `cutoff` are deleted,
    file first, then their rows, in small batches. Returns how many went."""
    root = Path(settings.LOCALNODE_UPLOADS_DIR).resolve()
    removed = 0
    while True:
        batch = list(
            LocalUpload.objects.filter(created_at__lt=cutoff).order_by("id").only("relpath")[:200]
        )
        if not batch:
            return removed
        for upload in batch:
            path = (root / upload.relpath).resolve()
            if root in path.parents:
                path.unlink(missing_ok=True)
        removed += LocalUpload.objects.filter(pk__in=[u.pk for u in batch]).delete()[0]


@require_GET
@login_required
def upload_file(request: HttpRequest, pk: int) -> FileResponse:
    upload = LocalUpload.objects.filter(pk=pk).first()
    if upload is None:
        raise Http404
    root = Path(settings.LOCALNODE_UPLOADS_DIR).resolve()
    path = (root / upload.relpath).resolve()
    if root not in path.parents or not path.is_file():
        raise Http404
    response = FileResponse(path.open("rb"), content_type=upload.content_type)
    response["Content-Disposition"] = f'attachment; filename="{upload.filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response

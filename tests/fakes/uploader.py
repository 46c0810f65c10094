"""A fake Uploader speaking docs/contracts/uploader-api.md over real HTTP on loopback."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from tests.fakes.server import KEY_RE, ApiError, FakeServer, Request, Response, invalid_request


class FakeUploader(FakeServer):
    """``files`` holds what arrived, by upload_key; ``unavailable`` answers 503."""

    def __init__(self, *, api_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(api_key=api_key, **kwargs)
        self.unavailable = False
        self.files: dict[str, dict[str, Any]] = {}  # by upload_key: the request, decoded
        self.route("GET", "/health", lambda req: Response(200, {"status": "ok", "version": "1"}))
        self.route("POST", "/uploads", self._upload, body=True)

    def _upload(self, req: Request) -> Response:
        if self.unavailable:
            raise ApiError(503, "unavailable", "uploader unavailable")
        body = req.body
        if not isinstance(body, dict):
            raise invalid_request({"body": "must be a JSON object"})
        key = body.get("upload_key")
        if not isinstance(key, str) or not KEY_RE.match(key):
            raise invalid_request({"upload_key": "required: 1-128 characters of A-Za-z0-9._:-"})
        with self.lock:
            known = self.files.get(key)
            if known is not None:
                return Response(200, known["answer"])
            try:
                content = base64.b64decode(str(body.get("content_base64") or ""), validate=True)
            except (binascii.Error, ValueError):
                raise invalid_request({"content_base64": "not base64"}) from None
            answer = {"upload_id": f"u-{len(self.files) + 1}", "url": f"{self.root_url}/f/{key}"}
            self.files[key] = {**body, "content": content, "answer": answer}
        return Response(201, answer)

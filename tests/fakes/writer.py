"""A fake Writer speaking docs/contracts/writer-api.md over real HTTP on loopback.

Mission ids are normalized for keys: ``42`` and ``"42"`` are the same mission (``int``
when numeric), so ``fake.records[(42, "1001")]`` and ``fake.stored_count("42")`` work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.fakes.server import (
    KEY_RE,
    ApiError,
    FakeServer,
    Request,
    Response,
    invalid_request,
)

MissionKey = int | str


def mission_key(value: object) -> MissionKey:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value)
    return int(text) if text.isdigit() else text


@dataclass
class FakeBatch:
    batch_id: str
    batch_key: str
    mission: dict[str, Any]
    records: list[dict[str, Any]]
    stored: int
    duplicates: int
    received: int = 1  # how many times this batch_key arrived
    answered_503: bool = False  # stored, then the answer was a 503 (fail_after_store_next)


@dataclass
class CompleteCall:
    mission_id: MissionKey
    payload: Any
    status: int


def _item_ids(records: list[Any]) -> list[Any]:
    return sorted(str(r.get("item_id")) if isinstance(r, dict) else repr(r) for r in records)


class FakeWriter(FakeServer):
    """See the module docstring. Every public attribute is a switch settable at run time."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        max_batch_records: int = 1000,
        version: str = "1.0.0",
        **kwargs: Any,
    ) -> None:
        super().__init__(api_key=api_key, **kwargs)
        self.max_batch_records = max_batch_records
        self.version = version
        self.health_status = "ok"
        self.unavailable = False  # every POST answers 503 unavailable while True
        self.read_back = False  # True: lists the read_back capability and serves records
        self.invalid_item_ids: set[str] = set()  # records with these ids → 422 invalid_records
        self._fail_after_store = 0
        # Share of accepted batches stored, then answered 503 (drawn from `fault_rng`).
        self.fail_after_store_rate = 0.0
        # State and inspection.
        self.records: dict[tuple[MissionKey, str], dict[str, Any]] = {}
        self.batches: dict[str, FakeBatch] = {}  # by batch_key
        self.duplicate_records_received = 0  # records that arrived again (not stored)
        self.duplicate_batches_received = 0  # batch_keys that arrived again
        # batch_keys that arrived again with other records (a key reused: must stay 0).
        self.batch_key_conflicts: list[str] = []
        self.completed: dict[MissionKey, dict[str, Any]] = {}  # accepted complete payloads
        self.complete_calls: list[CompleteCall] = []
        self._seq = 0

        self.route("GET", "/health", self._health)
        self.route("POST", "/batches", self._create_batch, body=True)
        self.route("POST", "/missions/{mission_id}/complete", self._complete, body=True)
        self.route("GET", "/missions/{mission_id}/records", self._records)

    # ------------------------------------------------------------ test controls
    def fail_after_store_next(self, n: int) -> None:
        """The next ``n`` accepted batches are stored, then answered 503 unavailable."""
        with self.lock:
            self._fail_after_store += n

    def clear_faults(self) -> None:
        super().clear_faults()
        with self.lock:
            self.fail_after_store_rate = 0.0

    # ---------------------------------------------------------------- inspection
    def stored_count(self, mission_id: object) -> int:
        key = mission_key(mission_id)
        with self.lock:
            return sum(1 for m, _ in self.records if m == key)

    def item_ids(self, mission_id: object) -> set[str]:
        key = mission_key(mission_id)
        with self.lock:
            return {item for m, item in self.records if m == key}

    def batch_by_id(self, batch_id: str) -> FakeBatch | None:
        with self.lock:
            return next((b for b in self.batches.values() if b.batch_id == batch_id), None)

    # ----------------------------------------------------------------- routes
    def _health(self, req: Request) -> Response:
        return Response(
            200,
            {
                "status": self.health_status,
                "version": self.version,
                "max_batch_records": self.max_batch_records,
                "capabilities": ["read_back"] if self.read_back else [],
            },
        )

    def _records(self, req: Request) -> Response:
        """Optional read-back: pages in (mission, item_id) insertion order; the cursor is
        the index of the next record."""
        if not self.read_back:
            raise ApiError(404, "not_found", "this writer does not offer read-back")
        mkey = mission_key(req.params["mission_id"])
        limit_text = req.query.get("limit", "500")
        cursor_text = req.query.get("cursor", "0")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            raise invalid_request({"limit": "1..1000"})
        if not cursor_text.isdigit():
            raise invalid_request({"cursor": "unknown cursor"})
        start, limit = int(cursor_text), int(limit_text)
        with self.lock:
            mine = [rec for (m, _), rec in self.records.items() if m == mkey]
        page = mine[start : start + limit]
        more = start + limit < len(mine)
        return Response(200, {"records": page, "next_cursor": str(start + limit) if more else None})

    def _create_batch(self, req: Request) -> Response:
        if self.unavailable:
            raise ApiError(503, "unavailable", "writer unavailable")
        body = req.body
        if not isinstance(body, dict):
            raise invalid_request({"body": "must be a JSON object"})
        errors: dict[str, str] = {}
        key = body.get("batch_key")
        if not isinstance(key, str) or not KEY_RE.match(key):
            errors["batch_key"] = "required: 1-128 characters of A-Za-z0-9._:-"
        mission = body.get("mission")
        if not isinstance(mission, dict) or not isinstance(mission.get("id"), int | str):
            errors["mission"] = "required: an object with an id"
        records = body.get("records")
        if not isinstance(records, list):
            errors["records"] = "required: a list"
        if errors:
            raise invalid_request(errors)
        assert isinstance(key, str) and isinstance(mission, dict) and isinstance(records, list)
        known = self.batches.get(key)
        if known is not None:
            if _item_ids(records) != _item_ids(known.records):
                self.batch_key_conflicts.append(key)
            known.received += 1
            self.duplicate_batches_received += 1
            return Response(200, self._batch_body(known, duplicate=True))
        if len(records) > self.max_batch_records:
            raise ApiError(
                413,
                "batch_too_large",
                f"{len(records)} records; at most {self.max_batch_records} per batch",
            )
        bad: dict[str, str] = {}
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                bad[f"records[{i}]"] = "must be an object"
                continue
            item_id = rec.get("item_id")
            if not isinstance(item_id, str) or not 1 <= len(item_id) <= 64:
                bad[f"records[{i}].item_id"] = "required: a string of 1-64 characters"
            elif item_id in self.invalid_item_ids:
                bad[f"records[{i}]"] = "rejected by the writer"
            if not isinstance(rec.get("url"), str) or not rec.get("url"):
                bad[f"records[{i}].url"] = "required: a string"
            if "data" in rec and rec["data"] is not None and not isinstance(rec["data"], dict):
                bad[f"records[{i}].data"] = "must be an object"
        if bad:
            raise ApiError(422, "invalid_records", "some records are invalid", fields=bad)
        mkey = mission_key(mission["id"])
        stored = duplicates = 0
        for rec in records:
            natural = (mkey, rec["item_id"])
            if natural in self.records:
                duplicates += 1
            else:
                self.records[natural] = rec
                stored += 1
        self.duplicate_records_received += duplicates
        self._seq += 1
        batch = FakeBatch(f"b-{self._seq}", key, mission, records, stored, duplicates)
        self.batches[key] = batch
        after_store = self._fail_after_store > 0
        if after_store:
            self._fail_after_store -= 1
        elif self.fail_after_store_rate and self.fault_rng.random() < self.fail_after_store_rate:
            after_store = True
            self.faults_served["after_store"] += 1
        if after_store:
            batch.answered_503 = True
            raise ApiError(503, "unavailable", "stored, but failed before answering")
        return Response(201, self._batch_body(batch, duplicate=False))

    @staticmethod
    def _batch_body(batch: FakeBatch, *, duplicate: bool) -> dict[str, Any]:
        return {
            "batch_id": batch.batch_id,
            "stored": batch.stored,
            "duplicates": batch.duplicates,
            "duplicate": duplicate,
        }

    def _complete(self, req: Request) -> Response:
        mkey = mission_key(req.params["mission_id"])
        if self.unavailable:
            self.complete_calls.append(CompleteCall(mkey, req.body, 503))
            raise ApiError(503, "unavailable", "writer unavailable")
        body = req.body
        total = body.get("total_records") if isinstance(body, dict) else None
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            self.complete_calls.append(CompleteCall(mkey, body, 422))
            raise invalid_request({"total_records": "required: a non-negative integer"})
        assert isinstance(body, dict)
        stored = sum(1 for m, _ in self.records if m == mkey)
        if stored != total:
            self.complete_calls.append(CompleteCall(mkey, body, 409))
            raise ApiError(
                409,
                "count_mismatch",
                f"writer holds {stored} records, client says {total}",
                extra={"stored_records": stored, "total_records": total},
            )
        self.complete_calls.append(CompleteCall(mkey, body, 200))
        self.completed[mkey] = body
        return Response(200, {"mission_id": mkey, "stored_records": stored})

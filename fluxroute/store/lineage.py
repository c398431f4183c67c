"""Draft sets and image lineage in the store: which images were drafts of a set, which final came from which
draft (and, for later tools, which edit or upscale came from which image)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, get_args

from fluxroute.errors import JobNotFound
from fluxroute.store import ledger
from fluxroute.store.database import Connection, Row
from fluxroute.store.money import from_micros
from fluxroute.store.records import from_iso, to_iso, utc_now

Relation = Literal["draft_of", "finalized_from", "edited_from", "varied_from", "upscaled_from"]
RELATIONS: frozenset[str] = frozenset(get_args(Relation))


@dataclass(frozen=True)
class DraftSetRecord:
    """A draft set: the request it varies, its drafts (one dict each: number, job_id, image_index, seed, cost_usd,
    path), what else the router kept (plan explanation, contact sheet) and the total charged for it."""

    id: str
    created_at: datetime
    request: dict[str, object]
    drafts: list[dict[str, object]]
    detail: dict[str, object]
    total_cost: Decimal


@dataclass(frozen=True)
class LineageLink:
    """Image `image_index` of job `job_id` came from image `parent_index` of `parent_job_id` by `relation`
    (for draft_of the parent is a draft set: its id, and the draft's number counted from 1)."""

    job_id: str
    image_index: int
    parent_job_id: str
    parent_index: int
    relation: Relation
    created_at: datetime


def insert_draft_set(
    conn: Connection,
    request: dict[str, object],
    drafts: list[dict[str, object]],
    total_cost: Decimal,
    detail: dict[str, object] | None,
    idempotency_key: str | None = None,
) -> DraftSetRecord:
    if idempotency_key is not None:
        row = conn.execute("SELECT * FROM draft_sets WHERE idempotency_key = ?", (idempotency_key,)).fetchone()
        if row is not None:
            return _draft_set(row)  # the same calls again: the set they made the first time
    micros = ledger.money_micros(total_cost, "draft set total")
    now = utc_now()
    record = DraftSetRecord(
        id=uuid.uuid4().hex,
        created_at=now,
        request=json.loads(json.dumps(request, allow_nan=False)),
        drafts=json.loads(json.dumps(drafts, allow_nan=False)),
        detail=json.loads(json.dumps(detail or {}, allow_nan=False)),
        total_cost=from_micros(micros),
    )
    conn.execute(
        "INSERT INTO draft_sets (id, idempotency_key, created_at, request_json, drafts_json, detail_json,"
        " total_cost_micros) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            record.id,
            idempotency_key,
            to_iso(now),
            json.dumps(request, sort_keys=True, allow_nan=False),
            json.dumps(drafts, allow_nan=False),
            json.dumps(record.detail, sort_keys=True, allow_nan=False),
            micros,
        ),
    )
    for draft in drafts:
        job_id, image_index = str(draft["job_id"]), _int(draft["image_index"])
        _insert_link(conn, job_id, image_index, record.id, _int(draft["number"]), "draft_of", now)
    return record


def select_draft_set(conn: Connection, draft_set_id: str) -> DraftSetRecord:
    row = conn.execute("SELECT * FROM draft_sets WHERE id = ?", (draft_set_id,)).fetchone()
    if row is None:
        raise JobNotFound(f"no draft set {draft_set_id!r} in the store")
    return _draft_set(row)


def select_draft_sets(conn: Connection, limit: int) -> list[DraftSetRecord]:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    # rowid: SQLite's implicit insertion order; PostgreSQL's draft_sets table has an explicit column of that name
    rows = conn.execute("SELECT * FROM draft_sets ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,))
    return [_draft_set(row) for row in rows.fetchall()]


def insert_link(
    conn: Connection, job_id: str, image_index: int, parent_job_id: str, parent_index: int, relation: str
) -> LineageLink:
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {', '.join(sorted(RELATIONS))}; got {relation!r}")
    return _insert_link(conn, job_id, image_index, parent_job_id, parent_index, relation, utc_now())


def select_links(conn: Connection, job_id: str) -> list[LineageLink]:
    """Every link of job `job_id`'s images: to their parents, and from their children."""
    rows = conn.execute(
        "SELECT * FROM image_lineage WHERE job_id = ? OR parent_job_id = ? ORDER BY created_at, image_index",
        (job_id, job_id),
    ).fetchall()
    return [_link(row) for row in rows]


def _insert_link(
    conn: Connection,
    job_id: str,
    image_index: int,
    parent_job_id: str,
    parent_index: int,
    relation: str,
    now: datetime,
) -> LineageLink:
    conn.execute(
        "INSERT INTO image_lineage (job_id, image_index, parent_job_id, parent_index, relation, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (job_id, image_index, parent_job_id, parent_index, relation, to_iso(now)),
    )
    return LineageLink(job_id, image_index, parent_job_id, parent_index, relation, now)  # type: ignore[arg-type]


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _draft_set(row: Row) -> DraftSetRecord:
    return DraftSetRecord(
        id=row["id"],
        created_at=from_iso(row["created_at"]),
        request=json.loads(row["request_json"]),
        drafts=json.loads(row["drafts_json"]),
        detail=json.loads(row["detail_json"] or "{}"),
        total_cost=from_micros(int(row["total_cost_micros"])),
    )


def _link(row: Row) -> LineageLink:
    return LineageLink(
        job_id=row["job_id"],
        image_index=int(row["image_index"]),
        parent_job_id=row["parent_job_id"],
        parent_index=int(row["parent_index"]),
        relation=row["relation"],
        created_at=from_iso(row["created_at"]),
    )

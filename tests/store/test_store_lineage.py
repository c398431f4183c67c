"""Draft sets and image lineage, through the Store interface (every backend)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from fluxroute.errors import JobNotFound
from fluxroute.store import Store


def _drafts(job_ids: list[str]) -> list[dict[str, object]]:
    return [
        {"number": n, "job_id": job_id, "image_index": 0, "seed": 41 + n, "cost_usd": 0.003, "path": f"/x/{n}.png"}
        for n, job_id in enumerate(job_ids, start=1)
    ]


def test_a_draft_set_is_recorded_with_its_drafts_and_total(store: Store) -> None:
    jobs = [store.create_job({"prompt": f"fox {n}"})[0].id for n in range(2)]
    recorded = store.record_draft_set({"prompt": "fox"}, _drafts(jobs), Decimal("0.006"), {"explanation": "cheap"})

    again = store.get_draft_set(recorded.id)
    assert again.request == {"prompt": "fox"}
    assert [d["job_id"] for d in again.drafts] == jobs
    assert again.total_cost == Decimal("0.006")
    assert again.detail == {"explanation": "cheap"}
    assert [s.id for s in store.list_draft_sets()] == [recorded.id]


def test_each_draft_links_to_its_set_by_number(store: Store) -> None:
    jobs = [store.create_job({"prompt": f"fox {n}"})[0].id for n in range(2)]
    recorded = store.record_draft_set({"prompt": "fox"}, _drafts(jobs), Decimal("0.006"))

    links = store.lineage(jobs[1])
    assert [(link.parent_job_id, link.parent_index, link.relation) for link in links] == [(recorded.id, 2, "draft_of")]


def test_a_final_links_to_its_draft_and_the_draft_sees_its_child(store_factory: Callable[[], Store]) -> None:
    store = store_factory()
    draft = store.create_job({"prompt": "fox"})[0].id
    final = store.create_job({"prompt": "fox, final"})[0].id
    store.record_lineage(final, 0, draft, 0, "finalized_from")
    store.record_lineage(final, 0, draft, 0, "finalized_from")  # recorded once

    other = store_factory()  # another handle, as another process has
    assert [(lk.job_id, lk.parent_job_id, lk.relation) for lk in other.lineage(final)] == [
        (final, draft, "finalized_from")
    ]
    assert [lk.job_id for lk in other.lineage(draft)] == [final]


def test_an_unknown_relation_is_refused(store: Store) -> None:
    job = store.create_job({"prompt": "fox"})[0].id
    with pytest.raises(ValueError, match="relation must be one of"):
        store.record_lineage(job, 0, job, 0, "copied_from")


def test_an_unknown_draft_set_is_not_found(store: Store) -> None:
    with pytest.raises(JobNotFound, match="no draft set"):
        store.get_draft_set("nope")


def test_a_draft_set_under_a_used_key_is_the_first_one(store: Store) -> None:
    job = store.create_job({"prompt": "fox"})[0].id
    first = store.record_draft_set({"prompt": "fox"}, _drafts([job]), Decimal("0.003"), idempotency_key="k1")
    again = store.record_draft_set({"prompt": "fox"}, _drafts([job]), Decimal("0.003"), idempotency_key="k1")
    assert again.id == first.id and len(store.list_draft_sets()) == 1

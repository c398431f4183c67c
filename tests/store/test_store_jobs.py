"""Tests for jobs (idempotent creation, listing, updates) and the attempt lifecycle."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from fluxroute.errors import IdempotencyConflict, JobNotFound
from fluxroute.store import JobRecord, Store

REQUEST: dict[str, object] = {"prompt": "a red fox in snow", "width": 1024, "height": 768}


def test_a_new_job_is_queued_with_its_request_and_timestamps(store: Store) -> None:
    job, created = store.create_job(REQUEST)

    assert created is True
    assert job.status == "queued"
    assert job.request == REQUEST
    assert len(job.id) == 32
    assert job.idempotency_key is None
    assert job.created_at == job.updated_at
    assert job.created_at.tzinfo is not None
    assert store.get_job(job.id) == job


def test_the_same_key_with_the_same_request_returns_the_existing_job(store: Store) -> None:
    first, first_created = store.create_job(REQUEST, idempotency_key="abc")
    # key order must not matter: the hash is over canonical JSON
    reordered = dict(reversed(list(REQUEST.items())))
    second, second_created = store.create_job(reordered, idempotency_key="abc")

    assert (first_created, second_created) == (True, False)
    assert second == first
    assert len(store.list_jobs()) == 1


def test_the_same_key_with_a_different_request_is_a_conflict_naming_key_and_job(store: Store) -> None:
    job, _ = store.create_job(REQUEST, idempotency_key="abc")

    with pytest.raises(IdempotencyConflict, match=rf"'abc'.*{job.id}"):
        store.create_job({**REQUEST, "width": 512}, idempotency_key="abc")
    assert len(store.list_jobs()) == 1


def test_jobs_without_a_key_are_never_deduplicated(store: Store) -> None:
    first, _ = store.create_job(REQUEST)
    second, created = store.create_job(REQUEST)

    assert created is True
    assert first.id != second.id


def test_concurrent_creates_with_one_key_from_eight_threads_make_exactly_one_job(store: Store) -> None:
    barrier = threading.Barrier(8)
    outcomes: list[tuple[JobRecord, bool]] = []
    lock = threading.Lock()

    def create() -> None:
        barrier.wait()
        outcome = store.create_job(REQUEST, idempotency_key="race")
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(outcomes) == 8
    assert sum(created for _, created in outcomes) == 1
    assert len({job.id for job, _ in outcomes}) == 1
    assert len(store.list_jobs()) == 1


@pytest.mark.parametrize(
    "request_dict",
    [
        {"prompt": "x", "api_key": "sk-1"},
        {"prompt": "x", "provider": {"FAL_KEY": "abc"}},
        {"prompt": "x", "headers": [{"Authorization": "Bearer abc"}]},
        {"prompt": "x", "krea-api-token": "abc"},
        {"prompt": "x", "options": {"token": "abc"}},
    ],
)
def test_a_request_holding_a_credential_like_key_is_refused(store: Store, request_dict: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="credential-like key"):
        store.create_job(request_dict)
    assert store.list_jobs() == []


def test_a_request_that_is_not_json_is_refused_with_value_error(store: Store) -> None:
    with pytest.raises(ValueError, match="JSON"):
        store.create_job({"prompt": object()})


def test_unknown_ids_raise_job_not_found_and_unknown_keys_find_nothing(store: Store) -> None:
    with pytest.raises(JobNotFound, match="nope"):
        store.get_job("nope")
    with pytest.raises(JobNotFound):
        store.update_job("nope", status="running")
    with pytest.raises(JobNotFound):
        store.start_attempt("nope", offer_id="o", provider="p", model="m", estimated_cost=Decimal(0))
    assert store.find_job_by_key("missing") is None


def test_list_jobs_is_newest_first_limited_and_filtered_by_status(store: Store) -> None:
    ids = [store.create_job({"n": n})[0].id for n in range(5)]
    store.update_job(ids[1], status="succeeded", result={"images": ["a.png"]})
    store.update_job(ids[3], status="succeeded", result={"images": ["b.png"]})

    assert [job.id for job in store.list_jobs()] == list(reversed(ids))
    assert [job.id for job in store.list_jobs(limit=2)] == [ids[4], ids[3]]
    assert [job.id for job in store.list_jobs(status="succeeded")] == [ids[3], ids[1]]
    with pytest.raises(ValueError, match="job status"):
        store.list_jobs(status="done")


def test_update_job_sets_status_and_keeps_result_and_error_unless_given(store: Store) -> None:
    job, _ = store.create_job(REQUEST)

    running = store.update_job(job.id, status="running")
    failed = store.update_job(job.id, status="failed", error="fal: 500")
    retried = store.update_job(job.id, status="succeeded", result={"images": ["x.png"]})

    assert running.status == "running"
    assert running.updated_at >= job.updated_at
    assert (failed.status, failed.error) == ("failed", "fal: 500")
    assert retried.result == {"images": ["x.png"]}
    assert retried.error == "fal: 500"
    assert store.get_job(job.id) == retried


def test_attempts_go_from_submitting_to_in_flight_to_finished(store: Store) -> None:
    job, _ = store.create_job(REQUEST)
    attempt = store.start_attempt(
        job.id,
        offer_id="fal:flux-dev",
        provider="fal",
        model="flux-dev",
        estimated_cost=Decimal("0.025"),
        detail={"app": "fal-ai/flux/dev"},
    )
    assert (attempt.seq, attempt.status, attempt.provider_job_id) == (1, "submitting", None)
    assert attempt.estimated_cost == Decimal("0.025")
    assert store.submitting_attempts() == [attempt]
    assert store.in_flight_attempts() == []

    submitted = store.mark_submitted(attempt.id, "req-123", detail={"status_url": "https://q/1"})
    assert submitted.status == "in_flight"
    assert submitted.provider_job_id == "req-123"
    assert submitted.detail == {"app": "fal-ai/flux/dev", "status_url": "https://q/1"}
    assert store.in_flight_attempts() == [submitted]
    assert store.submitting_attempts() == []

    finished = store.finish_attempt(attempt.id, status="succeeded", cost=Decimal("0.0250004"))
    assert finished.status == "succeeded"
    assert finished.cost == Decimal("0.025")
    assert finished.finished_at is not None
    assert store.in_flight_attempts() == []
    assert store.attempts_for(job.id) == [finished]


def test_attempt_sequence_numbers_count_up_per_job(store: Store) -> None:
    job, _ = store.create_job(REQUEST)
    other, _ = store.create_job(REQUEST)
    for provider in ("krea", "fal", "local"):
        store.start_attempt(job.id, offer_id=provider, provider=provider, model="m", estimated_cost=Decimal(0))
    store.start_attempt(other.id, offer_id="fal", provider="fal", model="m", estimated_cost=Decimal(0))

    assert [(a.seq, a.provider) for a in store.attempts_for(job.id)] == [
        (1, "krea"),
        (2, "fal"),
        (3, "local"),
    ]
    assert [a.seq for a in store.attempts_for(other.id)] == [1]


def test_a_finished_attempt_cannot_go_back_in_flight(store: Store) -> None:
    job, _ = store.create_job(REQUEST)
    attempt = store.start_attempt(job.id, offer_id="o", provider="krea", model="m", estimated_cost=Decimal(0))
    store.finish_attempt(attempt.id, status="failed", error="krea: 422 bad size")

    with pytest.raises(ValueError, match="already failed"):
        store.mark_submitted(attempt.id, "late-id")
    assert store.attempts_for(job.id)[0].error == "krea: 422 bad size"


def test_finish_attempt_refuses_an_unfinished_status_and_unknown_attempts(store: Store) -> None:
    job, _ = store.create_job(REQUEST)
    attempt = store.start_attempt(job.id, offer_id="o", provider="fal", model="m", estimated_cost=Decimal(0))

    with pytest.raises(ValueError, match="finished attempt status"):
        store.finish_attempt(attempt.id, status="in_flight")
    with pytest.raises(JobNotFound, match="attempt"):
        store.finish_attempt("nope", status="failed")
    with pytest.raises(JobNotFound, match="attempt"):
        store.mark_submitted("nope", "req")

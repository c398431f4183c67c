"""A call's three writes: start_call (job + reservation + attempt), mark_submitted, finish_call (money + attempt +
job), each one transaction; any backend (see conftest.BACKENDS)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from fluxroute.errors import IdempotencyConflict, JobNotFound
from fluxroute.store import AttemptStart, JobChange, Store
from fluxroute.store.leases import Owner

REQUEST: dict[str, object] = {"prompt": "a lighthouse at dusk", "width": 1024, "height": 1024}
SPEC = AttemptStart("krea-flux-dev", "krea", "flux-dev", Decimal("0.025"), {"candidate": {"offer_id": "x"}})
ME = Owner("host-a", 101, "tok")


def caps(daily: str | None = "1.00") -> dict[str, Decimal | None]:
    return {"per_call_cap": None, "daily_cap": None if daily is None else Decimal(daily)}


def test_start_call_records_job_reservation_and_leased_attempt_together(store: Store) -> None:
    started = store.start_call(REQUEST, None, SPEC, owner=ME, **caps())

    assert started.created and started.refused is None
    assert started.reservation is not None and started.attempt is not None
    assert started.job == store.get_job(started.job.id)
    assert started.job.status == "running"
    stored = store.attempts_for(started.job.id)
    assert stored == [started.attempt]
    attempt = stored[0]
    assert (attempt.status, attempt.seq, attempt.reservation_id) == ("submitting", 1, started.reservation.id)
    assert attempt.lease_owner == str(ME) and attempt.lease_until is not None
    assert attempt.lease_until > datetime.now(UTC)
    assert store.is_open(started.reservation)
    assert started.reservation.amount == Decimal("0.025")
    summary = store.spend_summary(daily_cap=Decimal("1.00"))
    assert summary.reserved_today + summary.at_risk_today == Decimal("0.025")
    assert summary.remaining_today == Decimal("0.975")


def test_start_call_with_a_known_key_returns_the_earlier_job_and_holds_nothing_more(store: Store) -> None:
    first = store.start_call(REQUEST, "key-1", SPEC, owner=ME, **caps())
    again = store.start_call(dict(reversed(list(REQUEST.items()))), "key-1", SPEC, owner=ME, **caps())

    assert not again.created and again.job.id == first.job.id
    assert again.reservation is None and again.attempt is None
    assert len(store.attempts_for(first.job.id)) == 1
    assert store.spend_summary(daily_cap=Decimal("1.00")).remaining_today == Decimal("0.975")
    with pytest.raises(IdempotencyConflict, match="key-1"):
        store.start_call({"prompt": "something else"}, "key-1", SPEC, owner=ME, **caps())


def test_a_first_attempt_over_the_cap_leaves_the_job_recorded_and_nothing_held(store: Store) -> None:
    started = store.start_call(REQUEST, None, SPEC, owner=ME, **caps("0.01"))

    assert started.created and started.refused is not None
    assert "daily cap $0.01" in str(started.refused)
    assert started.reservation is None and started.attempt is None
    assert store.get_job(started.job.id).status == "running"
    assert store.attempts_for(started.job.id) == []
    assert store.spend_summary(daily_cap=Decimal("0.01")).remaining_today == Decimal("0.01")


def test_begin_attempt_numbers_the_next_attempt_and_refuses_over_the_cap(store: Store) -> None:
    started = store.start_call(REQUEST, None, SPEC, owner=ME, **caps("0.04"))
    assert started.reservation is not None and started.attempt is not None
    store.finish_call(started.attempt.id, started.reservation, status="failed", cost=None, error="refused")

    reservation, second = store.begin_attempt(started.job.id, SPEC, owner=ME, **caps("0.04"))
    assert second.seq == 2 and second.reservation_id == reservation.id and second.lease_owner == str(ME)
    with pytest.raises(Exception, match="daily cap"):
        store.begin_attempt(started.job.id, SPEC, owner=ME, **caps("0.04"))
    assert len(store.attempts_for(started.job.id)) == 2
    with pytest.raises(JobNotFound):
        store.begin_attempt("no-such-job", SPEC, owner=ME, **caps())


def test_finish_call_charges_closes_frees_the_lease_and_stores_the_result_at_once(store: Store) -> None:
    started = store.start_call(REQUEST, None, SPEC, owner=ME, **caps())
    assert started.reservation is not None and started.attempt is not None
    submitted = store.mark_submitted(started.attempt.id, "krea-job-1")
    assert submitted.status == "in_flight" and submitted.lease_owner == str(ME)

    result = {"images": ["a.png"], "cost_usd": 0.02}
    store.finish_call(
        submitted.id,
        started.reservation,
        status="succeeded",
        cost=Decimal("0.02"),
        job=JobChange("succeeded", result=result),
    )

    job = store.get_job(started.job.id)
    attempt = store.attempts_for(job.id)[0]
    assert (job.status, job.result) == ("succeeded", result)
    assert (attempt.status, attempt.cost, attempt.lease_owner, attempt.lease_until) == (
        "succeeded",
        Decimal("0.02"),
        None,
        None,
    )
    assert not store.is_open(started.reservation)
    assert store.total_charged() == Decimal("0.02")
    # finishing again (a resumed copy of the same call) never charges twice
    store.finish_call(submitted.id, started.reservation, status="succeeded", cost=Decimal("0.02"))
    assert store.total_charged() == Decimal("0.02")


def test_finish_call_without_a_cost_releases_unbilled_and_leaves_the_job_alone(store: Store) -> None:
    started = store.start_call(REQUEST, None, SPEC, owner=ME, **caps())
    assert started.reservation is not None and started.attempt is not None

    store.finish_call(started.attempt.id, started.reservation, status="failed", cost=None, error="HTTP 400")

    attempt = store.attempts_for(started.job.id)[0]
    assert (attempt.status, attempt.cost, attempt.error) == ("failed", None, "HTTP 400")
    assert store.get_job(started.job.id).status == "running"
    assert store.total_charged() == Decimal("0")
    assert store.spend_summary(daily_cap=Decimal("1.00")).remaining_today == Decimal("1.00")


def test_finish_call_refuses_bad_statuses_and_unknown_attempts_without_touching_money(store: Store) -> None:
    started = store.start_call(REQUEST, None, SPEC, owner=ME, **caps())
    assert started.reservation is not None and started.attempt is not None
    with pytest.raises(ValueError, match="finished attempt status"):
        store.finish_call(started.attempt.id, started.reservation, status="in_flight", cost=None)
    with pytest.raises(JobNotFound):
        store.finish_call("nope", started.reservation, status="failed", cost=None)
    with pytest.raises(ValueError, match="must not be negative"):
        store.finish_call(started.attempt.id, started.reservation, status="failed", cost=Decimal("-1"))
    assert store.is_open(started.reservation)  # each refusal rolled its transaction back
    assert store.attempts_for(started.job.id)[0].status == "submitting"

"""Tests for budget reservations, settling, charges and spend summaries."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from fluxroute.errors import BudgetExceeded, JobNotFound
from fluxroute.store import Reservation, Store

DAY_ONE = datetime(2025, 3, 1, 23, 59, tzinfo=UTC)
DAY_TWO = datetime(2025, 3, 2, 0, 1, tzinfo=UTC)


@pytest.fixture
def job_id(store: Store) -> str:
    return store.create_job({"prompt": "a lighthouse"})[0].id


def reserve(store: Store, job_id: str, amount: str, now: datetime | None = None) -> Reservation:
    """Reserve against a $1.00 daily cap and no per-call cap."""
    return store.reserve(job_id, Decimal(amount), per_call_cap=None, daily_cap=Decimal("1.00"), now=now)


def test_a_reservation_is_recorded_for_the_utc_day(store: Store, job_id: str) -> None:
    held = reserve(store, job_id, "0.30", now=DAY_ONE)

    assert held == Reservation(id=held.id, job_id=job_id, amount=Decimal("0.3"), day=date(2025, 3, 1))
    summary = store.spend_summary(now=DAY_ONE, daily_cap=Decimal("1.00"))
    assert summary.reserved_today == Decimal("0.30")
    assert summary.spent_today == Decimal(0)
    assert summary.remaining_today == Decimal("0.70")


def test_an_amount_over_the_per_call_cap_is_refused_and_nothing_is_held(store: Store, job_id: str) -> None:
    with pytest.raises(BudgetExceeded, match=r"estimated \$0\.50 exceeds the per-call cap \$0\.40"):
        store.reserve(job_id, Decimal("0.5"), per_call_cap=Decimal("0.40"), daily_cap=None)

    assert store.spend_summary().reserved_today == Decimal(0)
    assert store.reserve(job_id, Decimal("0.40"), per_call_cap=Decimal("0.40"), daily_cap=None).amount == (
        Decimal("0.4")
    )


def test_the_daily_cap_counts_charges_and_open_reservations(store: Store, job_id: str) -> None:
    store.settle(reserve(store, job_id, "0.40", now=DAY_ONE), Decimal("0.35"))
    reserve(store, job_id, "0.30", now=DAY_ONE)

    with pytest.raises(BudgetExceeded) as refused:
        reserve(store, job_id, "0.40", now=DAY_ONE)

    message = str(refused.value)
    assert "daily cap $1.00" in message
    assert "$0.35 spent" in message
    assert "$0.30 reserved or at risk" in message
    assert "$0.35 remaining" in message
    assert reserve(store, job_id, "0.35", now=DAY_ONE).amount == Decimal("0.35")


def test_releasing_a_reservation_frees_its_budget_and_is_idempotent(store: Store, job_id: str) -> None:
    held = reserve(store, job_id, "0.80", now=DAY_ONE)
    with pytest.raises(BudgetExceeded):
        reserve(store, job_id, "0.30", now=DAY_ONE)

    store.release(held)
    store.release(held)

    assert reserve(store, job_id, "0.30", now=DAY_ONE).amount == Decimal("0.3")
    assert store.total_charged() == Decimal(0)


def test_settling_twice_charges_only_once(store: Store, job_id: str) -> None:
    held = reserve(store, job_id, "0.30")

    store.settle(held, Decimal("0.25"))
    store.settle(held, Decimal("0.25"))
    store.settle(held, Decimal("0.99"))
    store.release(held)

    summary = store.spend_summary(daily_cap=Decimal("1.00"))
    assert store.total_charged() == Decimal("0.25")
    assert summary.charges == 1
    assert summary.reserved_today == Decimal(0)
    assert summary.remaining_today == Decimal("0.75")


def test_settling_for_nothing_closes_the_reservation_with_a_zero_charge(store: Store, job_id: str) -> None:
    store.settle(reserve(store, job_id, "0.30"), Decimal(0))

    summary = store.spend_summary()
    assert (summary.spent_today, summary.reserved_today, summary.charges) == (Decimal(0), Decimal(0), 1)


def test_an_attempt_charged_by_crash_resume_is_not_charged_again_when_settled(store: Store, job_id: str) -> None:
    attempt = store.start_attempt(job_id, offer_id="o", provider="fal", model="m", estimated_cost=Decimal("0.03"))
    held = reserve(store, job_id, "0.03")

    store.charge(job_id, Decimal("0.03"), attempt_id=attempt.id)
    store.charge(job_id, Decimal("0.03"), attempt_id=attempt.id)
    store.settle(held, Decimal("0.03"), attempt_id=attempt.id)

    assert store.total_charged() == Decimal("0.03")
    assert store.spend_summary().reserved_today == Decimal(0)


def test_charges_without_an_attempt_are_each_recorded(store: Store, job_id: str) -> None:
    store.charge(job_id, Decimal("0.01"))
    store.charge(job_id, Decimal("0.01"))

    assert store.total_charged() == Decimal("0.02")


def test_sums_of_sub_cent_prices_are_exact(store: Store, job_id: str) -> None:
    for _ in range(3):
        store.settle(reserve(store, job_id, "0.007"), Decimal("0.007"))

    assert store.total_charged() == Decimal("0.021")
    assert str(store.total_charged()) == "0.021"
    assert store.spend_summary().spent_total == Decimal("0.021")


def test_amounts_round_half_up_to_the_micro_dollar(store: Store, job_id: str) -> None:
    store.charge(job_id, Decimal("0.0000005"))
    store.charge(job_id, Decimal("0.0000004"))

    assert store.total_charged() == Decimal("0.000001")


def test_negative_amounts_and_floats_are_refused(store: Store, job_id: str) -> None:
    with pytest.raises(ValueError, match="negative"):
        store.charge(job_id, Decimal("-0.01"))
    with pytest.raises(ValueError, match="negative"):
        reserve(store, job_id, "-0.01")
    with pytest.raises(TypeError, match="float"):
        store.charge(job_id, 0.1)  # type: ignore[arg-type]


def test_the_daily_figures_reset_when_the_utc_day_rolls_over(store: Store, job_id: str) -> None:
    store.settle(reserve(store, job_id, "0.60", now=DAY_ONE), Decimal("0.60"))
    reserve(store, job_id, "0.30", now=DAY_ONE)
    with pytest.raises(BudgetExceeded):
        reserve(store, job_id, "0.30", now=DAY_ONE)

    tomorrow = reserve(store, job_id, "0.90", now=DAY_TWO)

    assert tomorrow.day == date(2025, 3, 2)
    day_two = store.spend_summary(now=DAY_TWO, daily_cap=Decimal("1.00"))
    assert (day_two.day, day_two.spent_today, day_two.reserved_today) == (
        date(2025, 3, 2),
        Decimal(0),
        Decimal("0.9"),
    )
    assert day_two.remaining_today == Decimal("0.1")
    assert day_two.spent_total == Decimal("0.6")
    day_one = store.spend_summary(now=DAY_ONE)
    assert (day_one.spent_today, day_one.reserved_today, day_one.remaining_today) == (
        Decimal("0.6"),
        Decimal("0.3"),
        None,
    )


def test_a_reservation_settled_after_midnight_is_charged_to_its_own_day(store: Store, job_id: str) -> None:
    held = reserve(store, job_id, "0.50", now=DAY_ONE)
    store.settle(held, Decimal("0.40"))

    assert store.spend_summary(now=DAY_ONE).spent_today == Decimal("0.4")
    assert store.spend_summary(now=DAY_TWO).spent_today == Decimal(0)


def test_spend_summary_groups_charges_by_provider(store: Store, job_id: str) -> None:
    fal = store.start_attempt(job_id, offer_id="f", provider="fal", model="m", estimated_cost=Decimal("0.025"))
    krea = store.start_attempt(job_id, offer_id="k", provider="krea", model="m", estimated_cost=Decimal("0.03"))
    krea_retry = store.start_attempt(job_id, offer_id="k", provider="krea", model="m", estimated_cost=Decimal(0))
    store.settle(reserve(store, job_id, "0.025"), Decimal("0.025"), attempt_id=fal.id)
    store.settle(reserve(store, job_id, "0.03"), Decimal("0.03"), attempt_id=krea.id)
    store.charge(job_id, Decimal("0.015"), attempt_id=krea_retry.id)
    store.charge(job_id, Decimal("0.001"))

    summary = store.spend_summary(daily_cap=Decimal("2"))

    assert summary.by_provider == {
        "fal": Decimal("0.025"),
        "krea": Decimal("0.045"),
        "unknown": Decimal("0.001"),
    }
    assert summary.charges == 4
    assert summary.spent_total == summary.spent_today == Decimal("0.071") == store.total_charged()
    assert summary.daily_cap == Decimal("2")
    assert summary.remaining_today == Decimal("1.929")


def test_ledger_operations_refuse_unknown_jobs_attempts_and_reservations(store: Store, job_id: str) -> None:
    with pytest.raises(JobNotFound):
        reserve(store, "nope", "0.10")
    with pytest.raises(JobNotFound):
        store.charge("nope", Decimal("0.10"))
    with pytest.raises(JobNotFound, match="attempt"):
        store.charge(job_id, Decimal("0.10"), attempt_id="nope")
    with pytest.raises(ValueError, match="no reservation"):
        store.settle(Reservation(id=999, job_id=job_id, amount=Decimal(1), day=date(2025, 3, 1)), Decimal(1))
    assert store.total_charged() == Decimal(0)


def test_concurrent_reservations_from_sixteen_threads_never_exceed_the_daily_cap(store: Store, job_id: str) -> None:
    barrier = threading.Barrier(16)
    granted: list[Reservation] = []
    refused: list[BudgetExceeded] = []
    lock = threading.Lock()

    def try_reserve() -> None:
        barrier.wait()
        try:
            held = reserve(store, job_id, "0.30", now=DAY_ONE)
        except BudgetExceeded as exc:
            with lock:
                refused.append(exc)
        else:
            with lock:
                granted.append(held)

    threads = [threading.Thread(target=try_reserve) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert (len(granted), len(refused)) == (3, 13)
    assert store.spend_summary(now=DAY_ONE).reserved_today == Decimal("0.9")

"""The fleet's job board (fluxroute/fleet/jobs.py) on its own, with a clock the tests move."""

from __future__ import annotations

import asyncio

import pytest

from fluxroute.fleet import jobs
from fluxroute.fleet.jobs import KEY_TTL_S, MAX_EVENTS, RESULT_TTL_S, TOMBSTONE_TTL_S, JobBoard


class Clock:
    """A wall clock that moves only when a test moves it."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def progress(step: int, total: int = 4) -> dict[str, object]:
    return {"kind": "progress", "events": [{"status": "IN_PROGRESS", "step": step, "total_steps": total}]}


RESULT = {"kind": "result", "result": {"images": [{"data": b"png"}], "compute_seconds": 2.5, "worker": "replica a"}}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def board(clock: Clock) -> JobBoard:
    return JobBoard(clock=clock)


# --- submission keys ------------------------------------------------------------------------------------------------


def test_a_new_key_makes_a_queued_job_stamped_by_the_boards_clock(board: JobBoard, clock: Clock) -> None:
    job, new = board.create("key-0001", "black-forest-labs/FLUX.1-dev")
    assert new and job.id.startswith("ray-")
    assert (job.status, job.key, job.created) == ("queued", "key-0001", clock.now)
    assert job.model_id == "black-forest-labs/FLUX.1-dev"
    assert board.get(job.id) is job


def test_the_same_key_again_answers_with_the_job_it_made(board: JobBoard) -> None:
    first, _ = board.create("key-0001", "m")
    again, new = board.create("key-0001", "m")
    other, other_new = board.create("key-0002", "m")
    assert (again, new) == (first, False)
    assert other_new and other.id != first.id
    assert len(board.jobs) == 2


def test_a_key_older_than_its_ttl_makes_a_new_job(board: JobBoard, clock: Clock) -> None:
    first, _ = board.create("key-0001", "m")
    clock.advance(KEY_TTL_S + 1)
    again, new = board.create("key-0001", "m")
    assert new and again.id != first.id
    assert board.get(first.id) is first  # the old job stays; only its key is forgotten


def test_an_unknown_job_is_none(board: JobBoard) -> None:
    assert board.get("ray-nothing") is None


# --- recording what a replica streams ---------------------------------------------------------------------------------


async def test_started_progress_and_result_take_a_job_to_succeeded(board: JobBoard, clock: Clock) -> None:
    job, _ = board.create("key-0001", "m")
    board.record(job, {"kind": "started", "replica": "replica a on node"})
    assert (job.status, job.replica) == ("running", "replica a on node")
    board.record(job, progress(1))
    board.record(job, progress(2))
    clock.advance(3)
    board.record(job, RESULT)
    assert job.status == "succeeded"
    assert job.gpu_seconds == 2.5
    assert job.result is not None and job.result["worker"] == "replica a"
    assert job.ended == clock.now
    view = job.status_view(1)
    assert [e["step"] for e in view["events"]] == [2]
    assert view["next"] == 2
    assert (view["status"], view["replica"], view["gpu_seconds"], view["expired"]) == (
        "succeeded",
        "replica a on node",
        2.5,
        False,
    )


@pytest.mark.parametrize(
    ("kind", "status"), [("job_failed", "failed"), ("unavailable", "failed"), ("cancelled", "cancelled")]
)
async def test_a_failed_item_ends_the_job_with_its_error(board: JobBoard, kind: str, status: str) -> None:
    job, _ = board.create("key-0001", "m")
    error = {"kind": kind, "message": "it broke", "retryable": kind == "unavailable"}
    board.record(job, {"kind": "failed", "error": error})
    assert (job.status, job.error, job.gpu_seconds, job.result) == (status, error, None, None)


async def test_nothing_changes_a_job_once_it_ended(board: JobBoard) -> None:
    job, _ = board.create("key-0001", "m")
    board.fail(job, "cancelled", "cancelled by the router", retryable=False)
    ended = job.ended
    board.record(job, progress(1))
    board.record(job, RESULT)
    board.fail(job, "lost", "the replica died", retryable=True)
    assert (job.status, job.events, job.result, job.ended) == ("cancelled", [], None, ended)
    assert job.error == {"kind": "cancelled", "message": "cancelled by the router", "retryable": False}


async def test_fail_of_a_lost_job_ends_it_failed_and_retryable(board: JobBoard) -> None:
    job, _ = board.create("key-0001", "m")
    board.record(job, {"kind": "started", "replica": "replica a"})
    board.fail(job, "lost", "the replica died", retryable=True)
    assert job.status == "failed"
    assert job.error == {"kind": "lost", "message": "the replica died", "retryable": True}


async def test_a_job_keeps_at_most_max_events(board: JobBoard) -> None:
    job, _ = board.create("key-0001", "m")
    for step in range(MAX_EVENTS + 5):
        board.record(job, progress(step, MAX_EVENTS + 5))
    assert len(job.events) == MAX_EVENTS
    assert job.events[-1]["step"] == MAX_EVENTS - 1


# --- waiting for a change ------------------------------------------------------------------------------------------


async def test_wait_for_change_wakes_when_a_replica_takes_the_job(board: JobBoard) -> None:
    job, _ = board.create("key-0001", "m")
    waiting = asyncio.create_task(board.wait_for_change(job, 0, 30))
    await asyncio.sleep(0)  # let it start waiting
    assert not waiting.done()
    board.record(job, {"kind": "started", "replica": "a"})  # queued -> running: a change worth telling
    async with asyncio.timeout(5):
        await waiting
    assert job.status == "running"


async def test_wait_for_change_wakes_on_a_new_event(board: JobBoard) -> None:
    job, _ = board.create("key-0001", "m")
    board.record(job, {"kind": "started", "replica": "a"})
    waiting = asyncio.create_task(board.wait_for_change(job, 0, 30))
    await asyncio.sleep(0)  # let it start waiting
    assert not waiting.done()
    board.record(job, {"kind": "started", "replica": "b"})  # no new event, no new status: keeps waiting
    await asyncio.sleep(0)
    assert not waiting.done()
    board.record(job, progress(1))
    async with asyncio.timeout(5):
        await waiting


async def test_wait_for_change_wakes_when_the_job_ends(board: JobBoard) -> None:
    job, _ = board.create("key-0001", "m")
    board.record(job, progress(1))
    waiting = asyncio.create_task(board.wait_for_change(job, 1, 30))  # already saw event 0
    await asyncio.sleep(0)
    assert not waiting.done()
    board.fail(job, "cancelled", "cancelled", retryable=False)
    async with asyncio.timeout(5):
        await waiting


async def test_wait_for_change_returns_at_once_when_events_are_already_past_after(board: JobBoard) -> None:
    job, _ = board.create("key-0001", "m")
    board.record(job, progress(1))
    async with asyncio.timeout(5):
        await board.wait_for_change(job, 0, 30)


async def test_wait_for_change_times_out_quietly_and_the_board_still_works(board: JobBoard) -> None:
    job, _ = board.create("key-0001", "m")
    async with asyncio.timeout(5):
        await board.wait_for_change(job, 0, 0.02)
    assert job.status == "queued"
    # the condition's lock was given back: a waiter after the timeout still wakes
    waiting = asyncio.create_task(board.wait_for_change(job, 0, 30))
    await asyncio.sleep(0)
    board.record(job, progress(1))
    async with asyncio.timeout(5):
        await waiting


async def test_wait_for_change_wakes_every_waiter(board: JobBoard) -> None:
    job, _ = board.create("key-0001", "m")
    waiters = [asyncio.create_task(board.wait_for_change(job, 0, 30)) for _ in range(5)]
    await asyncio.sleep(0)
    board.record(job, progress(1))
    async with asyncio.timeout(5):
        await asyncio.gather(*waiters)


# --- bounds: result expiry, tombstones, MAX_JOBS --------------------------------------------------------------------


async def test_a_result_expires_after_its_ttl_and_the_job_says_so(board: JobBoard, clock: Clock) -> None:
    job, _ = board.create("key-0001", "m")
    board.record(job, RESULT)
    clock.advance(RESULT_TTL_S)
    assert board.get(job.id) is job and job.result is not None and not job.expired  # not past the TTL yet
    clock.advance(1)
    assert board.get(job.id) is job
    assert job.result is None and job.expired
    view = job.status_view(0)
    assert (view["status"], view["expired"], view["gpu_seconds"]) == ("succeeded", True, 2.5)


async def test_the_result_ttl_is_the_boards_own(clock: Clock) -> None:
    board = JobBoard(clock=clock, result_ttl_s=10)
    job, _ = board.create("key-0001", "m")
    board.record(job, RESULT)
    clock.advance(11)
    board.sweep()
    assert job.expired


async def test_a_failed_job_never_says_expired(board: JobBoard, clock: Clock) -> None:
    job, _ = board.create("key-0001", "m")
    board.fail(job, "lost", "gone", retryable=True)
    clock.advance(RESULT_TTL_S + 1)
    assert board.get(job.id) is job and not job.expired


async def test_an_ended_job_is_forgotten_after_its_tombstone_ttl_with_its_key(board: JobBoard, clock: Clock) -> None:
    job, _ = board.create("key-0001", "m")
    board.record(job, RESULT)
    clock.advance(TOMBSTONE_TTL_S)
    assert board.get(job.id) is job
    clock.advance(1)
    assert board.get(job.id) is None
    again, new = board.create("key-0001", "m")
    assert new and again.id != job.id


def test_a_job_that_never_ended_is_never_forgotten(board: JobBoard, clock: Clock) -> None:
    job, _ = board.create("key-0001", "m")
    clock.advance(10 * TOMBSTONE_TTL_S)
    assert board.get(job.id) is job


async def test_past_max_jobs_the_oldest_ended_jobs_go_first(
    board: JobBoard, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "MAX_JOBS", 4)
    running, _ = board.create("key-running", "m")
    ended = []
    for i in range(4):
        clock.advance(1)
        job, _ = board.create(f"key-ended-{i}", "m")
        board.fail(job, "job_failed", "no", retryable=False)
        ended.append(job)
    board.sweep()
    assert len(board.jobs) == 4
    assert set(board.jobs) == {running.id, *(j.id for j in ended[1:])}  # the oldest ended one went
    assert board.create("key-ended-0", "m")[1]  # its key went with it


async def test_running_jobs_are_kept_past_max_jobs(board: JobBoard, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "MAX_JOBS", 2)
    made = [board.create(f"key-{i:04}", "m")[0] for i in range(4)]
    board.sweep()
    assert set(board.jobs) == {job.id for job in made}  # none ended: none may be dropped


async def test_the_board_never_holds_more_than_max_jobs(board: JobBoard, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "MAX_JOBS", 3)
    for i in range(6):
        job, _ = board.create(f"key-{i:04}", "m")
        board.fail(job, "job_failed", "no", retryable=False)
        assert len(board.jobs) <= 3


# --- counts ---------------------------------------------------------------------------------------------------------


async def test_counts_say_how_many_jobs_are_in_each_state(board: JobBoard) -> None:
    assert board.counts() == {}
    board.create("key-0001", "m")  # stays queued
    running, _ = board.create("key-0002", "m")
    done, _ = board.create("key-0003", "m")
    cancelled, _ = board.create("key-0004", "m")
    board.record(running, {"kind": "started", "replica": "a"})
    board.record(done, RESULT)
    board.fail(cancelled, "cancelled", "by the router", retryable=False)
    assert board.counts() == {"queued": 1, "running": 1, "succeeded": 1, "cancelled": 1}


async def test_results_past_the_byte_cap_expire_fetched_ones_first_then_the_oldest(clock: Clock) -> None:
    board = JobBoard(clock=clock, max_result_bytes=250)

    async def finish(key: str) -> jobs.FleetJob:
        job, _ = board.create(key, "m")
        board.record(job, {"kind": "result", "result": {"images": [{"data": b"x" * 100}]}})
        clock.advance(1)
        return job

    oldest, fetched = await finish("key-0001"), await finish("key-0002")
    fetched.fetched = True
    newest = await finish("key-0003")  # 300 bytes held: one must go, the fetched one though it is not the oldest
    assert (fetched.expired, fetched.result, oldest.expired, newest.expired) == (True, None, False, False)
    assert fetched.status == "succeeded" and fetched.gpu_seconds is None  # the record stays; only its images go
    await finish("key-0004")  # none fetched now: the oldest goes
    assert oldest.expired and not newest.expired
    assert sum(j.result_bytes for j in board.jobs.values()) <= 250


def test_the_queue_of_jobs_waiting_for_a_replica_is_bounded_by_count_and_bytes(clock: Clock) -> None:
    board = JobBoard(clock=clock, max_queued=2, max_queued_bytes=1000)
    first, _ = board.create("key-0001", "m", 400)
    board.create("key-0002", "m", 400)
    with pytest.raises(jobs.QueueFull):
        board.create("key-0003", "m", 10)  # two wait already
    assert board.create("key-0001", "m", 400)[0] is first  # a retried key is still answered
    board.record(first, {"kind": "started", "replica": "a"})  # one left the queue
    with pytest.raises(jobs.QueueFull):
        board.create("key-0004", "m", 700)  # 400 + 700 bytes would wait
    assert board.create("key-0005", "m", 600)[1]

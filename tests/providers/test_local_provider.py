"""LocalProvider on a tiny random-weight FLUX pipeline loaded from disk: progress, queue, cancel, seeds, review."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image

from fluxroute.errors import Cancelled, JobFailed, ProviderTimeout, ProviderUnavailable
from fluxroute.providers.base import Progress, ProviderResult
from fluxroute.providers.local import UNFILTERED, ContentVerdict, LocalProvider, LocalWorker
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.types import Candidate, ImageRequest
from tests.fakes.tiny_flux import StepGate


def candidate_for(settings: Settings, **fields: object) -> Candidate:
    request = ImageRequest.parse(
        {"prompt": "a lighthouse at dusk", "provider": "local", "width": 64, "height": 64, "steps": 2, **fields}
    )
    chosen = Router(settings).plan(request).chosen
    assert chosen is not None
    return chosen


class Recorder:
    def __init__(self) -> None:
        self.events: list[Progress] = []
        self.reached = asyncio.Event()
        self.at_step: int | None = None

    async def __call__(self, event: Progress) -> None:
        self.events.append(event)
        if event.step is not None and event.step == self.at_step:
            self.reached.set()

    @property
    def steps(self) -> list[int]:
        return [e.step for e in self.events if e.step is not None]


async def run(provider: LocalProvider, candidate: Candidate, progress: Recorder | None = None) -> ProviderResult:
    job_id = await provider.submit(candidate)
    return await provider.wait(job_id, candidate, progress, timeout_s=60)


def pixels(result: ProviderResult) -> bytes:
    return Image.open(io.BytesIO(result.images[0].data)).tobytes()


@pytest.fixture
def provider(local_settings: Settings, local_worker: LocalWorker) -> LocalProvider:
    return LocalProvider(local_settings, worker=local_worker)


async def test_a_job_reports_its_queue_position_then_every_step_and_returns_a_png(
    provider: LocalProvider, local_settings: Settings
) -> None:
    candidate = candidate_for(local_settings, seed=1)
    progress = Recorder()
    job_id = await provider.submit(candidate)
    assert job_id.startswith("local-")
    result = await provider.wait(job_id, candidate, progress, timeout_s=60)
    assert progress.events[0].status == "IN_QUEUE" and progress.events[0].queue_position == 0
    assert progress.steps == [1, 2]
    assert all(e.total_steps == 2 for e in progress.events if e.step is not None)
    assert progress.events[-1].status == "COMPLETED"
    image = result.images[0]
    assert (image.width, image.height, image.content_type) == (64, 64, "image/png")
    assert Image.open(io.BytesIO(image.data)).size == (64, 64)
    assert result.seed == 1 and result.timings["inference_s"] >= 0


async def test_the_same_seed_gives_the_same_pixels_and_another_seed_does_not(
    provider: LocalProvider, local_settings: Settings
) -> None:
    first = await run(provider, candidate_for(local_settings, seed=42))
    again = await run(provider, candidate_for(local_settings, seed=42))
    other = await run(provider, candidate_for(local_settings, seed=43))
    assert first.images[0].data == again.images[0].data
    assert pixels(first) != pixels(other)


async def test_without_a_seed_one_is_drawn_and_reported_so_the_image_can_be_made_again(
    provider: LocalProvider, local_settings: Settings
) -> None:
    drawn = await run(provider, candidate_for(local_settings))
    assert drawn.seed is not None
    again = await run(provider, candidate_for(local_settings, seed=drawn.seed))
    assert pixels(again) == pixels(drawn)


async def test_jpeg_is_encoded_by_the_worker(provider: LocalProvider, local_settings: Settings) -> None:
    result = await run(provider, candidate_for(local_settings, output_format="jpeg"))
    assert result.images[0].content_type == "image/jpeg"
    assert Image.open(io.BytesIO(result.images[0].data)).format == "JPEG"


async def test_cancel_stops_a_running_job_before_its_next_step_and_the_worker_stays_usable(
    provider: LocalProvider, local_settings: Settings, step_gate: StepGate
) -> None:
    candidate = candidate_for(local_settings, steps=4)
    step_gate.hold_at(1)
    progress = Recorder()
    progress.at_step = 1
    job_id = await provider.submit(candidate)
    waiting = asyncio.create_task(provider.wait(job_id, candidate, progress, timeout_s=60))
    await asyncio.wait_for(progress.reached.wait(), 30)
    await provider.cancel(job_id, candidate)
    step_gate.release()
    with pytest.raises(Cancelled):
        await waiting
    assert progress.steps == [1]
    after = await run(provider, candidate_for(local_settings, seed=5))
    assert len(after.images) == 1


async def test_a_second_job_waits_its_turn_with_its_queue_position(
    provider: LocalProvider, local_settings: Settings, step_gate: StepGate
) -> None:
    candidate = candidate_for(local_settings, seed=3)
    step_gate.hold_at(1)
    first_progress, second_progress = Recorder(), Recorder()
    first_progress.at_step = 1
    first_id = await provider.submit(candidate)
    first = asyncio.create_task(provider.wait(first_id, candidate, first_progress, timeout_s=60))
    await asyncio.wait_for(first_progress.reached.wait(), 30)
    second_id = await provider.submit(candidate)
    second = asyncio.create_task(provider.wait(second_id, candidate, second_progress, timeout_s=60))
    step_gate.release()
    one, two = await asyncio.gather(first, second)
    queued = [e.queue_position for e in second_progress.events if e.status == "IN_QUEUE"]
    assert queued[0] == 1 and queued[-1] == 0
    assert second_progress.steps == [1, 2]
    assert one.images[0].data == two.images[0].data


async def test_cancelling_a_queued_job_ends_it_at_once(
    provider: LocalProvider, local_settings: Settings, step_gate: StepGate
) -> None:
    candidate = candidate_for(local_settings)
    step_gate.hold_at(1)
    progress = Recorder()
    progress.at_step = 1
    running_id = await provider.submit(candidate)
    running = asyncio.create_task(provider.wait(running_id, candidate, progress, timeout_s=60))
    await asyncio.wait_for(progress.reached.wait(), 30)
    queued_id = await provider.submit(candidate)
    await provider.cancel(queued_id, candidate)
    with pytest.raises(Cancelled, match="while queued"):
        await provider.wait(queued_id, candidate, None, timeout_s=60)
    step_gate.release()
    assert len((await running).images) == 1


async def test_a_job_that_outlives_its_time_budget_times_out(
    provider: LocalProvider, local_settings: Settings, step_gate: StepGate
) -> None:
    candidate = candidate_for(local_settings)
    step_gate.hold_at(1)
    job_id = await provider.submit(candidate)
    with pytest.raises(ProviderTimeout) as info:
        await provider.wait(job_id, candidate, None, timeout_s=0.2)
    assert info.value.retryable
    await provider.cancel(job_id, candidate)
    step_gate.release()
    with pytest.raises(Cancelled):  # the job itself stops too (what the router does after a timeout)
        await provider.wait(job_id, candidate, None, timeout_s=30)


async def test_waiting_on_a_job_from_before_a_restart_fails_clearly_and_is_not_retried(
    provider: LocalProvider, local_settings: Settings
) -> None:
    with pytest.raises(JobFailed, match="do not survive a restart") as info:
        await provider.wait("local-0123", candidate_for(local_settings), None, timeout_s=5)
    assert not info.value.retryable


async def test_missing_weights_make_submit_unavailable(local_settings: Settings, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    provider = LocalProvider(local_settings.model_copy(update={"local_model": empty}))
    try:
        with pytest.raises(ProviderUnavailable, match=r"model_index\.json missing"):
            await provider.submit(candidate_for(local_settings))
    finally:
        await provider.aclose()


async def test_without_a_checker_every_result_is_marked_for_review(
    provider: LocalProvider, local_settings: Settings
) -> None:
    result = await run(provider, candidate_for(local_settings))
    assert result.review == UNFILTERED
    assert any(w.startswith(UNFILTERED) for w in result.warnings)
    assert not result.images[0].flagged


def flag_everything(image: Image.Image, prompt: str) -> ContentVerdict:
    return ContentVerdict(flagged=True, reason=f"test checker saw {image.size[0]}px for {prompt!r}")


def pass_everything(image: Image.Image, prompt: str) -> bool:
    return False


def broken_checker(image: Image.Image, prompt: str) -> bool:
    raise RuntimeError("model file missing")


async def checked_run(local_settings: Settings, checker: str) -> ProviderResult:
    provider = LocalProvider(local_settings.model_copy(update={"local_content_checker": checker}))
    try:
        return await run(provider, candidate_for(local_settings))
    finally:
        await provider.aclose()


async def test_a_checker_that_flags_an_image_withholds_it_and_says_why(local_settings: Settings) -> None:
    result = await checked_run(local_settings, f"{__name__}:flag_everything")
    image = result.images[0]
    assert image.flagged
    assert Image.open(io.BytesIO(image.data)).getextrema() == ((0, 0), (0, 0), (0, 0))
    assert "test checker saw 64px for 'a lighthouse at dusk'" in " ".join(result.warnings)
    assert result.review == f"screened by content checker {__name__}:flag_everything"
    assert not any(w.startswith(UNFILTERED) for w in result.warnings)


async def test_a_checker_that_passes_an_image_leaves_it_unmarked(local_settings: Settings) -> None:
    result = await checked_run(local_settings, f"{__name__}:pass_everything")
    assert not result.images[0].flagged and result.warnings == []


async def test_a_checker_that_fails_withholds_the_images(local_settings: Settings) -> None:
    with pytest.raises(JobFailed, match="model file missing"):
        await checked_run(local_settings, f"{__name__}:broken_checker")

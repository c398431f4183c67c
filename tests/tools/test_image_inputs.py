"""One image-input type: a URL, a data: URI, an earlier result by reference (`job:<job_id>/<n>`), or (CLI only) a
local file; references and files are read through the job record or the file itself, bounded, never a link."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from fluxroute.cli import main
from fluxroute.errors import InvalidRequest
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.tools import ToolLibrary
from fluxroute.types import ImageRequest
from tests.fakes.krea import KreaFake


def png(width: int = 96, height: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_an_earlier_result_is_an_image_input_by_reference(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    router = Router(hosted_settings)
    library = ToolLibrary(router)
    try:
        first = await library.dispatch("generate_image", {"prompt": "a red fox in snow", "provider": "krea"})
        job_id = first.model_dump()["job_id"]
        saved = Path(first.model_dump()["images"][0]["path"])

        request = router.resolve_references(ImageRequest(prompt="the same fox at night", init_image=f"job:{job_id}/0"))
        assert request.init_image is not None and request.init_image.startswith("data:image/png;base64,")
        assert base64.b64decode(request.init_image.partition(",")[2]) == saved.read_bytes()

        plan = await library.dispatch(
            "plan_image_route", {"prompt": "the same fox at night", "init_image": f"job:{job_id}", "size": "auto"}
        )
        assert plan.model_dump()["chosen"] is not None
    finally:
        await library.aclose()
        await router.aclose()


@pytest.mark.parametrize(
    ("reference", "says"),
    [
        ("job:no-such-job/0", "no job 'no-such-job' here"),
        ("job:{job}/3", "has no saved image 3"),
        ("job:{job}/x", "not a number"),
    ],
)
async def test_a_reference_to_no_saved_image_is_refused_by_field(
    hosted_settings: Settings, krea_fake: KreaFake, reference: str, says: str
) -> None:
    router = Router(hosted_settings)
    try:
        result = await router.generate(ImageRequest(prompt="a red fox", provider="krea"))
        before = sum(krea_fake.request_counts.values())
        with pytest.raises(InvalidRequest) as refused:
            await router.generate(ImageRequest(prompt="again", init_image=reference.format(job=result.job_id)))
    finally:
        await router.aclose()
    [error] = refused.value.errors
    assert error.field == "init_image" and says in error.allowed and "job:<job_id>/<n>" in error.allowed
    assert sum(krea_fake.request_counts.values()) == before  # nothing was sent


async def test_a_reference_whose_saved_file_became_a_link_is_refused(
    hosted_settings: Settings, krea_fake: KreaFake, tmp_path: Path
) -> None:
    router = Router(hosted_settings)
    try:
        result = await router.generate(ImageRequest(prompt="a red fox", provider="krea"))
        saved = Path(str(result.images[0].path))
        outside = tmp_path / "secret.png"
        outside.write_bytes(png())
        saved.unlink()
        saved.symlink_to(outside)
        with pytest.raises(InvalidRequest, match="not a regular file"):
            router.resolve_references(ImageRequest(prompt="again", init_image=f"job:{result.job_id}/0"))
    finally:
        await router.aclose()


def test_the_cli_sends_a_local_file_as_a_data_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLUXROUTE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLUXROUTE_CONFIG", "none")
    image = tmp_path / "start.png"
    image.write_bytes(png())
    assert main(["route", "the fox at night", "--init-image", str(image), "--json"]) in (0, 3)
    plan = json.loads(capsys.readouterr().out)
    assert plan["request"]["init_image"] == "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()

    assert main(["route", "the fox", "--init-image", str(tmp_path / "missing.png")]) == 2
    err = capsys.readouterr().err
    assert "init_image" in err and "missing.png" in err and "Traceback" not in err

"""The capability matrix of issue 16's FLUX-family rows: every mode × backend × usage, each cell the offer the plan
picks or the reasons it gives (by mode, license or an unpublished price), with every backend available."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from fluxroute.providers.base import Availability
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.types import ImageRequest

ALL = {name: Availability(True) for name in ("krea", "fal", "local")}


def png_uri() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (512, 512), (30, 60, 90)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


IMAGE = png_uri()
REQUESTS = {
    "text-to-image": {},
    "image-to-image": {"init_image": IMAGE, "strength": 0.6},
    "instruction-edit": {"init_image": IMAGE, "task": "instruction-edit"},
    "inpaint": {"init_image": IMAGE, "mask_image": IMAGE},
    "variation": {"init_image": IMAGE, "task": "variation"},
}
# (mode, provider, usage) -> the offer chosen, or None: refused, every reason given
MATRIX = {
    ("text-to-image", "krea", "commercial"): "krea-flux-1-dev",
    ("text-to-image", "fal", "commercial"): "fal-krea-2-turbo",
    ("text-to-image", "local", "commercial"): None,  # [dev] weights non-commercial, Krea 2 undeclared, schnell not auto
    ("text-to-image", "local", "non-commercial"): "local-krea-2-turbo",  # the fastest of the free ones
    ("image-to-image", "krea", "commercial"): "krea-flux-1-dev",
    ("image-to-image", "fal", "commercial"): "fal-flux-krea-i2i",
    ("image-to-image", "local", "commercial"): None,
    ("image-to-image", "local", "non-commercial"): "local-flux-krea-dev",
    ("instruction-edit", "krea", "commercial"): "krea-flux-1-kontext-dev",
    ("instruction-edit", "fal", "commercial"): None,  # price not published
    ("instruction-edit", "local", "commercial"): None,  # Kontext weights non-commercial
    ("instruction-edit", "local", "non-commercial"): "local-flux-kontext-dev",
    ("inpaint", "krea", "commercial"): None,  # Krea has no inpainting endpoint
    ("inpaint", "fal", "commercial"): None,  # price not published
    ("inpaint", "local", "non-commercial"): "local-flux-krea-dev",
    ("variation", "krea", "commercial"): "krea-flux-1-dev",
    ("variation", "fal", "commercial"): "fal-flux-dev-redux",
    ("variation", "local", "non-commercial"): None,  # no local Redux
}
WHY = {
    ("text-to-image", "local", "commercial"): "FLUX.1 [dev] Non-Commercial License and usage=commercial",
    ("image-to-image", "local", "commercial"): "FLUX.1 [dev] Non-Commercial License and usage=commercial",
    ("instruction-edit", "fal", "commercial"): "price not published by fal",
    ("instruction-edit", "local", "commercial"): "FLUX.1 [dev] Non-Commercial License and usage=commercial",
    ("inpaint", "krea", "commercial"): "request is inpaint",
    ("inpaint", "fal", "commercial"): "price not published by fal",
    ("variation", "local", "non-commercial"): "request is variation",
}


@pytest.mark.parametrize(("mode", "provider", "usage"), list(MATRIX))
def test_each_cell_picks_its_offer_or_says_why_not(tmp_path: Path, mode: str, provider: str, usage: str) -> None:
    router = Router(Settings(home=tmp_path), availability=ALL)
    request = ImageRequest.parse(
        {"prompt": "a lighthouse at dusk", "provider": provider, "usage": usage, **REQUESTS[mode]}
    )
    plan = router.plan(request, (512, 512) if "init_image" in REQUESTS[mode] else None)

    assert request.mode == mode
    chosen = plan.chosen.offer_id if plan.chosen else None
    assert chosen == MATRIX[mode, provider, usage], plan.explanation
    if chosen is None:
        said = "\n".join(str(rejection) for rejection in plan.rejections)
        assert WHY[mode, provider, usage] in said
        assert all(rejection.reasons for rejection in plan.rejections)


def test_the_matrix_covers_every_mode_and_backend() -> None:
    assert {mode for mode, _, _ in MATRIX} == set(REQUESTS)
    assert {provider for _, provider, _ in MATRIX} == {"krea", "fal", "local"}


@pytest.mark.parametrize(
    ("input_size", "sent"),
    [((1600, 896), (1600, 896)), ((4000, 3000), (2368, 1776)), ((640, 480), (683, 512))],
)
def test_an_edit_without_a_size_of_its_own_comes_out_at_its_input_size_scaled_to_fit(
    tmp_path: Path, input_size: tuple[int, int], sent: tuple[int, int]
) -> None:
    router = Router(Settings(home=tmp_path), availability=ALL)
    request = ImageRequest.parse({"prompt": "make it night", "provider": "krea", **REQUESTS["instruction-edit"]})
    assert router.planner.needs_input_size(request)
    plan = router.plan(request, input_size)

    assert plan.chosen is not None and (plan.chosen.width, plan.chosen.height) == sent
    assert f"the input image's size, {input_size[0]}x{input_size[1]}" in plan.explanation
    scaled = [a for a in plan.chosen.adjustments if "the input image's size, scaled" in a.reason]
    assert bool(scaled) == (sent != input_size)
    # a size the caller gives is kept as given, whatever the input's
    given = router.plan(request.model_copy(update={"aspect_ratio": "1:1"}), input_size)
    assert given.chosen is not None and given.chosen.width == given.chosen.height

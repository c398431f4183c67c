"""The compiled fast check and jsonschema must agree on every verdict (jsonschema explains the failures)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluxroute.tools.validation import _fast_check, _validator

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 20000),
    st.floats(-5, 50, allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["16:9", "2.35:1", "png", "gif", "krea", "commercial", "square_hd", "https://e.com/a.png"]),
    st.lists(st.fixed_dictionaries({"url": st.sampled_from(["https://e.com/a.png", 3])}), max_size=2),
)
keys = st.sampled_from(
    [
        "prompt",
        "model",
        "width",
        "height",
        "aspect_ratio",
        "num_images",
        "steps",
        "guidance",
        "seed",
        "output_format",
        "usage",
        "provider",
        "style_references",
        "max_cost_usd",
        "colour",
    ]
)


@pytest.mark.parametrize("tool", ["generate_image", "plan_image_route", "list_image_models"])
@settings(max_examples=300, deadline=None)
@given(args=st.dictionaries(keys, values, max_size=5))
def test_fast_check_and_jsonschema_agree(tool: str, args: dict[str, object]) -> None:
    try:
        _fast_check(tool)(args)
        fast_ok = True
    except Exception:
        fast_ok = False
    assert fast_ok == _validator(tool).is_valid(args)

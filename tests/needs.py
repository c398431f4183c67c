"""One rule for a test whose real part (a package, a browser, Node) is missing: skipped with the reason on a
developer's machine, a failure under CI=true, where `.ci/run` installs every part, so a missing one is a broken
install and not a reason to pass."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def missing(reason: str) -> NoReturn:
    """Skip the calling test (fail it under CI=true), saying what is missing and how to get it."""
    if IN_CI:
        pytest.fail(f"{reason}; CI=true, so this is a failure", pytrace=False)
    pytest.skip(reason)

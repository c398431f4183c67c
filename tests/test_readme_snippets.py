"""The README's Python snippets run as scripts, as a reader would paste them (hosted calls go to the Krea fake),
and where a snippet shows its output in `# ...` comments after a print, the script prints exactly that."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.krea import KreaFake

README = Path(__file__).resolve().parent.parent / "README.md"


def snippets() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)


def expected_output(code: str) -> list[str]:
    """The `# ...` comment lines that follow a print(...) line: what the README says it prints."""
    lines, expected = code.splitlines(), []
    for before, line in itertools.pairwise(lines):
        if before.startswith("print(") and line.startswith("# "):
            expected.append(line[2:])
    return expected


def test_the_readme_has_python_snippets() -> None:
    assert len(snippets()) >= 4


@pytest.mark.parametrize("index", range(len(snippets())))
def test_a_readme_snippet_runs_as_written(index: int, krea_fake: KreaFake, tmp_path: Path) -> None:
    krea_fake.image_scale = 1 / 8
    code = snippets()[index]
    script = tmp_path / f"snippet_{index}.py"
    script.write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXROUTE_", "FAL_", "KREA_"))}
    env |= {
        "FLUXROUTE_HOME": str(tmp_path / "home"),
        "FLUXROUTE_CONFIG": "none",
        "KREA_API_TOKEN": krea_fake.token,
        "FLUXROUTE_KREA_BASE_URL": krea_fake.base_url,
    }
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout.splitlines()
    for line in expected_output(code):
        assert line in printed, (line, printed)

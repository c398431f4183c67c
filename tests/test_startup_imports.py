"""What start-up imports: the server and the CLI's cheap commands load no heavy stack they do not use.

Each check runs in a fresh interpreter (this test process has imported everything already) and reads its
sys.modules; nothing is timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

NEVER_AT_SERVER_START = ("torch", "diffusers", "fal_client")


def imported_after(code: str, tmp_path: Path) -> set[str]:
    """The modules a fresh `python -c` has loaded after running `code`."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "FLUXROUTE_HOME": str(tmp_path / "home"), "FLUXROUTE_CONFIG": "none"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env, cwd=tmp_path
    )
    last = done.stdout.strip().splitlines()[-1]
    return set(json.loads(last))


def loaded(modules: set[str], name: str) -> bool:
    return any(m == name or m.startswith(f"{name}.") for m in modules)


def test_importing_the_server_loads_no_local_inference_or_fal_client(tmp_path: Path) -> None:
    modules = imported_after("import fluxroute.server", tmp_path)
    assert "fluxroute.server.app" in modules
    assert [name for name in NEVER_AT_SERVER_START if loaded(modules, name)] == []


def test_version_loads_neither_the_router_nor_the_providers(tmp_path: Path) -> None:
    code = (
        "import contextlib, io, sys\n"
        "from fluxroute.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
        "    main(['--version'])\n"
        "assert out.getvalue().startswith('fluxroute '), out.getvalue()"
    )
    modules = imported_after(code, tmp_path)
    heavy = ["fluxroute.router", "fluxroute.providers", "fluxroute.store", "fluxroute.catalog", "httpx", "PIL"]
    assert [name for name in heavy if loaded(modules, name)] == []


def test_import_fluxroute_is_light_and_the_public_names_still_resolve(tmp_path: Path) -> None:
    assert not loaded(imported_after("import fluxroute", tmp_path), "fluxroute.router")
    code = "from fluxroute import Catalog, ImageRequest, Router, Settings, load_catalog\nassert Router.__name__"
    assert "fluxroute.router" in imported_after(code, tmp_path)


def test_the_builtin_catalog_is_validated_once_and_overrides_still_apply() -> None:
    from decimal import Decimal

    from fluxroute.catalog import load_catalog
    from fluxroute.settings import Settings

    assert load_catalog() is load_catalog()
    assert load_catalog(Settings()) is load_catalog()
    offer = load_catalog().offers[0]
    priced = load_catalog(Settings(prices={offer.id: Decimal("0.123")}))
    assert priced.offer(offer.id).price.usd == Decimal("0.123")
    assert load_catalog().offer(offer.id).price.usd == offer.price.usd  # the shared catalog is untouched

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

# What listing the tools never needs: the router's HTTP stack (httpx), image decoding (PIL), the validator
# behind error messages (jsonschema), the local-weights lookup (huggingface_hub), webhook signatures
# (cryptography), local inference (torch, diffusers) and fal's client. The router itself, its providers and the
# store are made once the server runs, in the background or for the first call.
NEVER_BEFORE_TOOLS_LIST = (
    "PIL",
    "httpx",
    "jsonschema",
    "huggingface_hub",
    "cryptography",
    "torch",
    "diffusers",
    "fal_client",
    "fluxroute.router",
    "fluxroute.store",
    "fluxroute.tools.library",
    "fluxroute.tools.validation",
    "fluxroute.prompts.lint",
)

# `fluxroute serve` up to its answer to tools/list, without a transport: the CLI builds the server as it does
# for stdio, and the server answers tools/list (a client's first request after initialize) in place of `run`.
SERVE_TO_TOOLS_LIST = """
import asyncio
from unittest import mock
from mcp.server.mcpserver import MCPServer

listed = []

def answer_tools_list(self, transport="stdio"):
    listed.extend(asyncio.run(self.list_tools()))

with mock.patch.object(MCPServer, "run", answer_tools_list):
    from fluxroute.cli import main
    assert main(["serve"]) == 0
assert [tool.name for tool in listed][:2] == ["generate_image", "plan_image_route"], listed
"""

# What the MCP SDK's own server loads (it brings part of cryptography, for one): not fluxroute's to avoid.
MCP_SERVER = "from mcp.server.mcpserver import MCPServer\nMCPServer('bare', log_level='WARNING')"


def imported_after(code: str, tmp_path: Path, env: dict[str, str] | None = None) -> set[str]:
    """The modules a fresh `python -c` has loaded after running `code`, in this environment without its
    FLUXROUTE_ and Hugging Face variables, plus `env`."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXROUTE_", "HF_", "HUGGINGFACE_"))}
    env = {**kept, "FLUXROUTE_HOME": str(tmp_path / "home"), "FLUXROUTE_CONFIG": "none", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env, cwd=tmp_path
    )
    last = done.stdout.strip().splitlines()[-1]
    return set(json.loads(last))


def loaded(modules: set[str], name: str) -> bool:
    return any(m == name or m.startswith(f"{name}.") for m in modules)


def added_by_fluxroute(code: str, tmp_path: Path) -> list[str]:
    """The NEVER_BEFORE_TOOLS_LIST modules `code` loads beyond what the MCP SDK's server loads by itself."""
    modules = imported_after(code, tmp_path) - imported_after(MCP_SERVER, tmp_path)
    return [name for name in NEVER_BEFORE_TOOLS_LIST if loaded(modules, name)]


def test_importing_the_server_loads_no_router_http_stack_images_validator_or_inference(tmp_path: Path) -> None:
    assert "fluxroute.server.app" in imported_after("import fluxroute.server", tmp_path)
    assert added_by_fluxroute("import fluxroute.server", tmp_path) == []


def test_building_the_server_and_listing_its_tools_loads_none_of_them(tmp_path: Path) -> None:
    code = (
        "import asyncio\n"
        "from fluxroute.server import build_server\n"
        "from fluxroute.settings import Settings\n"
        "server = build_server(Settings.load())\n"
        "assert len(asyncio.run(server.list_tools())) == 11"
    )
    assert added_by_fluxroute(code, tmp_path) == []


def test_serve_up_to_its_first_tools_list_loads_none_of_them(tmp_path: Path) -> None:
    assert added_by_fluxroute(SERVE_TO_TOOLS_LIST, tmp_path) == []


def test_the_saved_tool_listing_is_the_specs_mcp_export() -> None:
    from fluxroute.server.tools import GENERATE, TOOLS_FILE, tool_definitions
    from fluxroute.tools import to_mcp, tool_specs

    assert tool_definitions() == to_mcp(), (
        f"fluxroute/server/{TOOLS_FILE} is out of date: fluxroute tools --format mcp > fluxroute/server/{TOOLS_FILE}"
    )
    assert [spec.name for spec in tool_specs() if spec.handler == "generate"] == [GENERATE]


def test_looking_for_local_weights_loads_huggingface_hub_only_where_its_cache_holds_them(tmp_path: Path) -> None:
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    # no Hugging Face cache anywhere it may be (the default one is under HOME), then one with FLUX.1 [dev] in it
    hf = {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache"), "HF_HUB_CACHE": str(cache)}
    router = "from fluxroute.router import Router\nfrom fluxroute.settings import Settings\nRouter(Settings.load())"
    assert not loaded(imported_after(router, tmp_path, hf), "huggingface_hub")

    repo = "black-forest-labs/FLUX.1-dev"
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (folder / "snapshots" / ("0" * 40) / "model_index.json").write_text(
        '{"_class_name": "FluxPipeline"}', encoding="utf-8"
    )
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0" * 40, encoding="utf-8")
    find = (
        "from fluxroute.providers.local_weights import find_weights\nfrom fluxroute.settings import Settings\n"
        f"path, why = find_weights(Settings.load(), [{repo!r}])\nassert path is not None and path.name == '0' * 40, why"
    )
    assert loaded(imported_after(find, tmp_path, hf), "huggingface_hub")


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


def test_the_tool_library_names_still_resolve_on_first_access(tmp_path: Path) -> None:
    code = (
        "import fluxroute.tools as tools\n"
        "import fluxroute.tools.export\n"
        "assert callable(tools.export) and tools.export('mcp')\n"
        "from fluxroute.tools import ToolLibrary, validate, GenerateOutput, tool_specs\n"
        "assert set(tools.__all__) <= set(dir(tools))"
    )
    assert "fluxroute.tools.library" in imported_after(code, tmp_path)


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

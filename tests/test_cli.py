"""The CLI as a person uses it: README examples run as written; plans, errors and exit codes."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from fluxroute.cli import main
from fluxroute.tools import tool_specs

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(autouse=True)
def offline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("FAL_KEY", "KREA_API_TOKEN", "FLUXROUTE_USAGE", "FLUXROUTE_LOCAL_MODEL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FLUXROUTE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLUXROUTE_CONFIG", "none")
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own exits: --version, --help, its refusals
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def readme_commands() -> list[str]:
    return re.findall(r"^\$ fluxroute (.+)$", README.read_text(encoding="utf-8"), flags=re.MULTILINE)


def test_readme_has_terminal_examples() -> None:
    assert len(readme_commands()) >= 5


@pytest.mark.parametrize("command", readme_commands())
def test_readme_examples_run_as_written_without_keys(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *shlex.split(command))
    assert code == 0, err
    assert out.strip()


def test_commercial_route_lists_local_weights_as_rejected_for_license(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "route", "a lighthouse at dusk", "--usage", "commercial", "--json")
    plan = json.loads(out)
    assert code == 0
    chosen = [*plan["candidates"], *plan["unavailable"]]
    # with nothing declared no local weights auto may pick serve commercial use (schnell is asked for by name)
    assert {c["offer_id"] for c in chosen if c["provider"] == "local"} == set()
    reasons = {r["offer_id"]: r["reasons"] for r in plan["rejections"]}
    assert reasons["local-flux-krea-dev"][0].startswith("FLUX.1 [dev] Non-Commercial License and usage=commercial;")
    assert "declare organization_revenue_usd_ttm" in reasons["local-krea-2-turbo"][0]


def test_six_megapixels_are_refused_with_reasons_and_exit_code_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "route", "a lighthouse", "--width", "3000", "--height", "2000")
    assert code == 3
    assert "fal flux/krea: 6.0 MP exceeds 4 MP" in err


def test_krea_2_gets_the_wide_aspect_ratio_from_its_enum(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "route", "a lighthouse", "--model", "krea-2", "--provider", "krea", "--aspect-ratio", "2.35:1", "--json"
    )
    plan = json.loads(out)
    assert code == 0
    assert plan["unavailable"][0]["params"]["aspect_ratio"] == "2.35:1"


def test_bad_input_names_field_value_and_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "route", "x", "--num-images", "7")
    assert code == 2
    assert "num_images: got 7" in err and "4" in err


def test_tools_print_each_format_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    for fmt, key in (("mcp", "inputSchema"), ("openai", "function"), ("anthropic", "input_schema")):
        code, out, _ = run(capsys, "tools", "--format", fmt)
        assert code == 0
        assert {t["name"] if key != "function" else t["function"]["name"] for t in json.loads(out)} == {
            spec.name for spec in tool_specs()
        }
        assert all(key in t for t in json.loads(out))


def test_models_explain_unavailability_without_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "--json")
    offers = {o["offer_id"]: o for m in json.loads(out)["models"] for o in m["offers"]}
    assert code == 0
    assert offers["krea-flux-1-dev"]["available"] is False
    assert "KREA_API_TOKEN is not set" in offers["krea-flux-1-dev"]["reason"]
    assert offers["local-flux-dev"]["commercial_use"] is False


def test_generate_without_keys_fails_cleanly_with_every_reason(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "generate", "a cat")
    assert code == 3
    assert "KREA_API_TOKEN is not set" in err and "Non-Commercial License" in err


def test_secrets_never_appear_in_output(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", "sk-secret-fal-key-123:abc")
    monkeypatch.setenv("KREA_API_TOKEN", "krea-secret-token-456")
    for argv in (("models", "--json"), ("route", "a cat", "--explain", "--json"), ("spend",), ("jobs",)):
        _, out, err = run(capsys, *argv)
        assert "secret" not in out + err


def test_spend_and_jobs_start_empty(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "spend", "--json")
    assert code == 0 and json.loads(out)["spent_total"] == "0"
    code, out, _ = run(capsys, "jobs")
    assert code == 0 and "no jobs yet" in out


def test_a_style_reference_url_is_taken_whole_and_its_strength_follows_it() -> None:
    from fluxroute.cli import _request_from, build_parser

    args = build_parser().parse_args(
        ["route", "x", "--style-ref", "https://e.com/a.png?size=1", "--style-ref", "https://e.com/b.png?w=512", "0.7"]
    )
    refs = _request_from(args).style_references
    assert [(ref.url, ref.strength) for ref in refs] == [
        ("https://e.com/a.png?size=1", 0.5),
        ("https://e.com/b.png?w=512", 0.7),
    ]


def test_a_style_reference_takes_its_strength_after_an_equals_sign_unless_the_url_has_a_query() -> None:
    from fluxroute.cli import _request_from, build_parser

    argv = ["route", "x", "--style-ref", "https://e.com/a.png=0.7", "--style-ref", "https://e.com/b.png?w=512"]
    argv += ["--style-ref", "https://e.com/c.png=.25", "--style-ref", "https://e.com/d.png", "0.9"]
    refs = _request_from(build_parser().parse_args(argv)).style_references
    assert [(ref.url, ref.strength) for ref in refs] == [
        ("https://e.com/a.png", 0.7),
        ("https://e.com/b.png?w=512", 0.5),  # a query string: the URL whole, the default strength
        ("https://e.com/c.png", 0.25),
        ("https://e.com/d.png", 0.9),  # the two-word form
    ]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["route", "x", "--style-ref", "https://e.com/a.png=7"], "style_references.0.strength: got 7"),
        (["route", "x", "--style-ref", "https://e.com/a.png", "abc"], "style_references.0.strength: got 'abc'"),
        (["route", "x", "--style-ref", "https://e.com/a.png", "0.5", "9"], "style_references.0: got"),
        (["route", "x", "--style-ref", "https://e.com/a.png", "7"], "style_references.0.strength"),
        (["route", "\u200b"], "prompt: got '\\u200b'; must contain visible text"),
        (["route", "a\x00b"], "must not contain control characters (found U+0000)"),
        (["route", "x", "--max-cost", "inf"], "max_cost_usd: got inf; a finite number"),
        (["route", "x", "--megapixels", "nan"], "megapixels: got nan; a finite number"),
        (["route", "x", "--model", "no such model"], "model: got 'no such model'; a model id such as"),
    ],
)
def test_hostile_cli_input_is_one_line_naming_the_field(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and says in err, err
    assert "Traceback" not in err + out


@pytest.mark.parametrize("limit", ["0", "-3", "lots"])
def test_jobs_limit_must_be_a_positive_number(capsys: pytest.CaptureFixture[str], limit: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["jobs", "--limit", limit])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--limit" in err and "Traceback" not in err


def test_the_readme_exit_code_table_is_the_code_table() -> None:
    from fluxroute.cli import EXIT_CODES, OTHER_EXIT_CODES

    text = README.read_text(encoding="utf-8")
    table = text[text.index("| exit code | meaning |") :].split("\n\n", 1)[0]
    documented = {int(code): meaning for code, meaning in re.findall(r"^\| (\d+) \| (.+) \|$", table, re.MULTILINE)}
    assert documented == {**OTHER_EXIT_CODES, **{code: meaning for code, _, meaning in EXIT_CODES}}


def test_version_is_printed_without_a_store_or_settings(capsys: pytest.CaptureFixture[str], offline_env: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("fluxroute ")
    assert not (offline_env / "home").exists()


def test_read_only_commands_create_nothing(capsys: pytest.CaptureFixture[str], offline_env: Path) -> None:
    for argv in (["jobs"], ["spend"], ["spend", "--json"], ["jobs", "--json"], ["models"], ["tools"], ["route", "x"]):
        assert main(argv) == 0, argv
    capsys.readouterr()
    assert not (offline_env / "home").exists()


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"FLUXROUTE_USAGE": "bogus"}, "FLUXROUTE_USAGE: Input should be 'commercial' or 'non-commercial'"),
        ({"FLUXROUTE_CONFIG": "/no/such/fluxroute.toml"}, "FLUXROUTE_CONFIG=/no/such/fluxroute.toml: no such file"),
        ({"FLUXROUTE_MAX_IMAGE_PIXELS": "lots"}, "FLUXROUTE_MAX_IMAGE_PIXELS:"),
    ],
)
def test_a_settings_error_names_the_variable_it_came_from(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, env: dict[str, str], says: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _out, err = run(capsys, "jobs")
    assert code == 6 and says in err and "Traceback" not in err, err


def test_a_settings_error_in_the_config_file_names_the_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "fluxroute.toml"
    config.write_text('usage = "bogus"\n', encoding="utf-8")
    monkeypatch.setenv("FLUXROUTE_CONFIG", str(config))
    code, _, err = run(capsys, "spend")
    assert code == 6 and f"usage (in {config})" in err, err


def test_a_per_call_budget_that_leaves_no_offer_is_exit_code_4(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAL_KEY", "id:secret")
    monkeypatch.setenv("FLUXROUTE_BUDGET_PER_CALL_USD", "0.001")
    code, _, err = run(capsys, "route", "a lighthouse", "--model", "flux-dev", "--provider", "fal")
    assert code == 4 and "costs more than allowed" in err and "per-call budget" in err, err


@pytest.mark.parametrize(
    ("argv", "code", "names"),
    [
        (["route", "x", "--num-images", "9"], 2, "num_images"),
        (["route", "x", "--aspect-ratio", "16x9"], 2, "aspect_ratio"),
        (["route", "x", "--width", "1024"], 2, "- width, height: got {'width': 1024, 'height': None}"),
        (["route", "x", "--aspect-ratio", "16:9", "--image-size", "square"], 2, "- aspect_ratio, image_size: got"),
        (["route", "x", "--strength", "0.5"], 2, "- strength, init_image: got"),
        (["route", "x", "--init-image", "http://127.0.0.1/a.png"], 2, "init_image"),
        (["route", "x", "--model", "flux-dev", "--max-cost", "0.0001"], 4, "max_cost_usd"),
        (["generate", "x", "--seed", "-1"], 2, "seed"),
        (["generate", "x", "--style-ref", "https://e.com/a.png", "strong"], 2, "style_references.0.strength"),
        (["generate", "x", "--model", "flux-dev", "--usage", "commercial", "--provider", "local"], 3, "local"),
        (["jobs", "cancel", "no-such-job"], 2, "no-such-job"),
        (["jobs", "settle", "no-such-job", "--billed"], 2, "no-such-job"),
        (["jobs", "--limit", "0"], 2, "--limit"),
        (["tools", "--format", "yaml"], 2, "--format"),
        (["serve", "--http", "--port", "99999"], 6, "--port"),
        (["generate"], 2, "prompt"),
        (["draft", "x", "-n", "9"], 2, "n: got 9"),
        (["draft", "x", "-n", "0"], 2, "-n"),
        (["draft", "x", "--seed", "-1"], 2, "seed"),
        (["draft"], 2, "prompt"),
        (["finalize", "no-such-set", "1"], 2, "no-such-set"),
        (["finalize", "no-such-set", "0"], 2, "index"),
        (["finalize", "no-such-set", "1", "--method", "bogus"], 2, "--method"),
        (["finalize", "no-such-set"], 2, "index"),
        (["jobs", "resume", "no-such-job"], 2, "no-such-job"),
        (["jobs", "--limit", "lots", "resume"], 2, "--limit"),
    ],
)
def test_every_command_given_bad_input_says_which_and_exits_with_the_readme_code(
    capsys: pytest.CaptureFixture[str], argv: list[str], code: int, names: str
) -> None:
    try:
        exited = main(argv)
    except SystemExit as exc:  # argparse's own refusals: usage line and message, exit 2
        exited = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert exited == code, (exited, err)
    assert names in err and "Traceback" not in out + err, err
    text = README.read_text(encoding="utf-8")
    assert f"| {code} |" in text[text.index("| exit code | meaning |") :]


def test_models_show_each_offers_license_in_one_actionable_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("FLUXROUTE_REVENUE_UNDER_1M", "FLUXROUTE_ORGANIZATION_REVENUE_USD_TTM"):
        monkeypatch.delenv(var, raising=False)
    code, out, _ = run(capsys, "models")
    assert code == 0
    krea_2 = (
        "license: Krea 2 Community License v1 — commercial use below US$1M revenue; declare "
        "organization_revenue_usd_ttm; local_content_checker required when others can reach the server"
    )
    assert f"{krea_2} (commercial use: not allowed as declared)" in out
    assert "license: Apache-2.0 — commercial use allowed\n" in out
    monkeypatch.setenv("FLUXROUTE_REVENUE_UNDER_1M", "true")
    code, out, _ = run(capsys, "models")
    assert f"{krea_2} (commercial use: allowed as declared)" in out

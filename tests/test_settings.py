"""Settings: environment over fluxroute.toml, validated, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxroute.errors import ConfigError
from fluxroute.settings import Settings


def test_environment_overrides_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "fluxroute.toml"
    config.write_text('usage = "non-commercial"\nbudget_daily_usd = 2.5\n', encoding="utf-8")
    settings = Settings.load(environ={"FLUXROUTE_USAGE": "commercial"}, config_file=config)
    assert settings.usage == "commercial"
    assert str(settings.budget_daily_usd) == "2.5"


def test_defaults_are_commercial_usage_and_the_public_krea_host() -> None:
    settings = Settings.load(environ={}, config_file=Path("/nonexistent.toml"))
    assert settings.usage == "commercial"
    assert settings.krea_base_url == "https://api.krea.ai"


def test_secrets_are_hidden_in_repr_and_errors(tmp_path: Path) -> None:
    settings = Settings.load(environ={"FAL_KEY": "id:topsecret", "KREA_API_TOKEN": "tok-topsecret"})
    assert "topsecret" not in repr(settings) and "topsecret" not in str(settings.model_dump())
    config = tmp_path / "bad.toml"
    config.write_text('fal_key = "id:topsecret"\nusage = "sometimes"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Settings.load(environ={}, config_file=config)
    assert "usage" in str(info.value) and "topsecret" not in str(info.value)


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("usage = ", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.load(environ={}, config_file=config)


def test_local_inference_settings_come_from_their_environment_variables() -> None:
    settings = Settings.load(
        environ={
            "FLUXROUTE_LOCAL_MEMORY_PLAN": "model_offload",
            "FLUXROUTE_LOCAL_COMPILE": "true",
            "FLUXROUTE_LOCAL_ATTENTION_BACKEND": "_flash_3",
            "FLUXROUTE_LOCAL_FP8": "1",
            "FLUXROUTE_LOCAL_CONTENT_CHECKER": "mypackage.safety:check",
            "FLUXROUTE_LOCAL_COMMERCIAL_LICENSE": "true",
        },
        config_file=Path("/nonexistent.toml"),
    )
    assert settings.local_memory_plan == "model_offload" and settings.local_compile and settings.local_fp8
    assert settings.local_attention_backend == "_flash_3"
    assert settings.local_content_checker == "mypackage.safety:check" and settings.local_commercial_license


def test_a_content_checker_must_be_named_as_module_colon_callable() -> None:
    with pytest.raises(ConfigError, match="FLUXROUTE_LOCAL_CONTENT_CHECKER"):
        Settings.load(environ={"FLUXROUTE_LOCAL_CONTENT_CHECKER": "check"}, config_file=Path("/nonexistent.toml"))


def test_the_database_url_comes_from_its_variable_and_stays_secret() -> None:
    from fluxroute.redact import redact, settings_secrets

    url = "postgresql://fluxroute:hunter2-Sw0rdfish@db.internal:5432/fluxroute"
    settings = Settings.load(environ={"FLUXROUTE_CONFIG": "none", "FLUXROUTE_DATABASE_URL": url})
    assert settings.database_url is not None and settings.database_url.get_secret_value() == url
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
    secrets = settings_secrets(settings)
    assert url in secrets and "hunter2-Sw0rdfish" in secrets  # the password alone too
    said = redact(f"could not log in to {url}; password hunter2-Sw0rdfish rejected", secrets)
    assert "hunter2" not in said
    assert Settings.load(environ={"FLUXROUTE_CONFIG": "none"}).database_url is None  # unset: SQLite under home


def test_a_database_url_that_is_not_postgresql_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match=r"FLUXROUTE_DATABASE_URL: .*postgresql://") as refused:
        Settings.load(environ={"FLUXROUTE_CONFIG": "none", "FLUXROUTE_DATABASE_URL": "mysql://u:topsecret9@h/db"})
    assert "topsecret9" not in str(refused.value)

"""One settings object, read once from the environment and an optional fluxroute.toml, passed down."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fluxroute.errors import ConfigError
from fluxroute.types import Usage

APP_NAME = "fluxroute"
# a host name or [IPv6] or IPv4 address, and an optional port
HOST_PORT_PATTERN = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:[0-9]{1,5})?$"

# environment variable -> settings field
# what the JSON-object settings look like, for the error that refuses another value
JSON_EXAMPLES = {
    "local_models": '{"krea/Krea-2-Turbo": "/path/to/weights"}',
    "local_loras": '{"me/ink-style": "/loras/ink.safetensors"}',
    "local_upscalers": '{"ai-forever/Real-ESRGAN/RealESRGAN_x4.pth": "/models/RealESRGAN_x4.pth"}',
}
ENV_FIELDS: dict[str, str] = {
    "FAL_KEY": "fal_key",
    "KREA_API_TOKEN": "krea_api_token",
    "FLUXROUTE_KREA_BASE_URL": "krea_base_url",
    "FLUXROUTE_FAL_BASE_URL": "fal_base_url",
    "FLUXROUTE_FAL_REST_URL": "fal_rest_url",
    "FLUXROUTE_FAL_CDN_URL": "fal_cdn_url",
    "FLUXROUTE_FAL_JWKS_URL": "fal_jwks_url",
    "FLUXROUTE_HOME": "home",
    "FLUXROUTE_IMAGES_DIR": "images_dir",
    "FLUXROUTE_DATABASE_URL": "database_url",
    "FLUXROUTE_RAY_URL": "ray_url",
    "FLUXROUTE_RAY_ADDRESS": "ray_address",
    "FLUXROUTE_RAY_TOKEN": "ray_token",
    "FLUXROUTE_USAGE": "usage",
    "FLUXROUTE_LOCAL_MODEL": "local_model",
    "FLUXROUTE_LOCAL_MODELS": "local_models",
    "FLUXROUTE_LOCAL_LORAS": "local_loras",
    "FLUXROUTE_LOCAL_UPSCALERS": "local_upscalers",
    "FLUXROUTE_LOCAL_DEVICE": "local_device",
    "FLUXROUTE_LOCAL_MEMORY_PLAN": "local_memory_plan",
    "FLUXROUTE_LOCAL_COMPILE": "local_compile",
    "FLUXROUTE_LOCAL_ATTENTION_BACKEND": "local_attention_backend",
    "FLUXROUTE_LOCAL_FP8": "local_fp8",
    "FLUXROUTE_LOCAL_CONTENT_CHECKER": "local_content_checker",
    "FLUXROUTE_LOCAL_COMMERCIAL_LICENSE": "local_commercial_license",
    "FLUXROUTE_ORGANIZATION_REVENUE_USD_TTM": "organization_revenue_usd_ttm",
    "FLUXROUTE_REVENUE_UNDER_1M": "revenue_under_1m",
    "FLUXROUTE_BUDGET_PER_CALL_USD": "budget_per_call_usd",
    "FLUXROUTE_BUDGET_DAILY_USD": "budget_daily_usd",
    "FLUXROUTE_CONFIRM_ABOVE_USD": "confirm_above_usd",
    "FLUXROUTE_CONFIRM_DAILY_USD": "confirm_daily_usd",
    "FLUXROUTE_SERVER_TOKEN": "server_token",
    "FLUXROUTE_SERVER_ALLOWED_HOSTS": "server_allowed_hosts",
    "FLUXROUTE_ALLOW_PRIVATE_URLS": "allow_private_urls",
    "FLUXROUTE_MAX_INPUT_IMAGE_BYTES": "max_input_image_bytes",
    "FLUXROUTE_MAX_IMAGE_PIXELS": "max_image_pixels",
}


def summarize(exc: ValidationError, source: Mapping[str, str] | None = None) -> str:
    """`WHERE: message; ...`, WHERE being the variable or file a field came from (else its name), without the
    offending values (they may be secrets)."""
    parts = []
    for error in exc.errors(include_input=False):
        field = ".".join(str(p) for p in error["loc"])
        where = (source or {}).get(str(error["loc"][0]) if error["loc"] else "", "")
        shown = where if where.isupper() else f"{field} (in {where})" if where else field
        parts.append(f"{shown}: {error['msg']}")
    return "; ".join(parts)


def default_home() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def _home_images(home: object) -> Path:
    """The default images_dir: `home`/images (`home` as validated; the default home when it failed)."""
    return (home if isinstance(home, Path) else default_home()) / "images"


def default_config_file() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "fluxroute.toml"


class Settings(BaseModel):
    """Everything configurable. Secrets are SecretStr so repr, logs and errors never show them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fal_key: SecretStr | None = None
    krea_api_token: SecretStr | None = None
    krea_base_url: str = "https://api.krea.ai"
    fal_base_url: str = Field(
        default="https://queue.fal.run",
        description="fal's queue host: submit, status, result and cancel go here (a proxy or gateway may stand in)",
    )
    fal_rest_url: str = Field(
        default="https://rest.fal.ai",
        description="fal's REST host: input-image uploads get their storage token here (fal-client's REST_URL)",
    )
    fal_cdn_url: str = Field(
        default="https://v3.fal.media",
        description="fal's CDN host: input images too large to send inline are uploaded here (fal-client's CDN_URL)",
    )
    fal_jwks_url: str = Field(
        default="https://rest.alpha.fal.ai/.well-known/jwks.json",
        description="where the keys that sign fal's webhooks are published (the server checks each webhook with them)",
    )
    home: Path = Field(default_factory=default_home)
    images_dir: Path = Field(
        default_factory=lambda data: _home_images(data.get("home")),
        description="where generated images are saved; a directory every replica of a service can reach when "
        "several share one store; unset: the images folder under home",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="postgresql://user:password@host:5432/db: keep jobs and the spend ledger in this PostgreSQL "
        "database, shared by several processes and replicas (the `postgres` extra); unset: one SQLite file under "
        "home. A secret: it may carry a password",
    )
    ray_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        description="the URL of a fluxroute fleet on Ray Serve (what `fluxroute ray deploy` prints, e.g. "
        "http://10.0.0.5:8000/fluxroute): its replicas serve the local offers' weights as the ray offers; "
        "unset: no fleet",
    )
    ray_token: SecretStr | None = Field(
        default=None,
        description="the bearer token a fleet requires on its job API (given to `fluxroute ray deploy`, which keeps "
        "only its SHA-256, and sent by routers); needed when the fleet listens beyond loopback",
    )
    ray_address: str | None = Field(
        default=None,
        description="the Ray cluster `fluxroute ray deploy` deploys to (ray.init's address: auto, ray://host:10001, "
        "host:6379); unset: RAY_ADDRESS, else a Ray instance started on this machine",
    )
    usage: Usage = "commercial"
    local_model: Path | None = Field(
        default=None,
        description="diffusers folder of FLUX.1 Krea [dev] or FLUX.1 [dev] weights (the local offers of those models)",
    )
    local_models: dict[str, Path] = Field(
        default_factory=dict,
        description="Hugging Face repo id (a local offer's endpoint) -> diffusers folder of its weights, e.g. "
        '{"krea/Krea-2-Turbo": "/models/krea-2-turbo"}; a JSON object in FLUXROUTE_LOCAL_MODELS',
    )
    local_loras: dict[str, Path] = Field(
        default_factory=dict,
        description="LoRA reference (a Hugging Face repo owner/name) -> its .safetensors file or a folder holding it, "
        'e.g. {"me/ink-style": "/loras/ink.safetensors"}, for local runs (offline: else the Hugging Face cache); '
        "a JSON object in FLUXROUTE_LOCAL_LORAS",
    )
    local_upscalers: dict[str, Path] = Field(
        default_factory=dict,
        description="upscaler weights reference (a local upscale offer's endpoint: Hugging Face repo owner/name/file, "
        'or owner/name) -> its .safetensors / .pth file or a folder holding it, e.g. {"ai-forever/Real-ESRGAN/'
        'RealESRGAN_x4.pth": "/models/RealESRGAN_x4.pth"}, for local upscaling with spandrel (offline: else the '
        "Hugging Face cache); a JSON object in FLUXROUTE_LOCAL_UPSCALERS",
    )
    local_device: Literal["auto", "cuda", "cpu"] = "auto"
    local_memory_plan: Literal["auto", "gpu", "model_offload", "sequential_offload"] = Field(
        default="auto",
        description="where local weights live during a generation; auto picks from free GPU memory",
    )
    local_compile: bool = Field(default=False, description="torch.compile the transformer's blocks (warm-up on load)")
    local_attention_backend: str | None = Field(
        default=None, description="diffusers attention backend, e.g. flash, _flash_3, _native_cudnn; unset: PyTorch's"
    )
    local_fp8: bool = Field(default=False, description="fp8 transformer linears through torchao (Hopper and newer)")
    local_content_checker: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="'module:callable' judging each local image; unset: results are marked for manual review",
    )
    local_commercial_license: bool = Field(
        default=False,
        description="Set true only if you hold your own commercial license for the FLUX.1 [dev] weights.",
    )
    organization_revenue_usd_ttm: Decimal | None = Field(
        default=None,
        ge=0,
        description="your organisation's revenue over the trailing twelve months, in USD: revenue-gated licenses "
        "(Krea 2 Community: below US$1M) allow commercial use only when it is declared and below their limit",
    )
    revenue_under_1m: bool | None = Field(
        default=None,
        description="declare instead of organization_revenue_usd_ttm: true if that revenue is below US$1M",
    )
    remote_reachable: bool = Field(
        default=False,
        description="others can reach this server (set by `fluxroute serve --http --allow-remote`): local offers "
        "whose license requires content filtering then need local_content_checker",
    )
    budget_per_call_usd: Decimal | None = Field(default=None, ge=0)
    budget_daily_usd: Decimal | None = Field(default=None, ge=0)
    confirm_above_usd: Decimal | None = Field(
        default=Decimal("0.50"),
        ge=0,
        description="tool calls estimated above this need the user's approval (MCP elicitation or "
        "confirm_spend: true); unset: never asked",
    )
    confirm_daily_usd: Decimal | None = Field(
        default=None, ge=0, description="tool calls that would take today's spend above this need approval too"
    )
    server_token: SecretStr | None = Field(
        default=None, description="bearer token `fluxroute serve --http` requires on /mcp"
    )
    server_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header values `fluxroute serve --http` accepts besides its own address and loopback "
        "names, e.g. mcp.example.com (the name a proxy forwards); comma-separated in the environment",
    )
    prices: dict[str, Decimal] = Field(
        default_factory=dict, description="offer id -> price override in USD (per the offer's unit)"
    )
    offers: list[dict[str, Any]] = Field(
        default_factory=list, description="extra offers, same shape as the catalog's [[offers]]"
    )
    provider_timeout_s: float = Field(
        default=600.0, gt=0, description="stop waiting for a job after this; it is cancelled where the provider allows"
    )
    retry_backoff_s: float = Field(
        default=0.5, gt=0, description="first pause after a failed status check or download (doubles, up to 10 s)"
    )
    reconcile_delay_s: float = Field(
        default=5.0, ge=0, description="pause between the two job listings that look for an unanswered submission"
    )
    cancel_settle_s: float = Field(
        default=10.0, ge=0, description="how long to follow a job after asking the provider to cancel it"
    )
    webhook_base_url: str | None = Field(
        default=None,
        description="public URL where this process receives provider webhooks ({base}/webhooks/krea|fal); "
        "unset: completion is found by polling",
    )
    allow_private_urls: bool = Field(
        default=False,
        description="let image URLs (the caller's, and where provider results redirect) reach loopback, private "
        "and link-local addresses",
    )
    max_input_image_bytes: int = Field(
        default=20 * 1024 * 1024, gt=0, description="largest input image (data: URI or fetched) in bytes"
    )
    # 4x the largest output of any catalog offer (Krea's 2368x2368, 5.6 MP), and a 24 MP camera photo fits
    max_image_pixels: int = Field(
        default=25_000_000,
        gt=0,
        description="largest width x height an input or result image may declare; checked before decoding",
    )
    trusted_hosts: list[Annotated[str, Field(pattern=HOST_PORT_PATTERN)]] = Field(
        default_factory=lambda: ["gen.krea.ai", "v3.fal.media"],
        description="'host' or 'host:port' whose provider result URLs may resolve to non-public addresses; the "
        "hosts of krea_base_url and fal_base_url are trusted too. Without a port: 80 and 443",
    )

    @model_validator(mode="after")
    def _revenue_agrees(self) -> Settings:
        revenue, under = self.organization_revenue_usd_ttm, self.revenue_under_1m
        if revenue is not None and under is not None and (revenue < 1_000_000) != under:
            raise ValueError(
                f"organization_revenue_usd_ttm {revenue} and revenue_under_1m = {str(under).lower()} disagree"
            )
        return self

    @field_validator("local_models", "local_loras", "local_upscalers", mode="before")
    @classmethod
    def _parse_json_object(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"not a JSON object (e.g. {JSON_EXAMPLES[str(info.field_name)]})") from None

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")  # without the value: it may carry a password
        return value

    @field_validator("server_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @field_validator("images_dir", mode="before")
    @classmethod
    def _images_under_home(cls, value: object, info: ValidationInfo) -> object:
        return _home_images(info.data.get("home")) if value is None or value == "" else value

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] | None = None,
        config_file: Path | None = None,
        **overrides: Any,
    ) -> Settings:
        """Read fluxroute.toml (FLUXROUTE_CONFIG, or the user config dir), then the environment, then overrides.
        FLUXROUTE_CONFIG=none reads no file; a FLUXROUTE_CONFIG naming a file that does not exist is an error.

        Raises:
            ConfigError: the file is missing (when named), not valid TOML, or a value is out of range; the
                message names the variable or the file the value came from, and never echoes a secret's value.
        """
        env = os.environ if environ is None else environ
        named = env.get("FLUXROUTE_CONFIG")
        path: Path | None = config_file or default_config_file()
        if config_file is None and named:
            path = None if named == "none" else Path(named)
            if path is not None and not path.is_file():
                raise ConfigError(f"FLUXROUTE_CONFIG={named}: no such file (set FLUXROUTE_CONFIG=none to read none)")
        values: dict[str, Any] = {}
        source: dict[str, str] = {}
        if path is not None and path.is_file():
            try:
                values.update(tomllib.loads(path.read_text(encoding="utf-8")))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: not valid TOML: {exc}") from None
            source = dict.fromkeys(values, str(path))
        for var, field in ENV_FIELDS.items():
            if env.get(var):
                values[field] = env[var]
                source[field] = var
        values.update(overrides)
        source.update(dict.fromkeys(overrides, "the arguments"))
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError("invalid settings: " + summarize(exc, source)) from None

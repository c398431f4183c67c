"""A fleet of local GPU workers on Ray Serve (the `ray` extra): `deploy` starts the application (fleet/app.py) on a
Ray cluster; routers reach it over HTTP through the `ray` provider (providers/ray_fleet.py) at FLUXROUTE_RAY_URL.

Only this module is imported by the CLI without Ray; fleet/app.py imports Ray and runs inside the cluster.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import threading
from typing import Any

from fluxroute.errors import ConfigError
from fluxroute.settings import Settings

__all__ = ["REPLICA_FIELDS", "cluster_address", "deploy", "ray_missing", "replica_settings", "serve_until_interrupted"]

# the settings each replica runs its local worker with, read where `fluxroute ray deploy` runs (paths must hold on
# every node: the same weights folders there, or each node's Hugging Face cache); never a secret
REPLICA_FIELDS = frozenset(
    {
        "local_model",
        "local_models",
        "local_loras",
        "local_upscalers",
        "local_device",
        "local_memory_plan",
        "local_compile",
        "local_attention_backend",
        "local_fp8",
        "local_content_checker",
        "allow_private_urls",
        "max_input_image_bytes",
        "max_image_pixels",
    }
)


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def ray_missing() -> str | None:
    """Why the fleet cannot be deployed from here, or None when Ray Serve is installed."""
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.serve") is None:
        return "Ray Serve is not installed (pip install 'fluxroute[ray]')"
    return None


def replica_settings(settings: Settings) -> dict[str, Any]:
    """The part of `settings` the replicas run with, as JSON-able data."""
    return settings.model_dump(mode="json", include=set(REPLICA_FIELDS))


def cluster_address(settings: Settings, given: str | None = None) -> str | None:
    """The Ray cluster to deploy to: `given`, else settings.ray_address (FLUXROUTE_RAY_ADDRESS), else RAY_ADDRESS;
    None: none named, a Ray instance is started in this process."""
    return given or settings.ray_address or os.environ.get("RAY_ADDRESS") or None


def deploy(
    settings: Settings,
    *,
    replicas: int,
    gpus_per_replica: float,
    cpus_per_replica: float,
    host: str,
    port: int,
    route_prefix: str,
    address: str | None = None,
    num_cpus: int | None = None,
) -> str:
    """Deploy (or update) the fleet application on the Ray cluster at `address` (None: a new Ray instance in this
    process, with `num_cpus`, which ends with the process), with Serve's HTTP proxy on
    `host`:`port`. Returns the URL to set as FLUXROUTE_RAY_URL once every replica has started.

    Raises:
        ConfigError: Ray Serve is not installed, or `host` is not loopback and no fleet token is set.
    """
    missing = ray_missing()
    if missing:
        raise ConfigError(missing)
    token = settings.ray_token.get_secret_value().strip() if settings.ray_token else None
    if token == "":
        raise ConfigError("FLUXROUTE_RAY_TOKEN is empty: set a token of its own, or unset it (loopback only)")
    if host not in LOOPBACK and token is None:
        raise ConfigError(
            f"--host {host}: others could reach the fleet's job API and run jobs on its GPUs; set FLUXROUTE_RAY_TOKEN "
            "(routers send the same token), or keep the default 127.0.0.1"
        )
    import ray
    from ray import serve

    from fluxroute.fleet.app import APP_NAME, build_app

    if not ray.is_initialized():
        if address is None:  # a new instance even where `ray start` left one running on this machine
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
        else:
            ray.init(address=address, include_dashboard=False)
    serve.start(http_options={"host": host, "port": port})
    app = build_app(
        replica_settings(settings),
        replicas=replicas,
        gpus_per_replica=gpus_per_replica,
        cpus_per_replica=cpus_per_replica,
        token_sha256=hashlib.sha256(token.encode()).hexdigest() if token else None,
    )
    serve.run(app, name=APP_NAME, route_prefix=route_prefix, blocking=False)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}{route_prefix}"


def serve_until_interrupted() -> None:
    """Block until Ctrl-C or SIGTERM, then shut Serve and Ray down (a fleet whose Ray instance this process
    started lives only as long as the process)."""
    import ray
    from ray import serve

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()  # type: ignore[no-untyped-call]
    ray.shutdown()

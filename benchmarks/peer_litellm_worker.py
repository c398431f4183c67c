"""The LiteLLM side of benchmarks/peer_litellm.py; runs in benchmarks/.peer-venv (LiteLLM pinned there).

Started by peer_litellm.py as `.peer-venv/bin/python peer_litellm_worker.py --run-url URL --key KEY`. It reads one
JSON command per line on stdin and answers one JSON line on stdout:
  {"op": "block", "path": "litellm" | "direct", "calls": N, "concurrency": C, "tag": "..."}
      -> {"latencies_ms": [...], "wall_s": s, "cpu_s": s, "errors": [...]}
  {"op": "quit"}
Paths (both on the fake's fal.run host, the synchronous route LiteLLM's fal_ai image generation uses):
  litellm  litellm.aimage_generation(model="fal_ai/fal-ai/flux/dev", prompt=..., api_base=<run host>, api_key=...,
           size="1024x1024", output_format="png"): one POST {api_base}/fal-ai/flux/dev with
           {"prompt", "image_size": "square_hd", "output_format": "png"} and `Authorization: Key ...`; the answer's
           images become ImageObjects holding the URL (LiteLLM downloads nothing).
  direct   the same POST with one shared httpx.AsyncClient, the JSON answer parsed and its image URLs taken.
Every call sends a prompt no earlier call sent. Only this process's own work differs between the two paths.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import itertools
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

# LiteLLM fetches its model price map from the network at import unless told to use the copy it ships
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx
import litellm

MODEL = "fal_ai/fal-ai/flux/dev"
ENDPOINT = "fal-ai/flux/dev"
PROMPT = "a lighthouse at dusk"


async def run_block(call: Callable[[str], Awaitable[object]], calls: int, concurrency: int, tag: str) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)
    counter = itertools.count()
    latencies: list[float] = []
    errors: list[str] = []

    async def one() -> None:
        async with gate:
            prompt = f"{PROMPT}, {tag} take {next(counter)}"
            t0 = time.perf_counter()
            try:
                await call(prompt)
            except Exception as exc:  # counted and shown, not fatal
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                return
            latencies.append((time.perf_counter() - t0) * 1000)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(calls)))
    return {
        "latencies_ms": latencies,
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "errors": errors,
    }


async def serve(run_url: str, key: str, proto: Any) -> None:
    direct = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=5.0))
    headers = {"Authorization": f"Key {key}"}
    url = f"{run_url.rstrip('/')}/{ENDPOINT}"

    async def via_litellm(prompt: str) -> object:
        response = await litellm.aimage_generation(
            model=MODEL, prompt=prompt, api_base=run_url, api_key=key, size="1024x1024", output_format="png"
        )
        if not response.data or not response.data[0].url:
            raise RuntimeError("no image URL in LiteLLM's answer")
        return response

    async def via_httpx(prompt: str) -> object:
        body = {"prompt": prompt, "image_size": "square_hd", "output_format": "png"}
        response = await direct.post(url, json=body, headers=headers)
        response.raise_for_status()
        urls = [image["url"] for image in response.json().get("images", [])]
        if not urls:
            raise RuntimeError("no image URL in the answer")
        return urls

    paths = {"litellm": via_litellm, "direct": via_httpx}
    loop = asyncio.get_running_loop()
    print(json.dumps({"ready": True, "litellm": importlib.metadata.version("litellm")}), file=proto, flush=True)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        command = json.loads(line)
        if command["op"] == "quit":
            break
        result = await run_block(paths[command["path"]], command["calls"], command["concurrency"], command["tag"])
        print(json.dumps(result), file=proto, flush=True)
    await direct.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-url", required=True, help="the fal fake's fal.run host")
    parser.add_argument("--key", required=True, help="the fal key the fake accepts")
    args = parser.parse_args()
    # the protocol keeps the real stdout; anything a library prints goes to stderr instead
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    asyncio.run(serve(args.run_url, args.key, proto))


if __name__ == "__main__":
    main()

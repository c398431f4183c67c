"""The `fluxroute` command: parse arguments, call the library, print, map errors to exit codes."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fluxroute.errors import (
    AllProvidersFailed,
    BudgetExceeded,
    ConfigError,
    FieldError,
    FluxrouteError,
    IdempotencyConflict,
    InvalidRequest,
    JobBusy,
    JobNotFound,
    NoRouteError,
    PortInUse,
    ProviderError,
    ResultNotSaved,
)
from fluxroute.redact import redact, settings_secrets
from fluxroute.types import PROVIDER_NAMES, GenerationResult, ImageRequest, Plan

# The router, the providers (httpx, PIL, ...) and the settings are imported by the commands that use them, so
# `fluxroute --version`, `--help` and argument errors do not load them.
if TYPE_CHECKING:
    from fluxroute.providers.base import Progress
    from fluxroute.providers.ray_fleet import FleetReport
    from fluxroute.router import Router
    from fluxroute.settings import Settings

T = TypeVar("T")

# Every exit code, in the one place it is decided; the README's table says the same (a test compares them).
# First match wins: a subclass comes before its base.
EXIT_CODES: list[tuple[int, tuple[type[FluxrouteError], ...], str]] = [
    (2, (InvalidRequest, JobNotFound), "invalid input (the field, the value and what is allowed are named)"),
    (3, (NoRouteError,), "no offer can serve the request (no keys, license, size, model)"),
    (4, (BudgetExceeded,), "a spending cap or --max-cost leaves no offer, or the daily cap is reached"),
    (
        5,
        (ProviderError, AllProvidersFailed, ResultNotSaved),
        "provider failure, a job whose outcome is not known yet, or a billed result not saved",
    ),
    (7, (IdempotencyConflict,), "the idempotency key was used for a different request"),
    (8, (PortInUse,), "serve --http cannot listen on that address and port"),
    (9, (JobBusy,), "another running fluxroute follows that job (it saves and bills it)"),
    (6, (ConfigError,), "configuration error (the variable or file is named)"),
]
OTHER_EXIT_CODES = {
    0: "done",
    1: "an unexpected failure (one line; details in the debug log)",
    130: "interrupted",
    141: "the reader of the output went away (a closed pipe)",
}


def exit_code(exc: FluxrouteError) -> int:
    return next((code for code, kinds, _ in EXIT_CODES if isinstance(exc, kinds)), 1)


def _add_request_options(parser: argparse.ArgumentParser, prompt: str = "what the image should show") -> None:
    if prompt.startswith("optional"):
        parser.add_argument("prompt", nargs="?", help=prompt)
    else:
        parser.add_argument("prompt", help=prompt)
    parser.add_argument("--model", default="auto", help="flux-krea-dev, flux-dev, krea-2 or auto (default)")
    size = parser.add_argument_group("size (give one way: --width/--height, --aspect-ratio, --image-size)")
    size.add_argument("--width", type=int)
    size.add_argument("--height", type=int)
    size.add_argument("--aspect-ratio", help="e.g. 16:9 or 2.35:1 (default 1:1)")
    size.add_argument("--megapixels", type=float, help="area with --aspect-ratio (default 1.0)")
    size.add_argument("--image-size", help="a fal preset: square_hd, square, portrait_4_3, landscape_16_9, ...")
    parser.add_argument("--num-images", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--guidance", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--output-format", choices=["png", "jpeg"])
    parser.add_argument("--negative-prompt")
    parser.add_argument(
        "--init-image",
        help="image to start from: an http(s) URL, a data:image/...;base64 URI, a local PNG/JPEG/WebP file "
        "(sent as a data: URI) or job:<job_id>/<n> (an earlier result)",
    )
    parser.add_argument("--strength", type=float, help="with --init-image: 0.01-1, how far to move from it")
    parser.add_argument(
        "--style-ref",
        action="append",
        nargs="+",
        metavar=("URL[=STRENGTH]", "STRENGTH"),
        help="style reference image (taken like --init-image) with an optional strength 0-1: URL=0.7 or URL 0.7 "
        "(a URL with a ?query takes only the second form; repeatable)",
    )
    parser.add_argument(
        "--lora",
        action="append",
        metavar="REF[=SCALE]",
        help="a LoRA: krea:<style id> (Krea) or weights by https URL or Hugging Face repo owner/name (fal), with an "
        "optional scale -2..2 after = (default 1; repeatable)",
    )
    _add_routing_options(parser)


def _add_routing_options(parser: argparse.ArgumentParser) -> None:
    routing = parser.add_argument_group("routing")
    routing.add_argument("--usage", choices=["commercial", "non-commercial"], help="default from settings: commercial")
    routing.add_argument("--max-cost", type=float, metavar="USD", help="refuse offers that cost more")
    routing.add_argument("--provider", choices=PROVIDER_NAMES, help="pin one provider")
    routing.add_argument("--exclude-provider", action="append", choices=PROVIDER_NAMES, help="repeatable")
    routing.add_argument("--prefer", choices=["cost", "speed"])


def _request_from(args: argparse.Namespace, settings: Settings | None = None) -> ImageRequest:
    """The request the options describe; an image given as a local file is sent as a data: URI."""
    given = {  # request field: option (a command without the option leaves the field to its default)
        "prompt": "prompt",
        "model": "model",
        "width": "width",
        "height": "height",
        "aspect_ratio": "aspect_ratio",
        "megapixels": "megapixels",
        "image_size": "image_size",
        "num_images": "num_images",
        "steps": "steps",
        "guidance": "guidance",
        "seed": "seed",
        "output_format": "output_format",
        "negative_prompt": "negative_prompt",
        "task": "task",
        "strength": "strength",
        "upscale_factor": "factor",
        "upscale_method": "method",
        "creativity": "creativity",
        "usage": "usage",
        "max_cost_usd": "max_cost",
        "provider": "provider",
        "exclude_providers": "exclude_provider",
        "prefer": "prefer",
        "idempotency_key": "idempotency_key",
    }
    data: dict[str, Any] = {field: getattr(args, option, None) for field, option in given.items()}
    data["init_image"] = _image_input("init_image", getattr(args, "init_image", None), settings)
    data["mask_image"] = _image_input("mask_image", getattr(args, "mask", None), settings)
    data["loras"] = [_lora(i, given) for i, given in enumerate(getattr(args, "lora", None) or [])] or None
    data["style_references"] = [
        _style_reference(i, given, settings) for i, given in enumerate(getattr(args, "style_ref", None) or [])
    ] or None
    return ImageRequest.parse({k: v for k, v in data.items() if v is not None})


def _image_input(field: str, value: str | None, settings: Settings | None) -> str | None:
    """A URL, data: URI or job reference as given; a local file as a data: URI (read with the input cap)."""
    if value is None or value.startswith(("http://", "https://", "data:", "job:")):
        return value
    from fluxroute.router.input_images import image_file_uri
    from fluxroute.settings import Settings

    limit = (settings or Settings()).max_input_image_bytes
    try:
        return image_file_uri(Path(value).expanduser(), limit)
    except ValueError as exc:
        allowed = "an http(s) URL, a data: URI, job:<job_id>/<n> or a local PNG, JPEG or WebP file"
        raise InvalidRequest([FieldError(field, value, f"{exc}; allowed: {allowed}")]) from None


def _lora(index: int, given: str) -> dict[str, object]:
    """`--lora REF[=SCALE]`: the scale only from a trailing `=<number>` (a URL's own query keeps its `=`)."""
    ref, equals, scale = given.rpartition("=")
    if not equals or "?" in ref or not re.fullmatch(r"-?\d+(\.\d*)?|-?\.\d+", scale):
        return {"ref": given}
    try:
        return {"ref": ref, "scale": float(scale)}
    except ValueError:
        raise InvalidRequest([FieldError(f"loras.{index}.scale", scale, "a number from -2 to 2")]) from None


# `--style-ref URL=0.7`: a trailing `=<number>` (digits, one optional point)
_TRAILING_STRENGTH = re.compile(r"=(\d+(?:\.\d*)?|\.\d+)$")


def _style_reference(index: int, given: list[str], settings: Settings | None = None) -> dict[str, object]:
    """`--style-ref IMAGE[=STRENGTH]` or `--style-ref IMAGE STRENGTH` as a style reference. A trailing
    `=<number>` is the strength only where the image has no query string: `https://e.com/a.png?w=512` is a
    whole URL, `https://e.com/a.png=0.7` is that image at 0.7."""
    field = f"style_references.{index}"
    if len(given) > 2:
        raise InvalidRequest([FieldError(field, " ".join(given), "a URL, optionally followed by one strength 0-1")])
    trailing = _TRAILING_STRENGTH.search(given[0]) if len(given) == 1 and "?" not in given[0] else None
    if trailing is not None:
        given = [given[0][: trailing.start()], trailing.group(1)]
    url = _image_input(f"{field}.url", given[0], settings)
    if len(given) == 1:
        return {"url": url}
    try:
        return {"url": url, "strength": float(given[1])}
    except ValueError:
        raise InvalidRequest([FieldError(f"{field}.strength", given[1], "a number from 0 to 1")]) from None


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


# rejected offers `route` lists before it counts the rest (every one, short of a catalog of hundreds)
CLI_LISTED_REJECTIONS = 200


def _plan_text(plan: Plan, explain: bool) -> str:
    if not explain:
        best = plan.chosen or (plan.unavailable[0] if plan.unavailable else None)
        if best is None:
            return plan.explain(CLI_LISTED_REJECTIONS)
        state = "" if best.available else f"  [not available: {best.unavailable_reason}]"
        return (
            f"{best.label} ({best.model}): ${best.cost_usd:g}, ~{best.latency_s:g} s, "
            f"{best.width}x{best.height} x{best.num_images}{state}\n(--explain for the reasons and the parameters)"
        )
    lines = [plan.explain(CLI_LISTED_REJECTIONS)]
    for candidate in [*plan.candidates, *plan.unavailable][:1]:
        lines.append(f"parameters sent to {candidate.endpoint}: {json.dumps(candidate.params)}")
    return "\n".join(lines)


def cmd_route(args: argparse.Namespace, settings: Settings) -> int:
    from fluxroute.router import Router

    router = Router(settings)
    request = router.resolve_references(_request_from(args, settings))
    plan = router.plan(request, asyncio.run(router.input_size(request)))
    fits = bool(plan.candidates or plan.unavailable)
    if args.json:
        _print_json(plan.model_dump(mode="json"))
    elif fits:
        print(_plan_text(plan, args.explain))
    if plan.priced_out:
        raise BudgetExceeded(
            "every offer that fits costs more than allowed:" + "".join(f"\n- {r}" for r in plan.rejections)
        )
    if not fits:
        raise NoRouteError("no offer can serve this request", [str(r) for r in plan.rejections])
    return 0


class ProgressLine:
    """One status line on stderr, rewritten in place; silent when stderr is not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.monotonic()

    async def __call__(self, event: Progress) -> None:
        if not self.enabled:
            return
        parts = [f"{event.provider}: {event.status}"]
        if event.queue_position is not None:
            parts.append(f"queue position {event.queue_position}")
        if event.step is not None and event.total_steps:
            parts.append(f"step {event.step}/{event.total_steps}")
        if event.message and event.message != event.status:
            parts.append(event.message[:60])
        line = f"[{time.monotonic() - self.started:5.1f}s] " + " | ".join(parts)
        sys.stderr.write("\r\033[K" + line[: shutil.get_terminal_size().columns - 1])
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _print_result(result: GenerationResult) -> None:
    ran = next((c for c in result.plan.candidates if c.offer_id == result.offer_id), None)
    label = f"{ran.label} ({ran.model})" if ran is not None else f"{result.provider} {result.model}"
    seed = f"seed {result.seed}" if result.seed is not None else "seed not reported by the provider"
    print(f"{label}: ${result.cost_usd:g}, {seed}" + (f", made by {result.worker}" if result.worker else ""))
    for image in result.images:
        flag = "  [flagged by the provider's safety checker]" if image.flagged else ""
        print(f"  {image.path}  {image.width}x{image.height}{flag}")
    for warning in result.warnings:
        print(f"  note: {warning}")


def _follow(router: Router, call: Coroutine[Any, Any, T], line: ProgressLine | None = None) -> T:
    """Run `call` on `router` to its end; the progress line is cleared and the router closed whatever happens."""

    async def run() -> T:
        try:
            return await call
        finally:
            if line is not None:
                line.done()
            await router.aclose()

    return asyncio.run(run())


async def _generate(
    router: Router, request: ImageRequest, out_dir: Path | None, line: ProgressLine, explain: bool = False
) -> GenerationResult:
    if explain:  # the route's reasons first, on stderr (stdout stays the result, --json included)
        resolved = router.resolve_references(request)
        plan = router.plan(resolved, await router.input_size(resolved))  # kept: generate plans it once more
        print(_plan_text(plan, explain=True), file=sys.stderr, flush=True)
    return await router.generate(request, progress=line, out_dir=out_dir)


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    if args.dry_run:
        return cmd_route(args, settings)
    from fluxroute.router import Router

    request = _request_from(args, settings)
    router = Router(settings)
    line = ProgressLine(enabled=sys.stderr.isatty() and not args.json)
    result = _follow(router, _generate(router, request, args.out, line, explain=args.explain), line)
    if args.json:
        _print_json(result.model_dump(mode="json"))
    else:
        _print_result(result)
    return 0


def cmd_edit(args: argparse.Namespace, settings: Settings) -> int:
    """`fluxroute edit IMAGE PROMPT`: generate with IMAGE as the input, the task chosen as edit_image chooses it."""
    from fluxroute.tools.image_args import edit_task

    args.init_image = args.image
    args.task = edit_task(args.task, args.mask, args.strength)
    return cmd_generate(args, settings)


def cmd_vary(args: argparse.Namespace, settings: Settings) -> int:
    """`fluxroute vary IMAGE [PROMPT]`: n variations of IMAGE, as vary_image makes them."""
    from fluxroute.tools.image_args import VARIATION_PROMPT

    args.init_image, args.task, args.num_images = args.image, "variation", args.n
    args.prompt = args.prompt or VARIATION_PROMPT
    return cmd_generate(args, settings)


def cmd_upscale(args: argparse.Namespace, settings: Settings) -> int:
    """`fluxroute upscale IMAGE`: IMAGE made larger, as upscale_image makes it."""
    from fluxroute.router.input_images import source_prompt
    from fluxroute.store import open_existing_store
    from fluxroute.tools.image_args import UPSCALE_PROMPT, size_fields, upscale_box

    args.init_image, args.task = args.image, "upscale"
    box = None if args.size is None else upscale_box("--size", args.size)
    if box is not None:
        fields = size_fields(box)
        args.width, args.height = fields["width"], fields["height"]
    if args.prompt is None and args.image.startswith("job:") and (store := open_existing_store(settings)):
        try:
            args.prompt = source_prompt(args.image, store)
        finally:
            store.close()
    args.prompt = args.prompt or UPSCALE_PROMPT
    return cmd_generate(args, settings)


def cmd_draft(args: argparse.Namespace, settings: Settings) -> int:
    from fluxroute.router import Router

    request = _request_from(args, settings)
    router = Router(settings)
    if args.dry_run:
        planned = router.plan_round(request, args.n, as_if_available=True)  # like `route`: what would run
        if args.json:
            _print_json(
                {
                    "drafts_cost_usd": str(planned.drafts.cost_usd),
                    "final_cost_usd": str(planned.final_cost_usd),
                    "summary": planned.summary,
                    "drafts": planned.drafts.explanation,
                    "final": planned.final.reason,
                }
            )
        else:
            print(f"{planned.summary}\n{planned.drafts.explanation}\nfinal: {planned.final.reason}")
        return 0
    line = ProgressLine(enabled=sys.stderr.isatty() and not args.json)
    drafts = _follow(router, router.draft(request, args.n, progress=line, out_dir=args.out), line)
    if args.json:
        _print_json(drafts.model_dump(mode="json"))
        return 0
    print(f"draft set {drafts.id}: {len(drafts.drafts)} drafts on {drafts.label}")
    for d in drafts.drafts:
        print(f"  {d.number}. seed {d.seed}  ${d.cost_usd:g}  {d.path}")
    print(f"contact sheet: {drafts.contact_sheet or '(none: no draft was saved)'}")
    print(f"total: ${drafts.total_cost_usd:g}")
    for warning in drafts.warnings:
        print(f"  note: {warning}")
    print(f"next: fluxroute finalize {drafts.id} <number>")
    return 0


def cmd_finalize(args: argparse.Namespace, settings: Settings) -> int:
    from fluxroute.router import Router

    router = Router(settings)
    line = ProgressLine(enabled=sys.stderr.isatty() and not args.json)
    final = _follow(
        router,
        router.finalize(
            args.draft_set_id,
            args.index,
            strength=args.strength,
            method=args.method,
            idempotency_key=args.idempotency_key,
            progress=line,
            out_dir=args.out,
            upscale=args.upscale,
        ),
        line,
    )
    if args.json:
        _print_json(final.model_dump(mode="json"))
        return 0
    print(f"draft {final.draft_number} of {final.draft_set_id}, {final.method.replace('_', ' ')}: {final.reason}")
    _print_result(final.result)
    if final.upscaled is not None:
        print(f"upscaled x{args.upscale:g}:")
        _print_result(final.upscaled)
    return 0


def cmd_jobs_resume(args: argparse.Namespace, settings: Settings) -> int:
    from fluxroute.router import Router

    router = Router(settings)
    outcomes = _follow(router, router.resume_in_flight())
    if not outcomes:
        print("nothing in flight")
    for outcome in outcomes:
        if isinstance(outcome, GenerationResult):
            _print_result(outcome)
        else:
            print(f"failed: {outcome}")
    _print_at_risk(settings)
    return 5 if any(isinstance(o, FluxrouteError) for o in outcomes) else 0


def cmd_jobs_cancel(args: argparse.Namespace, settings: Settings) -> int:
    from fluxroute.router import Router

    router = Router(settings)
    print(_follow(router, router.cancel_job(args.job_id)).message)
    return 0


def cmd_jobs_settle(args: argparse.Namespace, settings: Settings) -> int:
    from fluxroute.router import Router

    router = Router(settings)
    for line in router.settle_job(args.job_id, billed=args.billed):
        print(line)
    return 0


def _print_at_risk(settings: Settings) -> None:
    """Jobs a provider may still bill, and what to do about each."""
    from fluxroute.store import open_existing_store

    store = open_existing_store(settings)
    held = store.at_risk() if store is not None else []
    if held:
        print(f"at risk: {len(held)} job(s) a provider may still bill")
    for attempt, amount in held:
        if attempt.provider_job_id:
            what = f"{attempt.provider} job {attempt.provider_job_id}; `fluxroute jobs resume` collects it"
        else:
            what = (
                f"{attempt.provider} may have accepted it at {attempt.started_at:%Y-%m-%d %H:%M:%S} UTC (the answer "
                "was lost); `fluxroute jobs resume` looks for it where the provider lists jobs (Krea); fal has no "
                "listing: check fal's request history, then `fluxroute jobs settle JOB --billed` or `--unbilled`"
            )
        print(f"  {attempt.job_id}  ${amount} at risk: {what}")


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from fluxroute.providers.ray_fleet import FleetReport, read_fleet
    from fluxroute.router import Router
    from fluxroute.tools import ModelsOutput

    router = Router(settings)
    listing = ModelsOutput.from_catalog(router.catalog, router.availability, settings=settings)
    fleet = read_fleet(settings) if settings.ray_url else None
    if args.json:
        data = listing.model_dump(mode="json")
        if isinstance(fleet, FleetReport):
            data["fleet"] = dataclasses.asdict(fleet)
        elif fleet is not None:
            data["fleet"] = {"url": settings.ray_url, "error": fleet}
        _print_json(data)
        return 0
    for model in listing.models:
        print(f"{model.id}  {model.name} - {model.summary}")
        for offer in model.offers:
            # licenses that do not always allow commercial use: whether it is allowed as declared now
            use = "" if "— commercial use allowed" in offer.license else "commercial use: "
            if use:
                use += "allowed as declared" if offer.commercial_use else "not allowed as declared"
            if offer.available:
                state = "available" + (f" ({offer.reason})" if offer.reason else "")
            else:
                state = f"unavailable: {offer.reason}"
            if offer.price_usd is None:
                price = f"price not published: set [prices] {offer.offer_id}"
            else:
                price = f"${offer.price_usd:g} {offer.price_unit}"
            print(f"  {offer.offer_id:<24} {price:<44} {state}")
            print(f"  {'':<24} does: {', '.join(offer.modes)}")
            print(f"  {'':<24} license: {offer.license}" + (f" ({use})" if use else ""))
    if fleet is not None:
        _print_fleet(fleet)
    return 0


def _print_fleet(report: FleetReport | str) -> None:
    """The fleet's replicas and their state (FLUXROUTE_RAY_URL), or why they cannot be read."""
    if isinstance(report, str):
        print(f"\nfleet: {report}")
        return
    jobs = ", ".join(f"{n} {status}" for status, n in sorted(report.jobs.items())) or "no jobs"
    print(f"\nfleet at {report.url}: {len(report.replicas)} replicas; jobs: {jobs}")
    for replica in report.replicas:
        state = str(replica.get("state"))
        if replica.get("running"):
            state += f" (running {replica.get('running')})"
        print(
            f"  {replica.get('replica')}  {state}  on {replica.get('node')}, {replica.get('device')}; "
            f"{replica.get('done')} done, {replica.get('failed')} failed, {replica.get('gpu_seconds')} GPU-s; "
            f"warm: {replica.get('warm') or 'nothing yet'}"
        )
        print(f"  {'':<32} weights: {', '.join(replica.get('weights') or []) or 'none found'}")


def cmd_ray_deploy(args: argparse.Namespace, settings: Settings) -> int:
    from fluxroute.fleet import cluster_address, deploy, serve_until_interrupted

    address = cluster_address(settings, args.address)
    url = deploy(
        settings,
        replicas=args.replicas,
        gpus_per_replica=args.gpus_per_replica,
        cpus_per_replica=args.cpus_per_replica,
        host=args.host,
        port=args.port,
        route_prefix=args.route_prefix,
        address=address,
        num_cpus=args.num_cpus,
    )
    print(f"fleet deployed: {args.replicas} replicas at {url}")
    print(f"point fluxroute at it: export FLUXROUTE_RAY_URL={url}")
    if address is None:
        print("this Ray instance lives in this process: Ctrl-C stops the fleet", flush=True)
        serve_until_interrupted()
    return 0


def cmd_tools(args: argparse.Namespace, settings: Settings) -> int:
    from fluxroute.tools import export

    _print_json(export(args.format))
    return 0


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    from fluxroute.store import open_existing_store

    store = open_existing_store(settings)  # reading creates nothing
    jobs = store.list_jobs(limit=args.limit) if store is not None else []
    if args.json:
        _print_json([job.__dict__ for job in jobs])
        return 0
    if not jobs:
        print("no jobs yet")
    for job in jobs:
        prompt = str(job.request.get("prompt", ""))[:50]
        print(f"{job.id}  {job.created_at:%Y-%m-%d %H:%M}  {job.status:<10} {prompt}")
    draft_sets = store.list_draft_sets(limit=args.limit) if store is not None else []
    if draft_sets:
        print("draft sets (fluxroute finalize ID NUMBER):")
    for drafts in draft_sets:
        prompt = str(drafts.request.get("prompt", ""))[:50]
        count, total = len(drafts.drafts), drafts.total_cost
        print(f"{drafts.id}  {drafts.created_at:%Y-%m-%d %H:%M}  {count} drafts  ${total:g}  {prompt}")
    _print_at_risk(settings)
    return 0


def cmd_spend(args: argparse.Namespace, settings: Settings) -> int:
    from fluxroute.store import SpendSummary, open_existing_store

    store = open_existing_store(settings)  # reading creates nothing
    daily_cap = settings.budget_daily_usd
    summary = store.spend_summary(daily_cap=daily_cap) if store is not None else SpendSummary.nothing(daily_cap)
    if args.json:
        _print_json(dataclasses.asdict(summary))
        return 0
    cap = f" of ${summary.daily_cap} daily cap" if summary.daily_cap is not None else ""
    print(
        f"today ({summary.day}): ${summary.spent_today} charged, ${summary.reserved_today} reserved, "
        f"${summary.at_risk_today} at risk{cap}"
    )
    print(f"all time: ${summary.spent_total} over {summary.charges} charge(s)")
    for provider, amount in sorted(summary.by_provider.items()):
        print(f"  {provider}: ${amount}")
    if summary.days:
        print("by day and provider (charged / reserved / at risk):")
    for row in summary.days:
        print(f"  {row.day}  {row.provider:<8} ${row.charged} / ${row.reserved} / ${row.at_risk}")
    if summary.at_risk_today:
        print("at risk: jobs a provider may still bill; `fluxroute jobs` lists them")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import gc

    # Start-up makes hundreds of thousands of long-lived objects (the MCP SDK's and pydantic's models, the tool
    # schemas): each full collection over them costs tens of milliseconds and frees next to nothing. No
    # collection runs until the server is built; then what was made is frozen out of later collections.
    if args.http and args.allow_remote:
        # others may reach this server: licenses that require content filtering where end users can reach a
        # deployment (Krea 2 Community) then refuse local offers without a content checker
        settings = settings.model_copy(update={"remote_reachable": True})
    gc.disable()
    try:
        from fluxroute.server import build_server, serve_http

        server = build_server(settings)
    finally:
        gc.freeze()
        gc.enable()
    if args.http:
        from fluxroute.store.jobstore import DB_FILENAME

        serve_http(
            server,
            args.host,
            args.port,
            allow_remote=args.allow_remote,
            token=settings.server_token,
            allowed_hosts=[*settings.server_allowed_hosts, *args.allowed_host],
            insecure_no_auth=args.insecure_no_auth,
            webhook_base_url=settings.webhook_base_url,
            store_path=settings.home / DB_FILENAME,  # where the server's router opens its store
        )
    else:
        server.run("stdio")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fluxroute",
        description="FLUX-family image generation routed to Krea, fal.ai or local diffusers by cost, "
        "license and resolution.",
    )
    parser.add_argument("--version", action="version", version=f"fluxroute {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    route = sub.add_parser("route", help="plan a generation: where it would run, why, what it costs (no spend)")
    _add_request_options(route)
    route.add_argument("--explain", action="store_true", help="every candidate, rejection and parameter")
    route.add_argument("--json", action="store_true")
    route.set_defaults(handler=cmd_route)

    models = sub.add_parser("models", help="models, offers, prices, licenses and availability")
    models.add_argument("--json", action="store_true")
    models.set_defaults(handler=cmd_models)

    tools = sub.add_parser("tools", help="print the tool definitions as JSON")
    tools.add_argument("--format", choices=["mcp", "openai", "openai-strict", "anthropic", "gemini"], default="mcp")
    tools.set_defaults(handler=cmd_tools)

    generate = sub.add_parser("generate", help="generate images (spends money on hosted providers)")
    _add_request_options(generate)
    generate.add_argument("--out", type=Path, help="directory for the images (default: FLUXROUTE_HOME/images)")
    generate.add_argument("--json", action="store_true")
    generate.add_argument("--dry-run", action="store_true", help="only plan, like `fluxroute route`")
    generate.add_argument(
        "--explain",
        action="store_true",
        help="every candidate, rejection and parameter: on stderr before generating (with --dry-run, instead)",
    )
    generate.add_argument("--idempotency-key", help="the same key never pays for a second generation")
    generate.set_defaults(handler=cmd_generate)

    image_help = "an http(s) URL, a data: URI, a local PNG/JPEG/WebP file or job:<job_id>/<n> (an earlier result)"
    for name, helptext, handler in (
        ("edit", "edit an image: an instruction, image-to-image with --strength, or inpaint with --mask", cmd_edit),
        ("vary", "variations of an image (FLUX.1 Redux on fal, image prompts on Krea)", cmd_vary),
        ("upscale", "make an image larger, faithfully or generatively", cmd_upscale),
    ):
        command = sub.add_parser(name, help=helptext + " (spends money on hosted providers)")
        command.add_argument("image", help="the image: " + image_help)
        if name == "edit":
            _add_request_options(command, "an instruction ('make the sky stormy'), or with --strength the result")
            command.add_argument("--mask", help="inpaint: white = change, black = keep; taken like the image")
            command.add_argument("--task", choices=["image-to-image", "instruction-edit", "inpaint"])
        elif name == "vary":
            _add_request_options(command, "optional: what to keep or change")
            command.add_argument("-n", type=_positive_int, default=1, help="how many variations, 1-4 (default 1)")
        else:
            command.add_argument("--factor", type=float, help="1-32, how much larger (default 2)")
            command.add_argument("--size", help="instead of --factor: the output's largest WxH, its shape kept")
            command.add_argument("--method", choices=["faithful", "generative"], help="default faithful")
            command.add_argument("--creativity", type=float, help="generative: 0-1, how much detail to invent")
            command.add_argument("--prompt", help="generative: what the image shows (default: its source's prompt)")
            command.add_argument("--model", default="auto", help="an upscaler (fluxroute models) or auto (default)")
            _add_routing_options(command)
        command.add_argument("--out", type=Path, help="directory for the images (default: FLUXROUTE_HOME/images)")
        command.add_argument("--json", action="store_true")
        command.add_argument("--dry-run", action="store_true", help="only plan, like `fluxroute route`")
        command.add_argument("--explain", action="store_true", help="every candidate and rejection on stderr")
        command.add_argument("--idempotency-key", help="the same key never pays for a second generation")
        command.set_defaults(handler=handler)

    draft = sub.add_parser(
        "draft", help="n cheap variants as a draft set with a numbered contact sheet (spends money on hosted providers)"
    )
    _add_request_options(draft)
    draft.add_argument("-n", type=_positive_int, default=4, help="how many drafts, 1-8 (default 4)")
    draft.add_argument("--out", type=Path, help="directory for the drafts (default: FLUXROUTE_HOME/images)")
    draft.add_argument("--json", action="store_true")
    draft.add_argument(
        "--dry-run", action="store_true", help="only plan the drafts and their finalize, with both costs"
    )
    draft.add_argument("--idempotency-key", help="the same key never pays for the same drafts twice")
    draft.set_defaults(handler=cmd_draft)

    finalize = sub.add_parser("finalize", help="the chosen draft of a draft set at full quality")
    finalize.add_argument("draft_set_id", help="the id `fluxroute draft` printed")
    finalize.add_argument("index", type=_positive_int, help="the draft's number on the contact sheet")
    finalize.add_argument("--strength", type=float, help="image-conditioned finals: 0.01-1 (default 0.5)")
    finalize.add_argument(
        "--method",
        choices=["auto", "same_seed", "image_conditioned"],
        default="auto",
        help="auto (default): same model, size and seed where the draft allows it, else from the draft image",
    )
    finalize.add_argument("--out", type=Path, help="directory for the image (default: FLUXROUTE_HOME/images)")
    finalize.add_argument("--json", action="store_true")
    finalize.add_argument("--idempotency-key", help="the same key never pays for a second final")
    finalize.add_argument("--upscale", type=float, metavar="FACTOR", help="then upscale the final (faithful), 1-32")
    finalize.set_defaults(handler=cmd_finalize)

    jobs = sub.add_parser("jobs", help="recent generation jobs and draft sets; `jobs resume` collects interrupted ones")
    jobs.add_argument("--limit", type=_positive_int, default=20, help="how many jobs to list (default 20)")
    jobs.add_argument("--json", action="store_true")
    jobs.set_defaults(handler=cmd_jobs)
    jobs_sub = jobs.add_subparsers(dest="jobs_command")
    resume = jobs_sub.add_parser(
        "resume", help="collect jobs left at a provider (a stopped process, an unknown outcome): save, bill once"
    )
    resume.set_defaults(handler=cmd_jobs_resume)
    cancel = jobs_sub.add_parser("cancel", help="ask the provider to cancel a job; says whether it may still charge")
    cancel.add_argument("job_id")
    cancel.set_defaults(handler=cmd_jobs_cancel)

    settle = jobs_sub.add_parser(
        "settle", help="close a job's amount at risk by what the provider's own records say (charge or release it)"
    )
    settle.add_argument("job_id")
    verdict = settle.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--billed", action="store_true", help="the provider billed it: charge the amount")
    verdict.add_argument("--unbilled", action="store_true", help="the provider did not bill it: release the amount")
    settle.set_defaults(handler=cmd_jobs_settle)

    spend = sub.add_parser("spend", help="money charged, reserved and at risk: today, by day and provider, in all")
    spend.add_argument("--json", action="store_true")
    spend.set_defaults(handler=cmd_spend)

    serve = sub.add_parser("serve", help="run the MCP server (stdio by default; --http for Streamable HTTP at /mcp)")
    serve.add_argument("--http", action="store_true", help="serve Streamable HTTP instead of stdio")
    serve.add_argument("--host", default="127.0.0.1", help="with --http (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="with --http (default 8000)")
    serve.add_argument(
        "--allow-remote", action="store_true", help="with --http: allow a --host other than 127.0.0.1, ::1, localhost"
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME[:PORT]",
        help="with --http: a Host header to accept besides the bind address and loopback names, e.g. the name a "
        "proxy forwards (repeatable; also FLUXROUTE_SERVER_ALLOWED_HOSTS)",
    )
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="with --allow-remote: serve without FLUXROUTE_SERVER_TOKEN (anyone who reaches it can spend)",
    )
    serve.set_defaults(handler=cmd_serve)

    ray = sub.add_parser("ray", help="a fleet of local GPU workers on Ray Serve (the ray extra)")
    ray_sub = ray.add_subparsers(dest="ray_command", required=True)
    deploy = ray_sub.add_parser(
        "deploy",
        help="deploy the fleet on a Ray cluster (--address, FLUXROUTE_RAY_ADDRESS or RAY_ADDRESS); with none, start "
        "Ray here and serve until Ctrl-C",
    )
    deploy.add_argument("--address", help="the Ray cluster: auto, ray://HOST:10001 or HOST:6379")
    deploy.add_argument("--replicas", type=_positive_int, default=1, help="worker replicas (default 1: one per GPU)")
    deploy.add_argument(
        "--gpus-per-replica", type=_fraction, default=1.0, help="GPUs each replica takes (default 1; 0: CPU only)"
    )
    deploy.add_argument("--cpus-per-replica", type=_fraction, default=1.0, help="CPUs each replica takes (default 1)")
    deploy.add_argument("--host", default="127.0.0.1", help="where Serve's HTTP proxy listens (default 127.0.0.1)")
    deploy.add_argument("--port", type=int, default=8000, help="Serve's HTTP port (default 8000)")
    deploy.add_argument("--route-prefix", default="/fluxroute", help="the fleet's path (default /fluxroute)")
    deploy.add_argument("--num-cpus", type=_positive_int, help="CPUs of a Ray instance started here")
    deploy.set_defaults(handler=cmd_ray_deploy)
    return parser


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fluxroute")
    except PackageNotFoundError:
        from fluxroute import __version__

        return __version__


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{value:g} is not between 0 and 64")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fluxroute.settings import Settings

    secrets: tuple[str, ...] = ()
    try:
        settings = Settings.load()
        secrets = settings_secrets(settings)
        code: int = args.handler(args, settings)
        return code
    except FluxrouteError as exc:
        print(f"error: {redact(str(exc), secrets)}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of the output went away (`| head`): nothing left to say to it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # a fault of ours: one line for the person, the details in the log
        logging.getLogger("fluxroute").debug("unexpected failure", exc_info=True)
        print(f"error: unexpected {type(exc).__name__}: {redact(str(exc), secrets)[:200]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""Request and result models shared by every layer: what a caller asks for and what comes back."""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from fluxroute.errors import FieldError, InvalidRequest

Usage = Literal["commercial", "non-commercial"]
ProviderName = Literal["krea", "fal", "local", "ray"]
Prefer = Literal["cost", "speed"]
OutputFormat = Literal["png", "jpeg"]
FalPreset = Literal["square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"]

PROVIDER_NAMES: tuple[ProviderName, ...] = ("krea", "fal", "local", "ray")
ASPECT_RATIO_PATTERN = r"^[0-9]+(\.[0-9]+)?:[0-9]+(\.[0-9]+)?$"
MAX_SIDE = 14142
MAX_SEED = 2**32 - 1
# an image input is a URL or a data: URI: room for the base64 of a 28 MB image (max_input_image_bytes decides)
MAX_IMAGE_INPUT_CHARS = 40_000_000


@functools.lru_cache(maxsize=256)
def parse_aspect_ratio(text: str) -> float:
    """'16:9' -> 1.777...; raises ValueError for anything else."""
    if not re.match(ASPECT_RATIO_PATTERN, text):
        raise ValueError(f"aspect_ratio must look like '16:9' or '2.35:1', got {text!r}")
    w, h = (float(part) for part in text.split(":"))
    if w <= 0 or h <= 0:
        raise ValueError(f"aspect_ratio sides must be positive, got {text!r}")
    ratio = w / h
    if not 0.1 <= ratio <= 10:
        raise ValueError(f"aspect_ratio must lie between 1:10 and 10:1, got {text!r}")
    return ratio


ALLOWED_CONTROLS = frozenset("\t\n\r")


def _visible(value: str) -> str:
    """Text a model can read: no control characters but tab and newlines, and at least one visible character
    (whitespace, zero-width and other format characters alone are not a prompt)."""
    for char in value:
        if unicodedata.category(char) == "Cc" and char not in ALLOWED_CONTROLS:
            raise ValueError(f"must not contain control characters (found U+{ord(char):04X})")
    if not any(unicodedata.category(char)[0] not in "CZ" for char in value):
        raise ValueError("must contain visible text (whitespace and invisible characters alone are not)")
    return value


def _ratio_in_range(value: str) -> str:
    parse_aspect_ratio(value)
    return value


# A prompt: 1-10,000 characters, some visible, no control characters but tab and newlines.
PromptText = Annotated[str, Field(min_length=1, max_length=10_000), AfterValidator(_visible)]
NegativeText = Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_visible)]
StyleText = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_visible)]


def _matches(pattern: str, allowed: str) -> AfterValidator:
    """A pattern checked without publishing it in the tool schemas (a model gains nothing from the regex)."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(allowed)
        return value

    return AfterValidator(check)


# An idempotency key: printable ASCII, no spaces.
IdempotencyKey = Annotated[
    str, Field(min_length=1, max_length=200), _matches(r"[\x21-\x7e]+", "1-200 printable ASCII characters, no spaces")
]
ModelId = Annotated[
    str,
    Field(min_length=1, max_length=64),
    _matches(
        r"[A-Za-z0-9][A-Za-z0-9._:/-]*",
        "a model id such as auto, flux-krea-dev, flux-dev or krea-2 (letters, digits and . _ : / -)",
    ),
]
# 'W:H' with positive sides and a ratio between 1:10 and 10:1.
AspectRatio = Annotated[str, Field(pattern=ASPECT_RATIO_PATTERN), AfterValidator(_ratio_in_range)]


def _image_url(value: str) -> str:
    if not value.startswith(("http://", "https://", "data:image/", "job:")):
        raise ValueError("must be an http(s) URL, a data:image/... URI or job:<job_id>/<n> (an earlier result)")
    return value


# What a call makes of its input image, if any; offers list the modes they serve (catalog data), and a plan
# considers only offers of the request's mode.
Mode = Literal["text-to-image", "image-to-image", "instruction-edit", "inpaint", "variation", "upscale"]
# the modes that take an input image: image-to-image (the prompt describes the result, `strength` says how far
# from the input), instruction-edit (the prompt is an instruction, FLUX.1 Kontext), inpaint (only the white of
# `mask_image` changes), variation (new images like the input, FLUX.1 Redux or Krea's image prompts), upscale (the
# input made larger: by `upscale_factor` or to a width x height, `upscale_method` faithful or generative)
ImageMode = Literal["image-to-image", "instruction-edit", "inpaint", "variation", "upscale"]
# faithful: restores and sharpens, adds nothing (ESRGAN, SeedVR, Topaz standard); generative: invents plausible
# fine detail, `creativity` says how much (Clarity, Topaz generative / Bloom, Krea enhance)
UpscaleMethod = Literal["faithful", "generative"]
MAX_UPSCALE_FACTOR = 32
DEFAULT_UPSCALE_FACTOR = 2.0


class StyleReference(BaseModel):
    """An image whose style the result should follow."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    url: str = Field(min_length=1, max_length=MAX_IMAGE_INPUT_CHARS, description="Image URL.")
    strength: float = Field(default=0.5, ge=0, le=1, description="0 (none) to 1 (strongest).")

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, value: str) -> str:
        return _image_url(value)


# a LoRA reference: a Krea style (`krea:<style id>`, trained or shared on Krea), or weights fal or the local GPU
# load (an https URL, or a Hugging Face repo `owner/name`, optionally with a file path after it)
_LORA_REF = re.compile(
    r"krea:[A-Za-z0-9_-]{1,100}|https://[^\s]{1,490}|[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}(/[\w./-]{1,200})?"
)


class LoraRef(BaseModel):
    """A LoRA to apply, and how strongly."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    ref: str = Field(min_length=1, max_length=500)
    scale: float = Field(default=1.0, ge=-2, le=2)

    @field_validator("ref")
    @classmethod
    def _known_form(cls, value: str) -> str:
        if not _LORA_REF.fullmatch(value):
            raise ValueError("must be krea:<style id>, an https URL of LoRA weights or a Hugging Face repo owner/name")
        return value

    @property
    def krea_style(self) -> bool:
        return self.ref.startswith("krea:")


class ImageRequest(BaseModel):
    """One image-generation call: the image wanted, and the constraints on where it may run."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # no NaN or infinity anywhere

    prompt: PromptText
    model: ModelId = "auto"
    width: int | None = Field(default=None, ge=64, le=MAX_SIDE)
    height: int | None = Field(default=None, ge=64, le=MAX_SIDE)
    aspect_ratio: AspectRatio | None = None
    megapixels: float = Field(default=1.0, gt=0, le=16)
    image_size: FalPreset | None = None
    num_images: int = Field(default=1, ge=1, le=4)
    steps: int | None = Field(default=None, ge=1, le=100)
    guidance: float | None = Field(default=None, ge=0, le=24)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    output_format: OutputFormat = "png"
    negative_prompt: NegativeText | None = None
    init_image: str | None = Field(default=None, min_length=1, max_length=MAX_IMAGE_INPUT_CHARS)
    mask_image: str | None = Field(default=None, min_length=1, max_length=MAX_IMAGE_INPUT_CHARS)
    # what to do with init_image; None: inpaint when a mask is given, else image-to-image
    task: ImageMode | None = None
    strength: float | None = Field(default=None, ge=0.01, le=1)
    # task upscale: how much larger (default 2; or width/height give the output size, the input's shape kept),
    # faithful or generative (default faithful), and for generative how much detail to invent (0-1)
    upscale_factor: float | None = Field(default=None, ge=1, le=MAX_UPSCALE_FACTOR)
    upscale_method: UpscaleMethod | None = None
    creativity: float | None = Field(default=None, ge=0, le=1)
    style_references: tuple[StyleReference, ...] = Field(default=(), max_length=10)
    loras: tuple[LoraRef, ...] = Field(default=(), max_length=5)
    usage: Usage | None = None
    max_cost_usd: float | None = Field(default=None, ge=0)
    providers: tuple[ProviderName, ...] | None = None
    exclude_providers: tuple[ProviderName, ...] = ()
    provider: ProviderName | None = None
    prefer: Prefer = "cost"
    idempotency_key: IdempotencyKey | None = None

    @field_validator("init_image", "mask_image")
    @classmethod
    def _init_image_url(cls, value: str | None) -> str | None:
        return None if value is None else _image_url(value)

    @model_validator(mode="after")
    def _consistent(self) -> ImageRequest:
        """Rules across fields, refused naming every field involved (raised as InvalidRequest: pydantic would
        blame the whole request)."""
        if (self.width is None) != (self.height is None):
            raise _fields_clash(self, ("width", "height"), "width and height must be given together")
        given = [
            name
            for name, present in (
                ("width", self.width is not None),
                ("height", self.height is not None),
                ("aspect_ratio", self.aspect_ratio is not None),
                ("image_size", self.image_size is not None),
            )
            if present
        ]
        if len(set(given) - {"height"}) > 1:
            shown = " and ".join(n if n != "width" else "width/height" for n in given if n != "height")
            raise _fields_clash(self, tuple(given), f"give one way to size the image, not {shown}")
        if self.strength is not None and self.init_image is None:
            raise _fields_clash(self, ("strength", "init_image"), "strength needs init_image")
        for needs_image in ("mask_image", "task"):
            if getattr(self, needs_image) is not None and self.init_image is None:
                raise _fields_clash(self, (needs_image, "init_image"), f"{needs_image} needs init_image")
        if self.mask_image is not None and self.task not in (None, "inpaint"):
            raise _fields_clash(self, ("mask_image", "task"), "a mask goes with task inpaint (or no task)")
        if self.task == "inpaint" and self.mask_image is None:
            raise _fields_clash(self, ("task", "mask_image"), "inpaint needs mask_image (white: change, black: keep)")
        return self._upscale_consistent()

    def _upscale_consistent(self) -> ImageRequest:
        """An upscale takes an input image and a factor or an output size, nothing a generation takes; the
        upscale fields go with task upscale only."""
        upscale_fields = [n for n in ("upscale_factor", "upscale_method", "creativity") if getattr(self, n) is not None]
        if self.task != "upscale":
            if upscale_fields:
                raise _fields_clash(self, (upscale_fields[0], "task"), f"{upscale_fields[0]} goes with task upscale")
            return self
        if self.upscale_factor is not None and self.width is not None:
            raise _fields_clash(
                self, ("upscale_factor", "width", "height"), "give upscale_factor or the output width/height, not both"
            )
        if self.creativity is not None and self.upscale_method != "generative":
            raise _fields_clash(
                self, ("creativity", "upscale_method"), "creativity goes with upscale_method generative"
            )
        ignored: list[str] = [
            name
            for name in ("aspect_ratio", "image_size", "megapixels", "steps", "guidance", "strength", "negative_prompt")
            if name in self.model_fields_set and getattr(self, name) is not None
        ]
        ignored += [n for n in ("mask_image", "style_references", "loras") if getattr(self, n)]
        if self.num_images != 1:
            ignored.append("num_images")
        if ignored:
            raise _fields_clash(
                self,
                (ignored[0], "task"),
                "an upscale takes its input image, upscale_factor or width/height, upscale_method and creativity; "
                f"not {ignored[0]}",
            )
        return self

    @classmethod
    def parse(cls, data: object) -> ImageRequest:
        """Validate caller data into a request.

        Raises:
            InvalidRequest: one FieldError per problem, naming the field, the value and what is allowed.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidRequest(field_errors(exc)) from None

    @property
    def method(self) -> UpscaleMethod:
        """The upscale method asked for (faithful unless generative is)."""
        return self.upscale_method or "faithful"

    @property
    def mode(self) -> Mode:
        if self.init_image is None:
            return "text-to-image"
        if self.task is not None:
            return self.task
        return "inpaint" if self.mask_image is not None else "image-to-image"


# what a pattern-checked field accepts, in words (pydantic would print the regular expression)
PATTERN_WORDS = {"aspect_ratio": "width:height such as 16:9 or 2.35:1"}


def _fields_clash(model: BaseModel, names: tuple[str, ...], allowed: str) -> InvalidRequest:
    """A rule across `names`, as one FieldError naming them all, with their values."""
    return InvalidRequest([FieldError(", ".join(names), {n: getattr(model, n) for n in names}, allowed)])


def field_errors(exc: ValidationError) -> list[FieldError]:
    """Pydantic's errors in our words: field path, the value given, what is allowed."""
    out = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(part) for part in err["loc"]) or "request"
        allowed = err["msg"].removeprefix("Value error, ")
        if err["type"] == "string_pattern_mismatch":
            allowed = PATTERN_WORDS.get(str(err["loc"][-1]), allowed)
        elif err["type"] == "finite_number":
            allowed = "a finite number (not NaN or infinity)"
        elif err["type"] == "extra_forbidden":
            allowed = "unknown field; remove it"
        elif err["type"] == "missing":
            allowed = "required"
        missing = err["type"] == "missing"
        out.append(FieldError(field, None if missing else err.get("input"), allowed, missing=missing))
    return out


class Adjustment(BaseModel):
    """A change an offer needs to the request (snap, clamp, ignore), always shown, never silent."""

    field: str
    requested: object
    sent: object
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.requested!r} -> {self.sent!r} ({self.reason})"


class Candidate(BaseModel):
    """One offer that can serve the request, with exactly what it would send and cost."""

    offer_id: str
    label: str
    provider: ProviderName
    model: str
    endpoint: str
    width: int
    height: int
    num_images: int
    cost_usd: float
    latency_s: float
    license: str
    adjustments: list[Adjustment] = Field(default_factory=list)
    params: dict[str, object]
    available: bool = True
    unavailable_reason: str | None = None


class Rejection(BaseModel):
    """An offer that cannot serve the request, and every reason why."""

    offer_id: str
    label: str
    provider: ProviderName
    model: str
    reasons: list[str]

    def __str__(self) -> str:
        return f"{self.label}: {'; '.join(self.reasons)}"


def rejection_line(rejection: Rejection) -> str:
    """A rejection as the explanation lists it (each on a line of its own, after everything else)."""
    return f"\nrejected {rejection.label}: {'; '.join(rejection.reasons)}"


def more_rejected(count: int) -> str:
    """The line that stands for `count` rejections left out of a shortened explanation."""
    return f"\n… and {count} more offer{'' if count == 1 else 's'} rejected"


class PlanDraft(Protocol):
    """What a planner leaves to be built when first needed: the fields in DEFERRED_PLAN_FIELDS, and what a
    shortened explanation needs (see Plan.explain)."""

    rejected: int  # how many offers the plan rejects

    def fields(self) -> dict[str, object]:
        """Every deferred field's value."""
        ...

    def head(self) -> str:
        """The explanation without its rejection lines."""
        ...

    def rejections(self, limit: int) -> list[Rejection]:
        """The first `limit` rejections."""
        ...


# the Plan fields a planner may leave to its draft: a plan with hundreds of rejected offers builds their
# reasons, its explanation and the request as JSON only when something reads them or the plan is serialised
DEFERRED_PLAN_FIELDS = frozenset({"request", "rejections", "explanation"})


class Plan(BaseModel):
    """Ranked candidates (best first), rejected offers with reasons, and a short explanation.

    A plan from the planner may hold some fields in a draft (DEFERRED_PLAN_FIELDS): they are built on first
    read, and before the plan is serialised, compared, copied or pickled, so that nothing outside can tell."""

    request: dict[str, object]
    usage: Usage
    target_width: int
    target_height: int
    candidates: list[Candidate]
    unavailable: list[Candidate] = Field(
        default_factory=list,
        description="Offers that fit the request but are not configured here (no key, no GPU).",
    )
    rejections: list[Rejection]
    explanation: str

    _draft: PlanDraft | None = PrivateAttr(default=None)

    @property
    def chosen(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def priced_out(self) -> bool:
        """Nothing can run, and money is what stands in the way: some offer was rejected for its cost alone
        (max_cost_usd or the per-call budget)."""
        return not self.candidates and any(
            r.reasons and all(reason.startswith("costs $") for reason in r.reasons) for r in self.rejections
        )

    @property
    def rejected(self) -> int:
        """How many offers were rejected (counted without building their reasons)."""
        draft = self._pending()
        return len(self.rejections) if draft is None else draft.rejected

    def listed_rejections(self, limit: int) -> list[Rejection]:
        """The first `limit` rejections, without building the others' reasons."""
        draft = self._pending()
        return self.rejections[:limit] if draft is None else draft.rejections(limit)

    def explain(self, max_rejections: int | None = None) -> str:
        """The explanation; with `max_rejections`, its rejection lines stop after that many, followed by how
        many more offers were rejected (the same text whether or not the plan has been built in full)."""
        if max_rejections is None:
            return self.explanation
        draft = self._pending()
        if draft is not None:
            head, rejected = draft.head(), draft.rejected
        else:
            rejected = len(self.rejections)
            if rejected <= max_rejections:
                return self.explanation
            tail = "".join(rejection_line(r) for r in self.rejections)
            if not self.explanation.endswith(tail):
                return self.explanation  # not laid out as the planner lays it out: shown whole
            head = self.explanation[: len(self.explanation) - len(tail)]
        listed = self.listed_rejections(max_rejections)
        more = more_rejected(rejected - len(listed)) if rejected > len(listed) else ""
        return head + "".join(rejection_line(r) for r in listed) + more

    def _pending(self) -> PlanDraft | None:
        private = self.__pydantic_private__
        return None if private is None else private.get("_draft")

    def _complete(self) -> None:
        """Build the fields the draft holds, in field order (serialisation follows the order of __dict__)."""
        draft = self._pending()
        if draft is None:
            return
        built = draft.fields()
        given = self.__dict__
        fields = {name: given[name] if name in given else built[name] for name in type(self).model_fields}
        object.__setattr__(self, "__dict__", fields)
        self.__pydantic_private__["_draft"] = None  # type: ignore[index]

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        # no return annotation: a serialisation JSON schema of Plan stays the schema of its fields
        self._complete()
        return handler(self)

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            if name in DEFERRED_PLAN_FIELDS:
                self._complete()
                if name in self.__dict__:
                    return self.__dict__[name]
            return super().__getattr__(name)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Plan):
            other._complete()
        self._complete()
        return super().__eq__(other)

    def __iter__(self) -> Any:
        self._complete()
        return super().__iter__()

    def __repr_args__(self) -> Any:
        self._complete()
        return super().__repr_args__()

    def __copy__(self) -> Plan:
        self._complete()
        return super().__copy__()

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Plan:
        self._complete()
        return super().__deepcopy__(memo)

    def __getstate__(self) -> dict[Any, Any]:
        self._complete()
        return super().__getstate__()


class GeneratedImage(BaseModel):
    """One saved image."""

    path: str | None = None
    url: str | None = None
    width: int
    height: int
    format: str
    seed: int | None = None
    sha256: str | None = None
    flagged: bool = False


class GenerationResult(BaseModel):
    """What one generation produced, where it ran, what it cost, and why it ran there."""

    job_id: str
    images: list[GeneratedImage]
    provider: ProviderName
    model: str
    offer_id: str
    cost_usd: float
    seed: int | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    plan: Plan
    warnings: list[str] = Field(default_factory=list)
    # which process saved the images (fluxroute.store.leases.Owner: host/pid/token); None in results stored before
    replica: str | None = None
    # which worker made them, where the provider names one (a Ray fleet: its replica and node); else None
    worker: str | None = None

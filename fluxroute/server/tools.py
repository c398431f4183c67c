"""The tool specs as MCP tools: the specs' own schemas and hints, calls run by the tool library, spend
approval asked through elicitation, progress relayed as MCP progress notifications."""

# No `from __future__ import annotations`: the SDK reads the handlers' annotations (Resolve markers around
# local functions included), so they must be real objects, not strings.
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, Elicit, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from fluxroute.errors import FluxrouteError
from fluxroute.providers.base import Progress, ProgressCallback
from fluxroute.redact import redact, settings_secrets
from fluxroute.server.delivery import tool_result
from fluxroute.tools import ToolLibrary, ToolSpec, tool_specs


class SpendApproval(BaseModel):
    """The form a client shows when a generation needs the user's approval."""

    approve: bool = Field(description="Spend this amount on the generation")


@dataclass(frozen=True)
class NoQuestion:
    """What the approval resolver gives when it asked nothing: under the thresholds, or not askable."""

    reason: str  # "" when no approval is needed


class _RawArguments(ArgModelBase):
    """Hands the tool call's arguments on as they came: the tool library validates them against the spec,
    so bad input gets its field-level message (field, value, what is allowed) rather than pydantic's."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    def model_dump_one_level(self) -> dict[str, Any]:
        return {"arguments": dict(self.model_extra or {})}


def mcp_tools(library: ToolLibrary) -> list[Tool]:
    """One MCP tool per spec, each publishing the spec's input and output schema and hints."""
    return [_tool(spec, library) for spec in tool_specs()]


def _tool(spec: ToolSpec, library: ToolLibrary) -> Tool:
    handler = _generate_handler(library) if spec.handler == "generate" else _handler(spec.name, library)
    tool = Tool.from_function(
        handler,
        name=spec.name,
        title=spec.title,
        description=spec.description,
        annotations=ToolAnnotations(
            title=spec.title,
            read_only_hint=spec.hints.read_only,
            destructive_hint=spec.hints.destructive,
            idempotent_hint=spec.hints.idempotent,
            open_world_hint=spec.hints.open_world,
        ),
        structured_output=False,
    )
    tool.parameters = spec.input_schema
    tool.fn_metadata.arg_model = _RawArguments
    tool.fn_metadata.output_schema = spec.output_schema  # published; the spec's output model built the result
    return tool


ToolHandler = Callable[..., Coroutine[Any, Any, CallToolResult]]


def _handler(name: str, library: ToolLibrary) -> ToolHandler:
    async def call(arguments: dict[str, Any], ctx: Context) -> CallToolResult:
        return await _dispatch(library, name, arguments, ctx)

    return call


def _generate_handler(library: ToolLibrary) -> ToolHandler:
    async def ask_approval(arguments: dict[str, Any], ctx: Context) -> Elicit[SpendApproval] | NoQuestion:
        try:
            question = await library.spend_question(arguments)
        except FluxrouteError:
            return NoQuestion("")  # nothing to approve: the call itself refuses the input, naming the field
        if question is None:
            return NoQuestion("")
        capabilities = ctx.client_capabilities
        if capabilities is None or capabilities.elicitation is None:
            return NoQuestion(question.message)  # refused below unless the call carries confirm_spend
        return Elicit(f"{question.message} Approve?", SpendApproval)

    async def generate_image(
        arguments: dict[str, Any],
        ctx: Context,
        approval: Annotated[ElicitationResult[SpendApproval], Resolve(ask_approval)],
    ) -> CallToolResult:
        approved_usd: Decimal | None = None
        if isinstance(approval, AcceptedElicitation) and isinstance(approval.data, SpendApproval):
            if not approval.data.approve:
                raise ToolError("The user did not approve the spend; nothing was generated or charged.")
            question = await library.spend_question(arguments)
            approved_usd = None if question is None else question.ceiling_usd
        elif not isinstance(approval, AcceptedElicitation):
            said = "declined" if approval.action == "decline" else "cancelled"
            raise ToolError(f"The user {said} the spend approval; nothing was generated or charged.")
        return await _dispatch(library, "generate_image", arguments, ctx, approved_usd)

    return generate_image


async def _dispatch(
    library: ToolLibrary,
    name: str,
    arguments: dict[str, Any],
    ctx: Context,
    approved_usd: Decimal | None = None,
) -> CallToolResult:
    try:
        output = await library.dispatch(name, arguments, _progress_relay(ctx), approved_usd=approved_usd)
    except FluxrouteError as exc:
        raise ToolError(redact(str(exc), settings_secrets(library.router.settings))) from None
    return tool_result(output)


def _progress_relay(ctx: Context) -> ProgressCallback:
    """Provider progress as MCP progress notifications: an event count that only grows, and the event in words."""
    sent = 0

    async def relay(event: Progress) -> None:
        nonlocal sent
        sent += 1
        await ctx.report_progress(sent, None, describe(event))

    return relay


def describe(event: Progress) -> str:
    """'fal: IN_QUEUE, position 2' / 'local: step 3/28' / 'krea: processing' (plus the provider's message)."""
    parts = [event.status]
    if event.queue_position is not None:
        parts.append(f"position {event.queue_position} in the queue")
    if event.step is not None and event.total_steps:
        parts.append(f"step {event.step}/{event.total_steps}")
    if event.message:
        parts.append(event.message)
    return f"{event.provider}: " + ", ".join(parts)

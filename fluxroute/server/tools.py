"""The tool specs as MCP tools: the specs' own schemas and hints, calls run by the tool library, spend
approval asked through elicitation, progress relayed as MCP progress notifications.

The server lists its tools from TOOLS_FILE, the specs' MCP export (`fluxroute tools --format mcp`) saved
beside this module: building the specs' models and schemas would add tens of milliseconds to every start,
for the same answer. A test holds the file equal to the export; after changing a tool, write it again with
`fluxroute tools --format mcp > fluxroute/server/mcp_tools.json`.
"""

# No `from __future__ import annotations`: the SDK reads the handlers' annotations (Resolve markers around
# local functions included), so they must be real objects, not strings.
import functools
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import Annotated, Any

from mcp.server.apps import client_supports_apps
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
from fluxroute.server.apps import with_view_data
from fluxroute.server.backend import Backend
from fluxroute.server.delivery import tool_result

TOOLS_FILE = "mcp_tools.json"
GENERATE = "generate_image"  # the one tool that may ask the user to approve its spend first


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


@functools.cache
def tool_definitions() -> list[dict[str, Any]]:
    """The specs' MCP export, as saved in TOOLS_FILE (name, title, description, input and output schema, hints)."""
    text = resources.files("fluxroute.server").joinpath(TOOLS_FILE).read_text(encoding="utf-8")
    definitions: list[dict[str, Any]] = json.loads(text)
    return definitions


def mcp_tools(backend: Backend) -> list[Tool]:
    """One MCP tool per spec, each publishing the spec's input and output schema and hints; calls run on the
    backend's tool library (the first call waits for it to be made)."""
    return [_tool(definition, backend) for definition in tool_definitions()]


def _tool(definition: dict[str, Any], backend: Backend) -> Tool:
    name = definition["name"]
    handler = _generate_handler(backend) if name == GENERATE else _handler(name, backend)
    tool = Tool.from_function(
        handler,
        name=name,
        title=definition["title"],
        description=definition["description"],
        annotations=ToolAnnotations.model_validate({"title": definition["title"], **definition["annotations"]}),
        structured_output=False,
    )
    tool.parameters = definition["inputSchema"]
    tool.meta = definition.get("_meta")  # an MCP Apps view, shown only to hosts that declare them (server/apps.py)
    tool.fn_metadata.arg_model = _RawArguments
    # published; the spec's output model builds the result
    tool.fn_metadata.output_schema = definition["outputSchema"]
    return tool


ToolHandler = Callable[..., Coroutine[Any, Any, CallToolResult]]


def _handler(name: str, backend: Backend) -> ToolHandler:
    async def call(arguments: dict[str, Any], ctx: Context) -> CallToolResult:
        return await _dispatch(backend, name, arguments, ctx)

    return call


def _generate_handler(backend: Backend) -> ToolHandler:
    async def ask_approval(arguments: dict[str, Any], ctx: Context) -> Elicit[SpendApproval] | NoQuestion:
        library = await backend.library()
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
            question = await (await backend.library()).spend_question(arguments)
            approved_usd = None if question is None else question.ceiling_usd
        elif not isinstance(approval, AcceptedElicitation):
            said = "declined" if approval.action == "decline" else "cancelled"
            raise ToolError(f"The user {said} the spend approval; nothing was generated or charged.")
        return await _dispatch(backend, "generate_image", arguments, ctx, approved_usd)

    return generate_image


async def _dispatch(
    backend: Backend,
    name: str,
    arguments: dict[str, Any],
    ctx: Context,
    approved_usd: Decimal | None = None,
) -> CallToolResult:
    library = await backend.library()
    try:
        output = await library.dispatch(name, arguments, _progress_relay(ctx), approved_usd=approved_usd)
    except FluxrouteError as exc:
        raise ToolError(redact(str(exc), settings_secrets(backend.settings))) from None
    result = tool_result(output)
    return with_view_data(result, output) if client_supports_apps(ctx) else result


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

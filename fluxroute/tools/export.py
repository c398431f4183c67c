"""Tool definitions in each format an LLM API or client wants: MCP, OpenAI (plain and strict), Anthropic,
Gemini."""

from __future__ import annotations

import copy
from typing import Any, Literal, get_args

from fluxroute.errors import FieldError, InvalidRequest
from fluxroute.tools.schema import gemini_schema, single_typed
from fluxroute.tools.specs import tool_specs

ExportFormat = Literal["mcp", "openai", "openai-strict", "anthropic", "gemini"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)


def to_mcp() -> list[dict[str, Any]]:
    """MCP `Tool` objects (tools/list), with output schemas, behaviour hints and, where a tool has one, its MCP
    Apps view (`_meta.ui.resourceUri`)."""
    tools: list[dict[str, Any]] = []
    for spec in tool_specs():
        tool = {
            "name": spec.name,
            "title": spec.title,
            "description": spec.description,
            "inputSchema": copy.deepcopy(spec.input_schema),
            "outputSchema": copy.deepcopy(spec.output_schema),
            "annotations": spec.hints.to_mcp(),
        }
        if spec.view is not None:
            tool["_meta"] = {"ui": {"resourceUri": spec.view}}
        tools.append(tool)
    return tools


def to_openai(strict: bool = False) -> list[dict[str, Any]]:
    """Chat Completions function tools; `strict=True` gives the Structured Outputs form, where every
    field is present and optional ones are null (validate and dispatch read null as "not given")."""
    tools: list[dict[str, Any]] = []
    for spec in tool_specs():
        function: dict[str, Any] = {"name": spec.name, "description": spec.description}
        if strict:
            function["strict"] = True
        function["parameters"] = copy.deepcopy(spec.strict_input_schema if strict else spec.input_schema)
        tools.append({"type": "function", "function": function})
    return tools


def to_anthropic() -> list[dict[str, Any]]:
    """Anthropic Messages API tool definitions."""
    return [
        {"name": spec.name, "description": spec.description, "input_schema": single_typed(spec.input_schema)}
        for spec in tool_specs()
    ]


def to_gemini() -> list[dict[str, Any]]:
    """Gemini function declarations (google-genai `types.FunctionDeclaration`): name, description, parameters
    in Gemini's Schema dialect. Wrap them as `types.Tool(function_declarations=...)`."""
    return [
        {"name": spec.name, "description": spec.description, "parameters": gemini_schema(spec.input_schema)}
        for spec in tool_specs()
    ]


def export(format: str) -> list[dict[str, Any]]:
    """Every tool definition in `format` (one of EXPORT_FORMATS), JSON-serialisable.

    Raises:
        InvalidRequest: unknown format.
    """
    if format == "mcp":
        return to_mcp()
    if format in ("openai", "openai-strict"):
        return to_openai(strict=format == "openai-strict")
    if format == "anthropic":
        return to_anthropic()
    if format == "gemini":
        return to_gemini()
    raise InvalidRequest([FieldError("format", format, f"one of: {', '.join(EXPORT_FORMATS)}")])

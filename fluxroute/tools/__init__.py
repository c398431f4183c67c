"""Tool library: one spec per tool, exported to MCP, OpenAI and Anthropic, validated and dispatched."""

from fluxroute.tools.export import EXPORT_FORMATS, ExportFormat, export, to_anthropic, to_mcp, to_openai
from fluxroute.tools.library import ImageRouter, ToolLibrary
from fluxroute.tools.outputs import GenerateOutput, ModelsOutput, PlanOutput
from fluxroute.tools.specs import ModelsQuery, ToolHints, ToolSpec, get_tool, tool_specs
from fluxroute.tools.validation import validate

__all__ = [
    "EXPORT_FORMATS",
    "ExportFormat",
    "GenerateOutput",
    "ImageRouter",
    "ModelsOutput",
    "ModelsQuery",
    "PlanOutput",
    "ToolHints",
    "ToolLibrary",
    "ToolSpec",
    "export",
    "get_tool",
    "to_anthropic",
    "to_mcp",
    "to_openai",
    "tool_specs",
    "validate",
]

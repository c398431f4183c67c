"""Tool library: one spec per tool, exported to MCP, OpenAI and Anthropic, validated and dispatched."""

from fluxroute.tools.export import EXPORT_FORMATS, ExportFormat, export, to_anthropic, to_gemini, to_mcp, to_openai
from fluxroute.tools.image_args import GenerateArgs, ImageArgs
from fluxroute.tools.jobs import BackgroundJobs, JobView
from fluxroute.tools.library import ImageRouter, SpendQuestion, ToolLibrary
from fluxroute.tools.outputs import GenerateOutput, JobStatusOutput, ModelsOutput, PlanOutput
from fluxroute.tools.specs import JobQuery, JobRef, ModelsQuery, ToolHints, ToolSpec, get_tool, tool_specs
from fluxroute.tools.validation import validate

__all__ = [
    "EXPORT_FORMATS",
    "BackgroundJobs",
    "ExportFormat",
    "GenerateArgs",
    "GenerateOutput",
    "ImageArgs",
    "ImageRouter",
    "JobQuery",
    "JobRef",
    "JobStatusOutput",
    "JobView",
    "ModelsOutput",
    "ModelsQuery",
    "PlanOutput",
    "SpendQuestion",
    "ToolHints",
    "ToolLibrary",
    "ToolSpec",
    "export",
    "get_tool",
    "to_anthropic",
    "to_gemini",
    "to_mcp",
    "to_openai",
    "tool_specs",
    "validate",
]

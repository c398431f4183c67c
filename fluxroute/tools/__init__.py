"""Tool library: one spec per tool, exported to MCP, OpenAI and Anthropic, validated and dispatched."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fluxroute.lazy import lazy_exports

# Imported here, not on first access: the submodule `export` would otherwise shadow the function of that name
# once anything imported it. It needs only the specs, which listing the tools reads anyway.
from fluxroute.tools.export import EXPORT_FORMATS, ExportFormat, export, to_anthropic, to_gemini, to_mcp, to_openai

if TYPE_CHECKING:
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

# Each name is imported from its module on first access: listing the tools (`tool_specs`) loads neither the
# dispatcher nor the validator (jsonschema), and `from fluxroute.tools import X` loads only what X needs.
_LAZY = {
    "GenerateArgs": "fluxroute.tools.image_args",
    "ImageArgs": "fluxroute.tools.image_args",
    "BackgroundJobs": "fluxroute.tools.jobs",
    "JobView": "fluxroute.tools.jobs",
    "ImageRouter": "fluxroute.tools.library",
    "SpendQuestion": "fluxroute.tools.library",
    "ToolLibrary": "fluxroute.tools.library",
    "GenerateOutput": "fluxroute.tools.outputs",
    "JobStatusOutput": "fluxroute.tools.outputs",
    "ModelsOutput": "fluxroute.tools.outputs",
    "PlanOutput": "fluxroute.tools.outputs",
    "JobQuery": "fluxroute.tools.specs",
    "JobRef": "fluxroute.tools.specs",
    "ModelsQuery": "fluxroute.tools.specs",
    "ToolHints": "fluxroute.tools.specs",
    "ToolSpec": "fluxroute.tools.specs",
    "get_tool": "fluxroute.tools.specs",
    "tool_specs": "fluxroute.tools.specs",
    "validate": "fluxroute.tools.validation",
}


__getattr__, __dir__ = lazy_exports("fluxroute.tools", _LAZY, globals(), __all__)

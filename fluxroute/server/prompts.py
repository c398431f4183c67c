"""MCP prompts and guide resources: each model family's prompting guide, as a prompt to fill in (subject,
style, aspect ratio) and as a markdown resource at fluxroute://guides/{model}."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.mcpserver.prompts.base import Prompt, UserMessage
from pydantic import Field

from fluxroute import prompts
from fluxroute.catalog import load_catalog
from fluxroute.errors import InvalidRequest


def add_prompts(server: MCPServer) -> None:
    # the models with a prompting guide (an upscaler takes no prompt worth writing)
    families = [(model.id, model.name) for model in load_catalog().models if model.id in prompts.FAMILIES]
    for model_id, name in families:
        server.add_prompt(_prompt(model_id, name))

    @server.resource(
        "fluxroute://guides/{model}",
        name="guide",
        title="Prompting guide",
        description=f"How to prompt one model family ({', '.join(m for m, _ in families)}), in markdown.",
        mime_type="text/markdown",
    )
    def guide_resource(model: str) -> str:
        try:
            return prompts.guide(model)
        except (InvalidRequest, ValueError) as exc:
            raise ResourceError(str(exc)) from None


def _prompt(model_id: str, name: str) -> Prompt:
    def write_prompt(
        subject: str = Field(description="What the image shows"),
        style: str | None = Field(default=None, description="Look or medium, e.g. 35mm film, watercolor"),
        aspect_ratio: str | None = Field(default=None, description="W:H, e.g. 16:9"),
    ) -> list[UserMessage]:
        return [UserMessage(prompts.guide_prompt(model_id, subject, style=style, aspect_ratio=aspect_ratio))]

    return Prompt.from_function(
        write_prompt,
        name=f"{model_id}-prompt",
        title=f"Write a {name} prompt",
        description=f"Write a prompt for {name} following its prompting guide, then generate it.",
    )

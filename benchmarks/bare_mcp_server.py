"""The baseline for mcp_roundtrip.py: a bare MCPServer with one tool, served over stdio."""

from mcp.server.mcpserver import MCPServer

server = MCPServer("bare", log_level="WARNING")


@server.tool()
def plan_image_route(prompt: str) -> str:
    """Echo the prompt."""
    return prompt


if __name__ == "__main__":
    server.run("stdio")

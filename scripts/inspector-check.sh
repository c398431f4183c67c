#!/usr/bin/env bash
# The MCP Inspector CLI against `fluxroute serve`, over stdio and over Streamable HTTP: list and call the
# tools, list and get the prompts, read a resource. Spends nothing (no provider keys are passed).
# Usage: scripts/inspector-check.sh [python]   (default: python on PATH). Needs npx (Node >= 22.19, what Inspector 2.12 declares; Node 20 runs it with engine warnings).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${1:-python}"
INSPECTOR=(npx --yes --loglevel=error -p @modelcontextprotocol/inspector@2 mcp-inspector --cli)
HOME_DIR="$(mktemp -d)"
trap 'rm -rf "$HOME_DIR"; [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null || true' EXIT
export FLUXROUTE_HOME="$HOME_DIR" FLUXROUTE_CONFIG=none
unset FAL_KEY KREA_API_TOKEN FLUXROUTE_SERVER_TOKEN

check() {  # check <what> <inspector target and args...>: run it, require exit 0 and the expected text
  local expect="$1"; shift
  local out
  out="$("${INSPECTOR[@]}" "$@")"
  if ! grep -q -- "$expect" <<<"$out"; then
    echo "FAIL: $* (expected '$expect')" >&2
    echo "$out" | head -20 >&2
    exit 1
  fi
  echo "ok: ${*: -4}"
}

run_checks() {  # run_checks <target...>
  check '"name": "generate_image"' "$@" --method tools/list
  check 'cancel_image_job' "$@" --method tools/list
  check '"chosen"' "$@" --method tools/call --tool-name plan_image_route --tool-arg 'prompt=a lighthouse at dusk' --tool-arg size=16:9
  check 'fal-flux-krea' "$@" --method tools/call --tool-name list_image_models
  check 'flux-krea-dev-prompt' "$@" --method prompts/list
  check 'a lighthouse' "$@" --method prompts/get --prompt-name flux-krea-dev-prompt --prompt-args 'subject=a lighthouse'
  check 'offer_id' "$@" --method resources/read --uri fluxroute://models
  check 'fluxroute://guides/{model}' "$@" --method resources/templates/list
}

echo "== stdio"
run_checks "$PYTHON" -m fluxroute serve

echo "== Streamable HTTP"
PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$PYTHON" -m fluxroute serve --http --port "$PORT" &
SERVER_PID=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  sleep 0.1
done
run_checks "http://127.0.0.1:$PORT/mcp" --transport http
echo "inspector check passed"

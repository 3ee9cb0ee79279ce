#!/usr/bin/env bash
# The project's test command: installs what the tests need on a fresh Debian machine,
# then runs formatting, lints and every test (unit, integration, cross-language).
set -euo pipefail
cd "$(dirname "$0")/.."

# Load tests open many sockets; use the hard limit of open files.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  command -v apt-get >/dev/null || { echo "need: $*" >&2; return 1; }
  as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Integration tests run real Redis servers (standalone and Cluster).
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || apt_install redis-server redis-tools

# deploy/local runs HAProxy (TLS with a certificate from openssl) in front of the
# gateways; its scripts use curl.
for tool in haproxy openssl curl; do command -v "$tool" >/dev/null || apt_install "$tool"; done

# A Python client (the `websockets` package) proves the protocol from another language.
command -v python3 >/dev/null || apt_install python3 python3-pip
if ! python3 -c 'import websockets' 2>/dev/null; then
  python3 -m pip install --quiet websockets 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages websockets 2>/dev/null \
    || apt_install python3-websockets
fi

# The WebSocket conformance run needs kosoku (PyPI; scripts/conformance.sh installs
# it); the real-browser checks need Debian's Chromium and Node with playwright-core.
command -v chromium >/dev/null || apt_install chromium
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
# Fonts for the demo page's screenshots (Chinese danmaku, emoji).
dpkg -s fonts-wqy-microhei fonts-noto-color-emoji >/dev/null 2>&1 || apt_install fonts-wqy-microhei fonts-noto-color-emoji || true
(cd tests/browser && npm ci --no-audit --no-fund --silent)

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace "$@"

# The gateway binary the integration tests just built, against Autobahn's cases and a
# real browser.
cargo build -q -p danmaku-gateway -p danmaku-loadtest
scripts/conformance.sh target/debug/danmaku-gateway
node tests/browser/origin.mjs target/debug/danmaku-gateway
node tests/browser/demo.mjs target/debug/danmaku-gateway
node tests/browser/dashboard.mjs target/debug/danmaku-gateway target/debug/danmaku-loadtest
# The deployment files (Dockerfile, compose, HAProxy, Kubernetes, systemd, sysctl),
# validated offline; then deploy/local for real: up, a load test through the balancer
# over wss://, a rolling restart under load with nothing lost, down.
scripts/deploy_check.sh
# The alert rules (promtool check rules) and the Grafana dashboard (its queries parse
# and name only catalogued metrics).
scripts/observability_check.sh
deploy/local/test.sh target/debug/danmaku-gateway target/debug/danmaku-loadtest
# The HTTP API against its OpenAPI document (schemathesis: no server error, every answer
# as documented).
scripts/schema_check.sh target/debug/danmaku-gateway

# The web SDK (sdk/js): build — the committed bundle the gateway's /demo embeds must be
# the fresh build of the sources —, tsc --noEmit, eslint, and vitest against real gateways.
(cd sdk/js && npm ci --no-audit --no-fund --silent && npm run check --silent && git diff --exit-code -- dist/danmaku.js)

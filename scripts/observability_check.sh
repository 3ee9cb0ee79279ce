#!/usr/bin/env bash
# The alert rules and the Grafana dashboard, checked:
#   - deploy/prometheus/alerts.yml with `promtool check rules` (syntax, PromQL, templates),
#     and deploy/prometheus/prometheus.yml with `promtool check config` (and the rules it loads);
#   - every expression of the dashboard parsed by promtool (`promql format`, Grafana's
#     variables replaced), the dashboard valid JSON with a `${datasource}` variable;
#   - every rule with `for`, a severity label, summary and description;
#   - every metric an alert, a panel or a variable uses listed in docs/metrics.md
#     (scripts/observability_check.py).
#
#   scripts/observability_check.sh [alerts.yml] [dashboard.json]   # default: deploy/…
#
# promtool: $PROMTOOL, else on PATH, else ~/.cache/danmaku-tools/promtool, else built
# once into that folder with `go install` (Go module github.com/prometheus/prometheus,
# a few minutes on two cores; reruns reuse the binary). Without Go, the expressions are
# parsed with the PyPI package promql-parser instead, and the script says so.
# Exits non-zero on any problem.
set -euo pipefail
cd "$(dirname "$0")/.."

ALERTS=${1:-deploy/prometheus/alerts.yml}
DASHBOARD=${2:-deploy/grafana/dashboards/danmaku.json}
CATALOGUE=docs/metrics.md
PROMETHEUS_VERSION=v0.316.0
TOOLS=${XDG_CACHE_HOME:-$HOME/.cache}/danmaku-tools

pip_install() {
  python3 -m pip install --quiet "$@" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages "$@"
}

python3 -c 'import yaml' 2>/dev/null || pip_install pyyaml

find_promtool() {
  if [[ -n ${PROMTOOL:-} && -x $PROMTOOL ]]; then echo "$PROMTOOL"; return; fi
  if command -v promtool >/dev/null; then command -v promtool; return; fi
  if [[ -x $TOOLS/promtool ]]; then echo "$TOOLS/promtool"; return; fi
  if command -v go >/dev/null; then
    echo "building promtool $PROMETHEUS_VERSION into $TOOLS (once)" >&2
    mkdir -p "$TOOLS"
    # Its own module and build caches (about 3 GB), removed once the binary is there.
    local scratch=$TOOLS/go-scratch
    if GOBIN=$TOOLS GOFLAGS=-mod=mod GOCACHE=$scratch/build GOMODCACHE=$scratch/mod \
        go install "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" >&2; then
      echo "$TOOLS/promtool"
    fi
    GOMODCACHE=$scratch/mod go clean -modcache >/dev/null 2>&1 || true
    rm -rf "$scratch"
  fi
}

PROMTOOL_BIN=$(find_promtool || true)
status=0
if [[ -n $PROMTOOL_BIN ]]; then
  echo "== promtool check rules $ALERTS"
  "$PROMTOOL_BIN" check rules "$ALERTS" || status=1
  # The compose stack's Prometheus configuration, with the rule file it loads.
  echo "== promtool check config deploy/prometheus/prometheus.yml"
  "$PROMTOOL_BIN" check config deploy/prometheus/prometheus.yml || status=1
  echo "== dashboard expressions (promtool promql format)"
  exprs=$(python3 - "$DASHBOARD" 2>/dev/null <<'PY' || { echo "$DASHBOARD: not valid JSON" >&2; exit 1; }
import json, re, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
panels = list(d.get("panels") or [])
for p in list(panels):
    panels.extend(p.get("panels") or [])
for p in panels:
    for t in p.get("targets") or []:
        e = t.get("expr", "")
        e = e.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
        e = re.sub(r"\$\{?\w+\}?", ".*", e)
        print(e.replace("\n", " "))
PY
) || status=1
  while IFS= read -r expr; do
    [[ -z $expr ]] && continue
    if ! out=$("$PROMTOOL_BIN" --experimental promql format "$expr" 2>&1); then
      echo "$DASHBOARD: $expr: $out" >&2
      status=1
    fi
  done <<<"$exprs"
  python3 scripts/observability_check.py "$ALERTS" "$DASHBOARD" "$CATALOGUE" || status=1
else
  echo "== promtool unavailable (no Go to build it): parsing with PyPI promql-parser instead"
  python3 -c 'import promql_parser' 2>/dev/null || pip_install 'promql-parser>=0.11,<1'
  python3 scripts/observability_check.py --syntax-with-promql-parser \
    "$ALERTS" "$DASHBOARD" "$CATALOGUE" || status=1
fi

if [[ $status -ne 0 ]]; then
  echo "observability check FAILED" >&2
else
  echo "observability check passed"
fi
exit "$status"

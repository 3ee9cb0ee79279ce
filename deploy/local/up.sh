#!/usr/bin/env bash
# The production shape on one machine, as plain processes: a 3-master Redis Cluster
# (or one Redis with --standalone), 3 gateways, and HAProxy in front terminating TLS
# with a self-signed certificate it generates, so clients speak wss:// and https://.
#
#   deploy/local/up.sh                    # Cluster, release build
#   deploy/local/up.sh --standalone       # one Redis
#   deploy/local/up.sh -- --anonymous     # flags after -- go to every gateway
#   deploy/local/down.sh                  # stops exactly what up.sh started
#
# Needs redis-server, redis-cli, haproxy, openssl and curl (Debian: apt-get install
# redis-server redis-tools haproxy openssl curl). Ports, credentials and the state
# directory come from the environment: DANMAKU_LB_PORT (8443), DANMAKU_GW_BASE (8080:
# gateways on 8081…), DANMAKU_REDIS_BASE (7000: Redis on 7001…), DANMAKU_GATEWAYS (3),
# DANMAKU_JWT_SECRET, DANMAKU_API_KEYS, DANMAKU_LOCAL_DIR (target/local),
# DANMAKU_BIN (a gateway binary to use instead of building one).
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "$0")/lib.sh"

standalone=false
while (( $# )); do
  case $1 in
    --standalone) standalone=true; shift ;;
    --) shift; break ;;
    *) die "unknown option $1 (flags for the gateways go after --)" ;;
  esac
done

for tool in redis-server redis-cli haproxy openssl curl; do
  command -v "$tool" >/dev/null || die "$tool is missing (Debian: apt-get install redis-server redis-tools haproxy openssl curl)"
done
mkdir -p "$LOCAL_DIR"
for f in "$LOCAL_DIR"/*.pid; do
  [[ -e $f ]] || continue
  name=$(basename "$f" .pid)
  pid_of "$name" >/dev/null && die "$name is already running: deploy/local/down.sh first"
  rm -f "$f"
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# Whatever fails from here on, what was started is stopped again.
up=false
trap '$up || { say "stopping what was started"; "$(dirname "$0")/down.sh"; }' EXIT

if [[ -z ${DANMAKU_BIN:-} ]]; then
  say "building the gateway (release)…"
  (cd "$ROOT" && cargo build --release -q -p danmaku-gateway)
  DANMAKU_BIN=$ROOT/target/release/danmaku-gateway
fi
[[ -x $DANMAKU_BIN ]] || die "no gateway binary at $DANMAKU_BIN"
DANMAKU_BIN=$(realpath "$DANMAKU_BIN")

# --- credentials (kept out of process arguments) ------------------------------------
: "${DANMAKU_JWT_SECRET:=local-dev-secret-0123456789}"
: "${DANMAKU_API_KEYS:=local-dev-key}"
umask 077
printf 'DANMAKU_JWT_SECRET=%q\nDANMAKU_API_KEYS=%q\n' "$DANMAKU_JWT_SECRET" "$DANMAKU_API_KEYS" \
  > "$LOCAL_DIR/credentials.env"
umask 022

# --- Redis ---------------------------------------------------------------------------
redis_up() { redis-cli -p "$1" ping | grep -q PONG; }
cluster_ok() { redis-cli -p "$1" cluster info | grep -q 'cluster_state:ok'; }
start_redis() {
  local port=$1; shift
  redis-server --bind 127.0.0.1 --port "$port" --dir "$LOCAL_DIR" --save "" --appendonly no \
    --dbfilename "redis-$port.rdb" "$@" >> "$LOCAL_DIR/redis-$port.log" 2>&1 < /dev/null &
  record "redis-$port" $! redis-server
  wait_for 10 redis_up "$port" || die "redis on $port did not start (see $LOCAL_DIR/redis-$port.log)"
}
if $standalone; then
  start_redis $(( REDIS_BASE + 1 ))
  store=(--redis-url "redis://127.0.0.1:$(( REDIS_BASE + 1 ))")
  store_text="Redis 127.0.0.1:$(( REDIS_BASE + 1 ))"
else
  nodes=() seeds=()
  for i in 1 2 3; do
    port=$(( REDIS_BASE + i ))
    rm -f "$LOCAL_DIR/nodes-$port.conf"
    start_redis "$port" --cluster-enabled yes --cluster-config-file "nodes-$port.conf" \
      --cluster-port $(( REDIS_BASE + 10 + i )) --cluster-node-timeout 2000
    nodes+=("127.0.0.1:$port")
    seeds+=("redis://127.0.0.1:$port")
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes > "$LOCAL_DIR/cluster-create.log" 2>&1 \
    || die "redis-cli --cluster create failed (see $LOCAL_DIR/cluster-create.log)"
  for n in "${nodes[@]}"; do
    wait_for 20 cluster_ok "${n##*:}" || die "the cluster did not form"
  done
  store=(--redis-cluster "$(IFS=,; echo "${seeds[*]}")")
  store_text="Redis Cluster ${nodes[*]}"
fi

# --- gateways ------------------------------------------------------------------------
printf '%s\n' "$DANMAKU_BIN" "${store[@]}" --trusted-proxies 127.0.0.1 "$@" > "$LOCAL_DIR/gateway.args"
for i in $(seq 1 "$GATEWAYS"); do
  start_gateway "$i"
done

# --- TLS and the balancer ------------------------------------------------------------
cert=$LOCAL_DIR/tls/cert.pem
if [[ ! -s $cert ]]; then
  mkdir -p "$LOCAL_DIR/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" \
    -keyout "$LOCAL_DIR/tls/key.pem" -out "$cert" 2> "$LOCAL_DIR/tls/openssl.log" \
    || die "openssl could not make a certificate (see $LOCAL_DIR/tls/openssl.log)"
  cat "$cert" "$LOCAL_DIR/tls/key.pem" > "$LOCAL_DIR/tls/haproxy.pem"
  chmod 600 "$LOCAL_DIR/tls/key.pem" "$LOCAL_DIR/tls/haproxy.pem"
fi
servers=$(for i in $(seq 1 "$GATEWAYS"); do printf '    server g%d 127.0.0.1:%d\\n' "$i" $(( GW_BASE + i )); done)
sed -e "s|@LB_PORT@|$LB_PORT|" -e "s|@STATS_PORT@|$(( LB_PORT + 1 ))|" \
    -e "s|@CERT@|$LOCAL_DIR/tls/haproxy.pem|" -e "s|@SERVERS@|$servers|" \
    "$(dirname "$0")/haproxy.cfg.in" > "$LOCAL_DIR/haproxy.cfg"
haproxy -c -q -f "$LOCAL_DIR/haproxy.cfg" || die "haproxy refuses $LOCAL_DIR/haproxy.cfg"
haproxy -db -f "$LOCAL_DIR/haproxy.cfg" >> "$LOCAL_DIR/haproxy.log" 2>&1 < /dev/null &
record haproxy $! haproxy
lb_ready() { curl -fsS --cacert "$cert" -o /dev/null "https://127.0.0.1:$LB_PORT/readyz"; }
wait_for 20 lb_ready || die "the balancer does not answer https://127.0.0.1:$LB_PORT/readyz (see $LOCAL_DIR/haproxy.log)"

up=true
key=${DANMAKU_API_KEYS%%,*}
cat <<TEXT
danmaku is up: $GATEWAYS gateways on 127.0.0.1:$(( GW_BASE + 1 ))-$(( GW_BASE + GATEWAYS )), $store_text
  viewers    wss://127.0.0.1:$LB_PORT/ws?token=…
  API        https://127.0.0.1:$LB_PORT/v1/…   (Authorization: Bearer $key)
  dashboard  https://127.0.0.1:$LB_PORT/dashboard
  balancer   http://127.0.0.1:$(( LB_PORT + 1 ))/   (HAProxy statistics)
  CA         $cert   (self-signed: curl --cacert, danmaku-loadtest --ca-file)
  logs       $LOCAL_DIR/*.log
  load test  danmaku-loadtest fanout --url wss://127.0.0.1:$LB_PORT/ws --ca-file $cert \\
               --api-key $key --jwt-secret "\$DANMAKU_JWT_SECRET"
  roll       deploy/local/roll.sh     stop   deploy/local/down.sh
TEXT

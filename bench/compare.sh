#!/usr/bin/env bash
# Runs the same load against melody's `chat`/`echo` examples, the raw tokio-websockets floor
# server and (when Node and npm are present) uWebSockets.js and a Node `ws` server (bench/node), with the server pinned to one
# core and the load generator to another, and writes docs/BENCHMARKS.md.
#
#   bash bench/compare.sh            # full run, about 22 minutes
#   QUICK=1 bash bench/compare.sh    # shorter holds and durations, about 8 minutes
#
# The memory scenarios (idle, churn) run once per server, topic churn once against melody's
# `rooms` example, and live topics (1,000 subscribers, history on and off, then a crowd that
# reconnects and recovers) once against melody's `live` example. The throughput scenarios (fan-out, echo) run in ROUNDS rounds that
# alternate the servers (melody, floor, melody, floor, ...), and the table shows each server's
# median round: on a shared or noisy machine the speed drifts over minutes, and alternating
# keeps that drift out of the ratios.
#
# The compression section (COMPRESSION=1) runs, in each round, melody's fan-out of 4 KiB and
# 64-byte JSON to 1,000 subscribers with and without permessage-deflate (`--deflate`) on one
# fresh `chat` server (MAX_MESSAGE_SIZE=65536 in its environment: the 4 KiB messages are over
# its default limit), and idle connections that negotiated compression on a fresh server; Node
# `ws` with `perMessageDeflate` does the same once. About 7 minutes of the full run (2 with
# QUICK).
#
# Environment:
#   QUICK=1            shorter runs
#   SERVER_CPU=1       core for the server       LOAD_CPU=0   core for the load generator
#   PORT=17300         first port to try (the next free one is used)
#   NODE=0             skip the Node servers (`ws` runs one round only: it is far slower)
#   UWS=0              skip uWebSockets.js (otherwise it alternates with melody and the floor)
#   COMPRESSION=0      skip the compression section
#   ROUNDS=3           rounds of the throughput scenarios
#   IDLE_CONNS=15000   connections held in the idle scenario
#   IDLE_HOLD, FANOUT_SECS, RATE_SECS, ECHO_SECS, CHURN_SECS   override durations (seconds)
#   LIVE_MESSAGES=20000   publications in each live-topics run (5,000 with QUICK)
#   QUIET_BUSY=25      before each run, wait up to QUIET_WAIT s until the whole machine uses
#   QUIET_WAIT=10      at most QUIET_BUSY % of a core (3 s with QUICK): other work skews figures
#   OUT=docs/BENCHMARKS.md   where to write the report
#   PREVIOUS=FILE      report to compare with in the "Before and after" section (default: the
#                      OUT this run replaces; BEFORE_LABEL=TEXT says what it was)
#   RESULTS=target/bench-results   where the JSON of every run goes
#   CHARTS=docs        where the SVG charts go (bench-*.svg; default: OUT's directory)
#
# Load is only ever sent to 127.0.0.0/8.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

QUICK=${QUICK:-0}
if [[ "$QUICK" == 1 ]]; then
    IDLE_HOLD=${IDLE_HOLD:-5}
    FANOUT_SECS=${FANOUT_SECS:-3}
    RATE_SECS=${RATE_SECS:-5}
    ECHO_SECS=${ECHO_SECS:-3}
    CHURN_SECS=${CHURN_SECS:-3}
    LIVE_MESSAGES=${LIVE_MESSAGES:-5000}
else
    IDLE_HOLD=${IDLE_HOLD:-60}
    FANOUT_SECS=${FANOUT_SECS:-8}
    RATE_SECS=${RATE_SECS:-10}
    ECHO_SECS=${ECHO_SECS:-8}
    CHURN_SECS=${CHURN_SECS:-10}
    LIVE_MESSAGES=${LIVE_MESSAGES:-20000}
fi
IDLE_CONNS=${IDLE_CONNS:-15000}
ROUNDS=${ROUNDS:-3}
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
PORT=${PORT:-17300}
NODE=${NODE:-1}
COMPRESSION=${COMPRESSION:-1}
QUIET_BUSY=${QUIET_BUSY:-25}
if [[ "$QUICK" == 1 ]]; then QUIET_WAIT=${QUIET_WAIT:-3}; else QUIET_WAIT=${QUIET_WAIT:-10}; fi
OUT=${OUT:-docs/BENCHMARKS.md}
RESULTS=${RESULTS:-target/bench-results}

log() { printf '\n=== %s\n' "$*" >&2; }

if ! command -v taskset >/dev/null; then
    echo "compare.sh: taskset (util-linux) is required" >&2
    exit 1
fi

# The generator holds up to IDLE_CONNS sockets, and so does the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log "building (release)"
cargo build --release -p melody-bench --bin melody-bench >&2
cargo build --release -p melody-ws --example chat --example echo --example rooms >&2
cargo build --release -p melody-ws --features live --example live >&2
BENCH=$ROOT/target/release/melody-bench
CHAT=$ROOT/target/release/examples/chat
ECHO=$ROOT/target/release/examples/echo
ROOMS=$ROOT/target/release/examples/rooms
LIVE=$ROOT/target/release/examples/live

rm -rf "$RESULTS"
mkdir -p "$RESULTS"
LOGS=$(mktemp -d)
# The report this run replaces, for the before-and-after section.
PREVIOUS=${PREVIOUS:-$OUT}
if [[ -f "$PREVIOUS" ]]; then cp "$PREVIOUS" "$LOGS/previous.md"; fi
SERVER_PID=
SERVER_NAME=
SERVER_CMD=()
NOTES=()

cleanup() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$LOGS"
}
trap cleanup EXIT

port_in_use() { (: >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_server NAME COMMAND...: starts COMMAND with ADDR=127.0.0.1:<free port> pinned to
# SERVER_CPU, waits for it to print its URL; sets SERVER_PID and SERVER_PORT.
start_server() {
    SERVER_NAME=$1
    shift
    SERVER_CMD=("$@")
    while port_in_use "$PORT"; do PORT=$((PORT + 1)); done
    SERVER_PORT=$PORT
    PORT=$((PORT + 1))
    ADDR=127.0.0.1:$SERVER_PORT taskset -c "$SERVER_CPU" "$@" >>"$LOGS/$SERVER_NAME.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 200); do
        if grep -qE '(ws|http)://127.0.0.1:'"$SERVER_PORT" "$LOGS/$SERVER_NAME.log"; then
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.05
    done
    echo "compare.sh: $SERVER_NAME did not start:" >&2
    cat "$LOGS/$SERVER_NAME.log" >&2
    SERVER_PID=
    return 1
}

# A server that died (crashed, or killed by someone else) is reported and restarted, so that
# one failure does not void the remaining scenarios.
ensure_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        return 0
    fi
    local status=0
    [[ -n "$SERVER_PID" ]] && { wait "$SERVER_PID" 2>/dev/null || status=$?; }
    echo "compare.sh: $SERVER_NAME exited (status $status); its log ends:" >&2
    tail -5 "$LOGS/$SERVER_NAME.log" >&2
    NOTES+=("\`$SERVER_NAME\` exited during the run (status $status) and was restarted.")
    start_server "$SERVER_NAME" "${SERVER_CMD[@]}"
}

stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}

# load SERVER SCENARIO URL_PATH SUBCOMMAND ARGS...: runs the generator pinned to LOAD_CPU
# against the running server (`@PID@` in ARGS is replaced by its pid) and keeps the JSON as
# RESULTS/SERVER-SCENARIO.json. A failed run is reported and skipped.
load() {
    local server=$1 scenario=$2 path=$3
    shift 3
    local began=$SECONDS
    log "$server: $scenario"
    if ! ensure_server; then
        echo "compare.sh: $server $scenario skipped: no server" >&2
        return 0
    fi
    # Other work on the machine skews the figures: wait (bounded) for it to calm down. The
    # report shows how much CPU other processes used during each run.
    "$BENCH" wait-quiet --max-busy "$QUIET_BUSY" --timeout "$QUIET_WAIT"
    local args=()
    for a in "$@"; do args+=("${a//@PID@/$SERVER_PID}"); done
    local out="$RESULTS/$server-$scenario${ROUND:+.round$ROUND}.json"
    if ! taskset -c "$LOAD_CPU" "$BENCH" "${args[@]}" --url "ws://127.0.0.1:$SERVER_PORT$path" \
        --json "$out"; then
        echo "compare.sh: $server $scenario failed" >&2
        rm -f "$out"
    fi
    echo "  ($((SECONDS - began)) s)" >&2
}

# memory_suite SERVER URL_PATH: idle (while the server's memory is fresh), then churn.
memory_suite() {
    local server=$1 path=$2
    load "$server" idle "$path" idle --connections "$IDLE_CONNS" --hold "$IDLE_HOLD" --pid @PID@
    load "$server" churn "$path" churn --concurrency 50 --duration "$CHURN_SECS" --pid @PID@
}

# broadcast_suite SERVER URL_PATH: the fan-out scenarios against the running server.
broadcast_suite() {
    local server=$1 path=$2
    load "$server" fanout-1k "$path" fanout --subscribers 1000 --publishers 1 --size 64 \
        --messages 10000000 --duration "$FANOUT_SECS" --pid @PID@
    load "$server" fanout-10k "$path" fanout --subscribers 10000 --publishers 1 --size 64 \
        --messages 10000000 --duration "$FANOUT_SECS" --pid @PID@
    load "$server" fanout-rate "$path" fanout --subscribers 10000 --publishers 1 --size 64 \
        --rate 20 --messages $((20 * RATE_SECS)) --pid @PID@
}

# compression_suite SERVER URL_PATH: fan-out of 4 KiB and 64-byte JSON to 1,000 subscribers,
# uncompressed and with permessage-deflate, against the running server; both read by the
# generator's raw client (`--raw` does not offer compression), so that only the negotiation
# differs. Which of the two runs first alternates with the round, so that drift does not
# favour one.
compression_suite() {
    local server=$1 path=$2 size name variant
    local variants=(raw deflate)
    if (((${ROUND:-1} % 2) == 0)); then variants=(deflate raw); fi
    for size in 4096 64; do
        name=json4k
        [[ $size == 64 ]] && name=json64
        for variant in "${variants[@]}"; do
            local suffix=
            [[ $variant == deflate ]] && suffix=-deflate
            load "$server" "fanout-1k-$name$suffix" "$path" fanout --subscribers 1000 \
                --publishers 1 --size "$size" --payload json --messages 10000000 \
                --duration "$FANOUT_SECS" "--$variant" --pid @PID@
        done
    done
}

# idle_deflate SERVER URL_PATH: idle connections that negotiated permessage-deflate, against the
# running (fresh) server.
idle_deflate() {
    load "$1" idle-deflate "$2" idle --deflate --connections "$IDLE_CONNS" --hold "$IDLE_HOLD" \
        --pid @PID@
}

# echo_suite SERVER URL_PATH: the echo scenarios against the running echo server.
echo_suite() {
    local server=$1 path=$2
    load "$server" echo-1x32 "$path" echo --connections 1 --depth 32 --size 64 \
        --duration "$ECHO_SECS" --pid @PID@
    load "$server" echo-50x4 "$path" echo --connections 50 --depth 4 --size 64 \
        --duration "$ECHO_SECS" --pid @PID@
}

# The Node servers (bench/node: the ws package and uWebSockets.js, versions pinned there).
NODE_SERVERS=$ROOT/bench/node
NODE_READY=0
node_skip() {
    log "skipping node ws and uWebSockets.js: $1"
    NOTES+=("Node \`ws\` and uWebSockets.js were not measured: $1.")
}
if [[ "$NODE" != 1 ]]; then
    node_skip "NODE=$NODE"
elif ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    node_skip "node or npm is not installed"
elif ! (cd "$NODE_SERVERS" && npm ci --no-audit --no-fund --loglevel=error >&2); then
    node_skip "\`npm ci\` in bench/node failed"
else
    NODE_READY=1
    NODE_VERSION=$(node --version)
    WS_VERSION=$(cd "$NODE_SERVERS" && node -p "require('ws/package.json').version")
    NOTES+=("Node \`ws\`: node $NODE_VERSION, ws $WS_VERSION.")
fi

# SERVERS: name, broadcast command, echo command, URL path (chat serves WebSocket on /ws).
declare -A BROADCAST_CMD ECHO_CMD WS_PATH
SERVERS=(melody floor)
BROADCAST_CMD[melody]="$CHAT"
ECHO_CMD[melody]="$ECHO"
WS_PATH[melody]=/ws
BROADCAST_CMD[floor]="$BENCH floor-server --mode broadcast"
ECHO_CMD[floor]="$BENCH floor-server --mode echo"
WS_PATH[floor]=/
# uWebSockets.js alternates with melody and the floor in every round (UWS=0 leaves it out).
if [[ "$NODE_READY" == 1 && "${UWS:-1}" == 1 ]]; then
    if (cd "$NODE_SERVERS" && node -e "require('@trufflesuite/uws-js-unofficial')" >&2); then
        SERVERS+=(uws)
        BROADCAST_CMD[uws]="node $NODE_SERVERS/uws.js broadcast"
        ECHO_CMD[uws]="node $NODE_SERVERS/uws.js echo"
        WS_PATH[uws]=/
        UWS_VERSION=$(cd "$NODE_SERVERS" && node -p "require('@trufflesuite/uws-js-unofficial/package.json').version")
        NOTES+=("uWebSockets.js: \`@trufflesuite/uws-js-unofficial\` $UWS_VERSION (a build of uWebSockets.js v${UWS_VERSION%%-*} for this machine's glibc; the official builds of later versions need glibc 2.38), broadcast by \`app.publish\` to a topic every connection subscribes to, \`maxBackpressure\` 64 MiB so that nothing is dropped.")
    else
        NOTES+=("uWebSockets.js was not measured: its binary does not load on this machine.")
    fi
fi
# The compression runs' chat server: 4 KiB messages are over the default 512-byte limit.
COMPRESS_CMD=(env MAX_MESSAGE_SIZE=65536 "$CHAT")

# run_memory SERVER / run_round SERVER: one server's memory scenarios, or one round of its
# throughput scenarios, each on a fresh server process.
run_memory() {
    local server=$1
    # shellcheck disable=SC2086 # the commands are word lists
    if start_server "$server-broadcast" ${BROADCAST_CMD[$server]}; then
        memory_suite "$server" "${WS_PATH[$server]}"
        stop_server
    fi
}
run_round() {
    local server=$1
    # shellcheck disable=SC2086
    if start_server "$server-broadcast" ${BROADCAST_CMD[$server]}; then
        broadcast_suite "$server" "${WS_PATH[$server]}"
        stop_server
    fi
    # shellcheck disable=SC2086
    if start_server "$server-echo" ${ECHO_CMD[$server]}; then
        echo_suite "$server" /
        stop_server
    fi
}

for server in "${SERVERS[@]}"; do run_memory "$server"; done
if [[ "$COMPRESSION" == 1 ]] && start_server melody-compress "${COMPRESS_CMD[@]}"; then
    idle_deflate melody /ws
    stop_server
fi
# Topic churn: melody only (the floor and Node servers have no topics).
if start_server melody-rooms "$ROOMS"; then
    load melody topic-churn / topic-churn --duration "$CHURN_SECS" --pid @PID@
    stop_server
fi
# Live topics: melody only. One room of 1,000 subscribers with presence, publications with and
# without history (the `live` example's HISTORY), then (history on) everyone reconnecting at
# once to recover what it missed.
live_suite() {
    local history scenario
    for history in 1 0; do
        scenario=live-history
        [[ $history == 0 ]] && scenario=live-plain
        if start_server "melody-$scenario" env HISTORY=$history MESSAGE_RATE=0 "$LIVE"; then
            load melody "$scenario" "/ws?name=bench" live --subscribers 1000 \
                --messages "$LIVE_MESSAGES" --pid @PID@
            stop_server
        fi
    done
}
live_suite
for ROUND in $(seq "$ROUNDS"); do
    for server in "${SERVERS[@]}"; do run_round "$server"; done
    if [[ "$COMPRESSION" == 1 ]] && start_server melody-compress "${COMPRESS_CMD[@]}"; then
        compression_suite melody /ws
        stop_server
    fi
done
ROUND=

# number FIELD FILE: the first numeric value of "FIELD" in a JSON file (0 when absent).
number() {
    sed -n 's/.*"'"$1"'": *\([0-9.eE+-]*\).*/\1/p' "$2" | head -1 | grep . || echo 0
}

# keep_median SERVER SCENARIO FIELD: of the rounds' results, keeps the one with the median
# FIELD as SERVER-SCENARIO.json (the file the report reads).
keep_median() {
    local server=$1 scenario=$2 field=$3
    local files=("$RESULTS/$server-$scenario".round*.json)
    [[ -e "${files[0]}" ]] || return 0
    local ranked
    ranked=$(for f in "${files[@]}"; do printf '%s %s\n' "$(number "$field" "$f")" "$f"; done |
        sort -g | cut -d' ' -f2)
    local count
    count=$(wc -l <<<"$ranked")
    cp "$(sed -n "$(((count + 1) / 2))p" <<<"$ranked")" "$RESULTS/$server-$scenario.json"
}

for server in "${SERVERS[@]}"; do
    keep_median "$server" fanout-1k deliveries_per_sec
    keep_median "$server" fanout-10k deliveries_per_sec
    keep_median "$server" fanout-rate p99_us
    keep_median "$server" echo-1x32 msgs_per_sec
    keep_median "$server" echo-50x4 msgs_per_sec
done
for scenario in fanout-1k-json4k fanout-1k-json64; do
    keep_median melody "$scenario" server_cpu_us_per_delivery
    keep_median melody "$scenario-deflate" server_cpu_us_per_delivery
done
NOTES+=("Throughput scenarios: median of $ROUNDS rounds that alternate the servers (${SERVERS[*]}; each round's JSON is kept as \`*.roundN.json\`; for the compression section, the round with the median server CPU per delivery); idle and churn: one run each.")

# Node ws (optional): one round only, it is far slower.
if [[ "$NODE_READY" == 1 ]]; then
    WS_SERVER=$NODE_SERVERS/ws.js
    if start_server node-broadcast node "$WS_SERVER" broadcast; then
        memory_suite node /
        stop_server
    fi
    if start_server node-broadcast node "$WS_SERVER" broadcast; then
        broadcast_suite node /
        stop_server
    fi
    if start_server node-echo node "$WS_SERVER" echo; then
        echo_suite node /
        stop_server
    fi
    if [[ "$COMPRESSION" == 1 ]]; then
        if start_server node-deflate env DEFLATE=1 node "$WS_SERVER" broadcast; then
            idle_deflate node /
            stop_server
        fi
        if start_server node-deflate env DEFLATE=1 node "$WS_SERVER" broadcast; then
            compression_suite node /
            stop_server
        fi
    fi
fi

COMMAND="bash bench/compare.sh"
[[ "$QUICK" == 1 ]] && COMMAND="QUICK=1 $COMMAND"
NOTES+=("Server pinned with \`taskset -c $SERVER_CPU\`, load generator with \`taskset -c $LOAD_CPU\` (one current-thread runtime). Durations: fan-out publishes for ${FANOUT_SECS} s, fixed-rate fan-out ${RATE_SECS} s, echo ${ECHO_SECS} s, churn and topic churn ${CHURN_SECS} s, idle holds ${IDLE_CONNS} connections for ${IDLE_HOLD} s.")
NOTE_ARGS=()
for n in "${NOTES[@]}"; do NOTE_ARGS+=(--note "$n"); done
"$BENCH" report --dir "$RESULTS" --out "$OUT" --command "$COMMAND" \
    --date "$(date -u '+%Y-%m-%d %H:%M UTC')" --charts "${CHARTS:-$(dirname "$OUT")}" "${NOTE_ARGS[@]}"
if [[ -f "$LOGS/previous.md" ]]; then
    bash "$ROOT/bench/before_after.sh" "$LOGS/previous.md" "$OUT" >>"$OUT"
fi
log "wrote $OUT (raw results in $RESULTS) after $SECONDS s"
cat "$OUT"

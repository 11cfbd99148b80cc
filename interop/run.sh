#!/usr/bin/env bash
# Runs every client in interop/*/run.sh against Warren (built here, release, on a free port with
# a fresh data dir) or, with --url, against another broker. See interop/README.md.
#
#   interop/run.sh                      # against Warren
#   interop/run.sh --url amqp://guest:guest@127.0.0.1:5672/%2f
#   CLIENTS="rust python" interop/run.sh
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

URL=""
while [ $# -gt 0 ]; do
    case "$1" in
        --url) URL="${2:?--url needs a value}"; shift 2 ;;
        --url=*) URL="${1#--url=}"; shift ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

export INTEROP_CACHE="$ROOT/target/interop"
LOGS="$INTEROP_CACHE/logs"
mkdir -p "$LOGS"
export INTEROP_RUN_ID="${INTEROP_RUN_ID:-$(date +%s)-$$}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/warren-interop.XXXXXX")"

# Waits until HOST:PORT accepts TCP connections (at most $3 seconds).
wait_port() {
    local host="$1" port="$2" secs="${3:-60}" i
    for ((i = 0; i < secs * 10; i++)); do
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# A CA, a server certificate (127.0.0.1, localhost) and a client certificate (CN=guest) in $1.
make_certificates() {
    local d="$1" ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    if ! command -v openssl >/dev/null; then
        echo "installing Debian's openssl (to make the TLS scenarios' certificates)" >&2
        { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssl ||
            { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssl; }
        } >&2 || return 1
    fi
    mkdir -p "$d" && (
        cd "$d" || exit 1
        openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 2 \
            -subj "/CN=Warren interop CA" &&
        openssl req "${ec[@]}" -keyout server.key -out server.csr -subj "/CN=localhost" &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > server.ext &&
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile server.ext -out server.pem &&
        openssl req "${ec[@]}" -keyout client.key -out client.csr -subj "/O=Warren interop/CN=guest" &&
        printf 'extendedKeyUsage=clientAuth\n' > client.ext &&
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile client.ext -out client.pem
    ) >/dev/null 2>&1
}

cleanup() {
    if [ -f "$WORK/warren.pid" ]; then
        local pid
        pid="$(cat "$WORK/warren.pid")"
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "$URL" ]; then
    # WARREN_BIN: a warren binary built already (CI passes the static build, saving a second
    # release build); otherwise a release build of this tree.
    if [ -n "${WARREN_BIN:-}" ]; then
        WARREN_BIN="$(cd "$(dirname "$WARREN_BIN")" && pwd)/$(basename "$WARREN_BIN")"
    else
        echo "building warren (release)..." >&2
        cargo build --release --locked --quiet --bin warren >&2 || { echo "total: 0 passed, 1 failed"; exit 1; }
        WARREN_BIN="$ROOT/target/release/warren"
    fi
    PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    # The management API on a port of its own (the HTTP clients: interop/rabbitmqadmin).
    MPORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    mkdir -p "$WORK/data"
    # AMQP over TLS beside the plaintext port: a CA, a server certificate for 127.0.0.1 and
    # localhost, and a client certificate whose CN is `guest` (for SASL EXTERNAL), made now with
    # openssl (no key is committed). Clients run their `tls*` scenarios when AMQPS_URL is set.
    TLS_ARGS=""
    if make_certificates "$WORK/tls"; then
        TLS_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
        TLS_ARGS="--amqps-listen 127.0.0.1:$TLS_PORT --tls-cert $WORK/tls/server.pem --tls-key $WORK/tls/server.key --tls-ca $WORK/tls/ca.pem --tls-verify-peer"
        export AMQPS_URL="amqps://guest:guest@127.0.0.1:$TLS_PORT/%2f"
        export AMQPS_CACERT="$WORK/tls/ca.pem" AMQPS_CERT="$WORK/tls/client.pem" AMQPS_KEY="$WORK/tls/client.key"
    else
        echo "openssl could not make test certificates: TLS scenarios will be skipped" >&2
    fi
    # The broker is started (and restarted) by this script, in its own session so that a
    # client's timeout cannot kill it; its pid lives in $WORK/warren.pid.
    cat > "$WORK/start-warren" <<EOF
#!/usr/bin/env bash
setsid "$WARREN_BIN" --listen 127.0.0.1:$PORT --management-listen 127.0.0.1:$MPORT --data-dir "$WORK/data" $TLS_ARGS \
    >>"$LOGS/warren.log" 2>&1 </dev/null &
echo \$! > "$WORK/warren.pid"
for _ in \$(seq 600); do
    if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then exit 0; fi
    kill -0 "\$(cat "$WORK/warren.pid")" 2>/dev/null || { echo "warren exited; see $LOGS/warren.log" >&2; exit 1; }
    sleep 0.1
done
echo "warren did not listen on $PORT" >&2
exit 1
EOF
    # BROKER_RESTART: a clean stop (SIGTERM: 320 to every connection, journal flushed), or with
    # INTEROP_RESTART_SIGNAL=KILL a crash, then the same binary on the same port and data dir.
    cat > "$WORK/restart-broker" <<EOF
#!/usr/bin/env bash
pid="\$(cat "$WORK/warren.pid")"
kill -${INTEROP_RESTART_SIGNAL:-TERM} "\$pid" 2>/dev/null
for _ in \$(seq 300); do kill -0 "\$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "\$pid" 2>/dev/null && { echo "warren did not stop" >&2; exit 1; }
exec "$WORK/start-warren"
EOF
    chmod +x "$WORK/start-warren" "$WORK/restart-broker"
    : > "$LOGS/warren.log"
    "$WORK/start-warren" || { echo "total: 0 passed, 1 failed"; exit 1; }
    export AMQP_URL="amqp://guest:guest@127.0.0.1:$PORT/%2f"
    export MANAGEMENT_URL="http://127.0.0.1:$MPORT"
    export BROKER_RESTART="$WORK/restart-broker"
    BROKER="Warren $(git -C "$ROOT" describe --always --dirty 2>/dev/null) on 127.0.0.1:$PORT"
else
    export AMQP_URL="$URL"
    # The HTTP API of another broker: MANAGEMENT_URL, or port 15672 on the AMQP URL's host.
    if [ -z "${MANAGEMENT_URL:-}" ]; then
        mhost="${URL#*://}"; mhost="${mhost#*@}"; mhost="${mhost%%/*}"; mhost="${mhost%:*}"
        export MANAGEMENT_URL="http://$mhost:15672"
    fi
    export BROKER_RESTART=""
    # The local Debian RabbitMQ can be restarted (as root); any other broker cannot.
    hostport="${URL#*://}"; hostport="${hostport#*@}"; hostport="${hostport%%/*}"
    host="${hostport%:*}"; port="${hostport##*:}"; [ "$port" = "$host" ] && port=5672
    if [[ "$host" =~ ^(127\.0\.0\.1|localhost)$ ]] && command -v rabbitmqctl >/dev/null \
        && rabbitmqctl -q status >/dev/null 2>&1; then
        cat > "$WORK/restart-broker" <<EOF
#!/usr/bin/env bash
rabbitmqctl -q stop_app >/dev/null && rabbitmqctl -q start_app >/dev/null || exit 1
for _ in \$(seq 600); do
    if (exec 3<>/dev/tcp/$host/$port) 2>/dev/null; then exit 0; fi
    sleep 0.1
done
exit 1
EOF
        chmod +x "$WORK/restart-broker"
        export BROKER_RESTART="$WORK/restart-broker"
        BROKER="RabbitMQ $(rabbitmqctl -q version 2>/dev/null) at $hostport"
    else
        BROKER="$URL (no restart)"
    fi
fi
echo "broker: $BROKER" >&2

if [ -n "${CLIENTS:-}" ]; then
    dirs=""
    for c in $CLIENTS; do dirs="$dirs interop/$c"; done
else
    dirs="$(ls -d interop/*/ 2>/dev/null | sed 's#/$##')"
fi

SUMMARY_RE='^[A-Za-z0-9_.-]+: [0-9]+ passed, [0-9]+ failed$'
passed=0
failed=0
summaries=()
for dir in $dirs; do
    client="$(basename "$dir")"
    [ -x "$dir/run.sh" ] || { [ -n "${CLIENTS:-}" ] && summaries+=("$client: 0 passed, 1 failed") && failed=$((failed + 1)); continue; }
    log="$LOGS/$client.log"
    echo "== $client" >&2
    start=$(date +%s)
    timeout --kill-after=10 "${INTEROP_CLIENT_TIMEOUT:-900}" "$dir/run.sh" 2>"$log.stderr" | tee "$log" \
        | grep -E --line-buffered '^(FAIL|SKIP) ' >&2
    status=${PIPESTATUS[0]}
    echo "   ($client took $(($(date +%s) - start)) s, exit $status; log: $log, $log.stderr)" >&2
    found=0
    while IFS= read -r line; do
        summaries+=("$line")
        p="${line#*: }"; p="${p%% passed*}"
        f="${line##*passed, }"; f="${f%% failed}"
        passed=$((passed + p))
        failed=$((failed + f))
        found=1
    done < <(grep -E "$SUMMARY_RE" "$log")
    if [ "$found" = 0 ] || { [ "$status" != 0 ] && ! grep -qE '^FAIL ' "$log"; }; then
        summaries+=("$client: 0 passed, 1 failed")
        failed=$((failed + 1))
        echo "   $client exited $status without reporting its failures; see $log.stderr" >&2
    fi
done

# A scenario x library table (markdown) of this run, for interop/README.md.
TABLE="$INTEROP_CACHE/results.md"
{
    echo "Broker: $BROKER ($(date -u +%Y-%m-%d))"
    echo
    for dir in $dirs; do cat "$LOGS/$(basename "$dir").log" 2>/dev/null; done | awk -v re="$SUMMARY_RE" '
        $1 ~ /^(PASS|FAIL|SKIP)$/ {
            name = $2; sub(/:$/, "", name)
            if (!(name in seen)) { seen[name] = 1; order[++n] = name }
            pending[name] = $1; next
        }
        $0 ~ re {
            lib = $1; sub(/:$/, "", lib); libs[++m] = lib
            for (k in pending) cell[k, lib] = pending[k]
            delete pending
        }
        END {
            printf "| scenario |"; for (j = 1; j <= m; j++) printf " %s |", libs[j]; print ""
            printf "|---|"; for (j = 1; j <= m; j++) printf "---|"; print ""
            for (i = 1; i <= n; i++) {
                printf "| `%s` |", order[i]
                for (j = 1; j <= m; j++) { c = cell[order[i], libs[j]]; printf " %s |", (c == "" ? "" : c) }
                print ""
            }
        }'
} > "$TABLE"

echo "broker: $BROKER"
for s in "${summaries[@]}"; do echo "$s"; done
echo "table: $TABLE" >&2
echo "total: $passed passed, $failed failed"
[ "$failed" = 0 ]

#!/usr/bin/env bash
# Single-node QuestDB server for tests and development: a real server that accepts the InfluxDB
# v2 write API (POST /api/v2/write, line protocol) and answers SQL on /exec, run straight from
# the Maven Central jar (org.questdb:questdb): no Docker, no binary tarball.
#
# It stands in for InfluxDB 2.7, which cannot be installed here: it exercises our line protocol
# writer over HTTP, not Flux. Only the HTTP port listens (127.0.0.1); PG wire, ILP/TCP, ILP/UDP
# and the health ("min") server are disabled, telemetry is off.
#
# Usage: scripts/questdb.sh <command>
#   fetch          resolve the server jar into the cache (skipped when the cache is complete)
#   start          fetch if needed, start in the background, wait until ready (no-op if running)
#   stop [--wipe]  SIGTERM (SIGKILL after QUESTDB_STOP_TIMEOUT s); --wipe also deletes the data dir
#   wipe           stop, then delete the data dir
#   restart        stop + start, keeping the data
#   status         exit 0 if the server runs and answers SQL on /exec
#   logs [N]       print the last N (default 100) lines of the server log
#   url            print the HTTP base URL (InfluxDB v2 write API and /exec SQL API)
#
# Environment (all optional):
#   QUESTDB_VERSION        server version (default: the pinned one below)
#   VITALTWIN_CACHE        jar cache root (default ~/.cache/vitaltwin); the jar goes to
#                          questdb-<ver>/lib
#   QUESTDB_DATA_DIR       data dir: server root (conf, db), logs, pid file (default
#                          <repo>/var/questdb)
#   QUESTDB_HTTP_PORT      HTTP port on 127.0.0.1 (default 9000)
#   QUESTDB_HEAP_OPTS      JVM heap (default "-Xms128m -Xmx512m"); QuestDB keeps its data
#                          off-heap (mmap), so the heap stays small
#   QUESTDB_READY_TIMEOUT  seconds to wait for readiness (default 90)
#   QUESTDB_STOP_TIMEOUT   seconds to wait after SIGTERM before SIGKILL (default 30)
#   PYTHON                 interpreter for the readiness probe (default <repo>/.venv/bin/python,
#                          else python3; standard library only)
#   JAVA_HOME              JVM to use (default: java on PATH); Java 17 or newer
#   MAVEN_OPTS             passed to mvn, e.g. -Dmaven.repo.local=/some/dir
set -euo pipefail

# 9.3.4: the newest release on Maven Central when this was written (its classes are Java 17
# bytecode, class file version 61, and it runs on the JDK 17 installed here).
QUESTDB_VERSION="${QUESTDB_VERSION:-9.3.4}"
DEPENDENCY_PLUGIN_VERSION="3.8.1"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICE="questdb.sh"
# shellcheck source=lib/service.sh
source "$REPO/scripts/lib/service.sh"
service_pid() { server_pid; }
make_data_dirs() { mkdir -p "$CONF_DIR" "$LOG_DIR"; }
CACHE_ROOT="${VITALTWIN_CACHE:-$HOME/.cache/vitaltwin}"
QDB_CACHE="$CACHE_ROOT/questdb-$QUESTDB_VERSION"
LIB_DIR="$QDB_CACHE/lib"
JAR="$LIB_DIR/questdb-$QUESTDB_VERSION.jar"
MARKER="$QDB_CACHE/COMPLETE" # list of jar names, written last, only after a successful fetch

HOST="127.0.0.1"
PORT="${QUESTDB_HTTP_PORT:-9000}"
DATA_DIR="$(realpath -m "${QUESTDB_DATA_DIR:-$REPO/var/questdb}")"
ROOT_DIR="$DATA_DIR/root" # QuestDB's root (-d): conf/, db/, public/ (web console), import/
CONF_DIR="$ROOT_DIR/conf"
LOG_DIR="$DATA_DIR/logs"
PID_FILE="$DATA_DIR/questdb.pid"
OWNER_MARK="$DATA_DIR/.vitaltwin-questdb" # wipe refuses to delete a dir without it
READY_TIMEOUT="${QUESTDB_READY_TIMEOUT:-90}"
STOP_TIMEOUT="${QUESTDB_STOP_TIMEOUT:-30}"
HEAP_OPTS="${QUESTDB_HEAP_OPTS:--Xms128m -Xmx512m}"
MAIN_CLASS="io.questdb/io.questdb.ServerMain" # module/class: the jar is a named module
if [[ -n "${JAVA_HOME:-}" ]]; then JAVA="$JAVA_HOME/bin/java"; else JAVA="java"; fi
if [[ -n "${PYTHON:-}" ]]; then
    PY="$PYTHON"
elif [[ -x "$REPO/.venv/bin/python" ]]; then
    PY="$REPO/.venv/bin/python"
else
    PY="python3"
fi

# ---------------------------------------------------------------------------------------- fetch

cache_complete() {
    [[ -f "$MARKER" && -d "$LIB_DIR" ]] || return 1
    local jar
    while IFS= read -r jar; do
        [[ -z "$jar" || -s "$LIB_DIR/$jar" ]] || return 1
    done <"$MARKER"
}

cmd_fetch() {
    if cache_complete; then
        log "jar for QuestDB $QUESTDB_VERSION already cached in $LIB_DIR"
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found (needed once to fetch the QuestDB jar)"
    log "fetching QuestDB $QUESTDB_VERSION from Maven Central into $LIB_DIR ..."
    mkdir -p "$QDB_CACHE"
    local work staging
    work="$(mktemp -d)"
    staging="$QDB_CACHE/lib.partial.$$"
    # shellcheck disable=SC2064
    trap "rm -rf '$work' '$staging'" EXIT
    rm -rf "$staging"
    # The server is one self-contained jar (its native libraries are inside); it has no runtime
    # dependencies. --strict-checksums: a corrupt download fails instead of being cached.
    if ! (cd "$work" && mvn -B -q --strict-checksums \
        "org.apache.maven.plugins:maven-dependency-plugin:$DEPENDENCY_PLUGIN_VERSION:copy" \
        -Dartifact="org.questdb:questdb:$QUESTDB_VERSION:jar" \
        -DoutputDirectory="$staging" >"$work/mvn.log" 2>&1); then
        tail -n 40 "$work/mvn.log" >&2
        die "maven could not resolve org.questdb:questdb:$QUESTDB_VERSION"
    fi
    [[ -s "$staging/questdb-$QUESTDB_VERSION.jar" ]] ||
        die "maven finished but questdb-$QUESTDB_VERSION.jar is missing"
    rm -rf "$LIB_DIR"
    mv "$staging" "$LIB_DIR"
    (cd "$LIB_DIR" && ls -1 -- *.jar) >"$MARKER.tmp"
    mv "$MARKER.tmp" "$MARKER"
    rm -rf "$work"
    trap - EXIT
    log "cached $(wc -l <"$MARKER") jar ($(du -sh "$LIB_DIR" | cut -f1)) in $LIB_DIR"
}

# ------------------------------------------------------------------------------------- helpers

server_pid() { # prints the pid of our server if it is alive, else fails
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    # guard against pid reuse: the process must be a QuestDB server using our root
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$MAIN_CLASS -d $ROOT_DIR" ||
        return 1
    echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Readiness: the SQL endpoint answers `select 1` with 200 (the HTTP server listens before the
# engine is ready; /exec only answers once it is).
probe_ready() {
    local limit=()
    command -v timeout >/dev/null && limit=(timeout 20)
    "${limit[@]}" "$PY" - "$HOST" "$PORT" <<'EOF' >/dev/null 2>&1
import json
import sys
import urllib.request

host, port = sys.argv[1], int(sys.argv[2])
url = f"http://{host}:{port}/exec?query=select%201"
with urllib.request.urlopen(url, timeout=5) as resp:
    body = json.load(resp)
    sys.exit(0 if resp.status == 200 and body.get("dataset") == [[1]] else 1)
EOF
}

is_ready() { port_open "$PORT" && probe_ready; }

write_config() {
    cat >"$CONF_DIR/server.conf" <<EOF
# Generated by scripts/questdb.sh on every start; edits are overwritten.
# HTTP: REST SQL API (/exec), InfluxDB line protocol over HTTP (/write, /api/v2/write),
# web console. Loopback only.
http.net.bind.to=$HOST:$PORT
http.enabled=true
line.http.enabled=true
# Nothing else listens.
http.min.enabled=false
pg.enabled=false
line.tcp.enabled=false
line.udp.enabled=false
telemetry.enabled=false
telemetry.hide.tables=true
metrics.enabled=false
# Small tables on a small machine: the defaults reserve 16 MiB per column file.
cairo.o3.column.memory.size=128K
cairo.system.writer.data.append.page.size=128K
cairo.writer.data.append.page.size=128K
cairo.writer.data.index.key.append.page.size=128K
cairo.writer.data.index.value.append.page.size=128K
EOF
    printf 'QUESTDB_VERSION=%s\nQUESTDB_HTTP_PORT=%s\n' "$QUESTDB_VERSION" "$PORT" \
        >"$DATA_DIR/server.env"
}

print_log_tail() {
    local f="$LOG_DIR/questdb.out"
    [[ -s "$f" ]] || return 0
    log "---- last lines of $f ----"
    tail -n "${1:-40}" "$f" >&2
}

wait_ready() { # wait_ready <pid> <started by us: 0|1>
    local pid="$1" ours="$2" deadline=$((SECONDS + READY_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! alive "$pid"; then
            print_log_tail
            rm -f "$PID_FILE"
            die "server process $pid exited during startup"
        fi
        if is_ready; then return 0; fi
        sleep 0.5
    done
    print_log_tail
    if ((ours)); then
        log "not ready after ${READY_TIMEOUT}s; stopping the server this call started"
        cmd_stop
    fi
    die "server (pid $pid) not ready on $HOST:$PORT after ${READY_TIMEOUT}s"
}

# ------------------------------------------------------------------------------------ commands

cmd_start() {
    local pid t0=$SECONDS
    lock_data_dir
    if pid="$(server_pid)"; then
        if [[ -f "$DATA_DIR/server.env" ]] &&
            ! grep -qx "QUESTDB_HTTP_PORT=$PORT" "$DATA_DIR/server.env"; then
            die "a server for $DATA_DIR already runs (pid $pid) on another port: $(grep QUESTDB_HTTP_PORT= "$DATA_DIR/server.env")"
        fi
        log "already running (pid $pid); waiting until ready"
        wait_ready "$pid" 0
        log "ready on http://$HOST:$PORT"
        return 0
    fi
    rm -f "$PID_FILE"
    port_open "$PORT" && die "port $HOST:$PORT is in use by another process"
    command -v "$JAVA" >/dev/null || die "java not found (Java 17 or newer is needed)"
    cmd_fetch
    write_config
    log "starting QuestDB $QUESTDB_VERSION on http://$HOST:$PORT, data $ROOT_DIR"
    [[ -f "$LOG_DIR/questdb.out" ]] && mv -f "$LOG_DIR/questdb.out" "$LOG_DIR/questdb.out.1"
    local detach=()
    command -v setsid >/dev/null && detach=(setsid)
    # QuestDB logs to stdout (its default conf/log.conf); -n: ignore SIGHUP.
    # setsid: its own session, so a Ctrl-C aimed at the caller does not reach the server.
    # shellcheck disable=SC2086
    nohup "${detach[@]}" "$JAVA" $HEAP_OPTS -XX:+UseParallelGC -XX:+ExitOnOutOfMemoryError \
        -XX:ErrorFile="$LOG_DIR/hs_err_pid%p.log" -Djava.awt.headless=true \
        -p "$JAR" -m "$MAIN_CLASS" -d "$ROOT_DIR" -n \
        >"$LOG_DIR/questdb.out" 2>&1 </dev/null 9>&- &
    pid=$!
    echo "$pid" >"$PID_FILE"
    wait_ready "$pid" 1
    log "ready on http://$HOST:$PORT (pid $pid) in $((SECONDS - t0))s"
}

cmd_status() {
    local pid
    if pid="$(server_pid)" && is_ready; then
        log "running and ready on http://$HOST:$PORT (pid $pid, data $ROOT_DIR)"
        return 0
    fi
    if pid="$(server_pid)"; then
        log "running (pid $pid) but not ready on $HOST:$PORT"
    else
        log "not running"
    fi
    return 1
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

main() {
    local cmd="${1:-}"
    shift || true
    case "$cmd" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop "$@" ;;
    wipe) cmd_stop --wipe ;;
    restart) cmd_stop && cmd_start ;;
    status) cmd_status ;;
    logs) tail -n "${1:-100}" "$LOG_DIR/questdb.out" ;;
    url) echo "http://$HOST:$PORT" ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"

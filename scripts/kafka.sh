#!/usr/bin/env bash
# Single-node Apache Kafka broker (KRaft, combined broker+controller) for tests and development,
# run straight from the Maven Central jars: no Docker, no binary tarball.
#
# Usage: scripts/kafka.sh <command>
#   fetch          resolve the broker jars into the cache (skipped when the cache is complete)
#   start          fetch if needed, format storage once, start in the background, wait until ready
#   stop [--wipe]  SIGTERM (SIGKILL after KAFKA_STOP_TIMEOUT s); --wipe also deletes the data dir
#   wipe           stop, then delete the data dir
#   restart        stop + start, keeping the data
#   kill9          SIGKILL the broker (crash tests); the data is kept
#   status         exit 0 if the broker runs and answers a metadata request
#   logs [N]       print the last N (default 100) lines of the broker log
#   bootstrap      print the bootstrap address
#
# Environment (all optional):
#   KAFKA_VERSION          broker version (default: the pinned one below)
#   VITALTWIN_CACHE        jar cache root (default ~/.cache/vitaltwin); jars go to kafka-<ver>/lib
#   KAFKA_DATA_DIR         data dir: config, logs, pid file, log segments (default <repo>/var/kafka)
#   KAFKA_PORT             PLAINTEXT listener port on 127.0.0.1 (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port on 127.0.0.1 (default 9093)
#   KAFKA_HEAP_OPTS        JVM heap (default "-Xms256m -Xmx512m")
#   KAFKA_READY_TIMEOUT    seconds to wait for readiness (default 90)
#   KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default 30)
#   PYTHON                 interpreter for the readiness probe (default <repo>/.venv/bin/python,
#                          else python3); uses kafka-python when importable, else a stdlib probe
#   JAVA_HOME              JVM to use (default: java on PATH)
#   MAVEN_OPTS             passed to mvn, e.g. -Dmaven.repo.local=/some/dir
set -euo pipefail

# Kafka 3.9.x: the last line that keeps the old protocol versions aiokafka 0.14 may use
# (Kafka 4.0 removed them, KIP-896), and the last line with log4j 1.x (reload4j) logging.
KAFKA_VERSION="${KAFKA_VERSION:-3.9.2}"
SCALA_BINARY="2.13"
SLF4J_VERSION="1.7.36"    # the slf4j-api version kafka 3.9 depends on
RELOAD4J_VERSION="1.2.25" # as shipped in the 3.9 binary distribution
DEPENDENCY_PLUGIN_VERSION="3.8.1"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICE="kafka.sh"
# shellcheck source=lib/service.sh
source "$REPO/scripts/lib/service.sh"
service_pid() { broker_pid; }
make_data_dirs() { mkdir -p "$CONF_DIR" "$LOG_DIR" "$SEGMENTS_DIR"; }
CACHE_ROOT="${VITALTWIN_CACHE:-$HOME/.cache/vitaltwin}"
KAFKA_CACHE="$CACHE_ROOT/kafka-$KAFKA_VERSION"
LIB_DIR="$KAFKA_CACHE/lib"
MARKER="$KAFKA_CACHE/COMPLETE" # list of jar names, written last, only after a successful fetch

HOST="127.0.0.1"
PORT="${KAFKA_PORT:-9092}"
CTRL_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
DATA_DIR="$(realpath -m "${KAFKA_DATA_DIR:-$REPO/var/kafka}")"
CONF_DIR="$DATA_DIR/config"
LOG_DIR="$DATA_DIR/logs"
SEGMENTS_DIR="$DATA_DIR/kraft-logs"
PID_FILE="$DATA_DIR/kafka.pid"
OWNER_MARK="$DATA_DIR/.vitaltwin-kafka" # wipe refuses to delete a dir without it
READY_TIMEOUT="${KAFKA_READY_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
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
        log "jars for Kafka $KAFKA_VERSION already cached in $LIB_DIR"
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found (needed once to fetch the Kafka jars)"
    log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIB_DIR ..."
    mkdir -p "$KAFKA_CACHE"
    local work staging
    work="$(mktemp -d)"
    staging="$KAFKA_CACHE/lib.partial.$$"
    # shellcheck disable=SC2064
    trap "rm -rf '$work' '$staging'" EXIT
    cat >"$work/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>vitaltwin.local</groupId>
  <artifactId>kafka-broker-classpath</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_$SCALA_BINARY</artifactId>
      <version>$KAFKA_VERSION</version>
      <exclusions>
        <!-- one slf4j binding only (reload4j, below), as in the binary distribution -->
        <exclusion><groupId>ch.qos.logback</groupId><artifactId>*</artifactId></exclusion>
        <exclusion><groupId>org.slf4j</groupId><artifactId>slf4j-log4j12</artifactId></exclusion>
        <exclusion><groupId>log4j</groupId><artifactId>log4j</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>$SLF4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>ch.qos.reload4j</groupId>
      <artifactId>reload4j</artifactId>
      <version>$RELOAD4J_VERSION</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>$DEPENDENCY_PLUGIN_VERSION</version>
      </plugin>
    </plugins>
  </build>
</project>
EOF
    rm -rf "$staging"
    if ! (cd "$work" && mvn -B -q dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$staging" >"$work/mvn.log" 2>&1); then
        tail -n 40 "$work/mvn.log" >&2
        die "maven could not resolve org.apache.kafka:kafka_$SCALA_BINARY:$KAFKA_VERSION"
    fi
    compgen -G "$staging/kafka_$SCALA_BINARY-$KAFKA_VERSION.jar" >/dev/null ||
        die "maven finished but kafka_$SCALA_BINARY-$KAFKA_VERSION.jar is missing"
    rm -rf "$LIB_DIR"
    mv "$staging" "$LIB_DIR"
    (cd "$LIB_DIR" && ls -1 -- *.jar) >"$MARKER.tmp"
    mv "$MARKER.tmp" "$MARKER"
    rm -rf "$work"
    trap - EXIT
    log "cached $(wc -l <"$MARKER") jars ($(du -sh "$LIB_DIR" | cut -f1)) in $LIB_DIR"
}

# ------------------------------------------------------------------------------------- helpers

broker_pid() { # prints the pid of our broker if it is alive, else fails
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    # guard against pid reuse: the process must be a kafka.Kafka using our config
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $CONF_DIR/server.properties" ||
        return 1
    echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

wait_ports_closed() {
    local deadline=$((SECONDS + 30))
    while port_open "$PORT" || port_open "$CTRL_PORT"; do
        ((SECONDS < deadline)) || die "ports $PORT/$CTRL_PORT still open 30s after SIGKILL"
        sleep 0.1
    done
}

# Readiness: a Metadata request must succeed and list this broker (it is unfenced).
probe_ready() {
    local limit=()
    command -v timeout >/dev/null && limit=(timeout 20)
    "${limit[@]}" "$PY" - "$HOST" "$PORT" <<'EOF' >/dev/null 2>&1
import socket
import struct
import sys

host, port = sys.argv[1], int(sys.argv[2])
try:
    from kafka import KafkaAdminClient
except ImportError:
    KafkaAdminClient = None

if KafkaAdminClient is not None:
    admin = KafkaAdminClient(
        bootstrap_servers=f"{host}:{port}", request_timeout_ms=5000, client_id="kafka.sh-probe"
    )
    try:
        admin.list_topics()
        assert admin.describe_cluster()["brokers"], "no brokers in metadata"
    finally:
        admin.close()
    sys.exit(0)

# No kafka-python: Metadata v0 request (all topics) over a raw socket.
client_id = b"kafka.sh-probe"
body = struct.pack(">hhih", 3, 0, 1, len(client_id)) + client_id + struct.pack(">i", 0)
with socket.create_connection((host, port), timeout=5) as s:
    s.sendall(struct.pack(">i", len(body)) + body)
    head = s.recv(4, socket.MSG_WAITALL)
    size = struct.unpack(">i", head)[0]
    resp = b""
    while len(resp) < size:
        chunk = s.recv(size - len(resp))
        if not chunk:
            raise SystemExit(1)
        resp += chunk
(correlation_id, n_brokers) = struct.unpack(">ii", resp[:8])
sys.exit(0 if correlation_id == 1 and n_brokers >= 1 else 1)
EOF
}

is_ready() { port_open "$PORT" && probe_ready; }

write_config() {
    cat >"$CONF_DIR/server.properties" <<EOF
# Generated by scripts/kafka.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CTRL_PORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CTRL_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$SEGMENTS_DIR

# single node: every internal topic has one replica
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
# fewer internal partitions than the defaults (50): faster first group join / transaction
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true

# compaction (faust table changelogs are compacted topics)
log.cleaner.enable=true
log.cleaner.threads=1
log.cleaner.backoff.ms=1000
log.cleaner.dedupe.buffer.size=33554432

# a small dev machine
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
# after a kill -9 the controller refuses the new registration until the old session expires
# (default 9 s); a short session makes crash-restart tests fast
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
log.retention.hours=168
EOF
    cat >"$CONF_DIR/log4j.properties" <<EOF
# Generated by scripts/kafka.sh: everything goes to files in $LOG_DIR, nothing to the terminal.
log4j.rootLogger=INFO, serverAppender

log4j.appender.serverAppender=org.apache.log4j.RollingFileAppender
log4j.appender.serverAppender.File=$LOG_DIR/server.log
log4j.appender.serverAppender.MaxFileSize=20MB
log4j.appender.serverAppender.MaxBackupIndex=3
log4j.appender.serverAppender.layout=org.apache.log4j.PatternLayout
log4j.appender.serverAppender.layout.ConversionPattern=[%d] %p %m (%c)%n

log4j.appender.stateChangeAppender=org.apache.log4j.RollingFileAppender
log4j.appender.stateChangeAppender.File=$LOG_DIR/state-change.log
log4j.appender.stateChangeAppender.MaxFileSize=10MB
log4j.appender.stateChangeAppender.MaxBackupIndex=2
log4j.appender.stateChangeAppender.layout=org.apache.log4j.PatternLayout
log4j.appender.stateChangeAppender.layout.ConversionPattern=[%d] %p %m (%c)%n

log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.network.RequestChannel\$=WARN
log4j.logger.kafka.log.LogCleaner=INFO
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.state.change.logger=INFO, stateChangeAppender
log4j.additivity.state.change.logger=false
EOF
    printf 'KAFKA_VERSION=%s\nKAFKA_PORT=%s\nKAFKA_CONTROLLER_PORT=%s\n' \
        "$KAFKA_VERSION" "$PORT" "$CTRL_PORT" >"$DATA_DIR/broker.env"
}

java_cmd() { # java_cmd <main class> <args...>: fills the JAVA_CMD array
    # shellcheck disable=SC2206
    JAVA_CMD=("$JAVA" $HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
        -Dkafka.logs.dir="$LOG_DIR" -Dlog4j.configuration="file:$CONF_DIR/log4j.properties"
        -cp "$LIB_DIR/*" "$@")
}

format_storage() {
    [[ -f "$SEGMENTS_DIR/meta.properties" ]] && return 0
    local cluster_id
    # Kafka's own Uuid.randomUuid() never hands out an id that starts with
    # '-': the storage tool's argument parser would read it as an option
    # (a CI run failed on exactly that, about one start in 64).
    cluster_id="$("$PY" -c '
import base64, uuid
while True:
    text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not text.startswith("-"):
        print(text)
        break
')"
    log "formatting storage in $SEGMENTS_DIR (cluster id $cluster_id)"
    java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$CONF_DIR/server.properties"
    if ! "${JAVA_CMD[@]}" >"$LOG_DIR/format.out" 2>&1; then
        cat "$LOG_DIR/format.out" >&2
        die "storage format failed"
    fi
}

print_log_tail() {
    local f
    for f in "$LOG_DIR/kafka.out" "$LOG_DIR/server.log"; do
        [[ -s "$f" ]] || continue
        log "---- last lines of $f ----"
        tail -n "${1:-40}" "$f" >&2
    done
}

wait_ready() { # wait_ready <pid> <started by us: 0|1>
    local pid="$1" ours="$2" deadline=$((SECONDS + READY_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! alive "$pid"; then
            print_log_tail
            rm -f "$PID_FILE"
            die "broker process $pid exited during startup"
        fi
        if is_ready; then return 0; fi
        sleep 0.5
    done
    print_log_tail
    if ((ours)); then
        log "not ready after ${READY_TIMEOUT}s; stopping the broker this call started"
        cmd_stop
    fi
    die "broker (pid $pid) not ready on $HOST:$PORT after ${READY_TIMEOUT}s"
}

# ------------------------------------------------------------------------------------ commands

cmd_start() {
    local pid t0=$SECONDS
    lock_data_dir
    if pid="$(broker_pid)"; then
        if [[ -f "$DATA_DIR/broker.env" ]] && ! grep -qx "KAFKA_PORT=$PORT" "$DATA_DIR/broker.env"; then
            die "a broker for $DATA_DIR already runs (pid $pid) on another port: $(grep KAFKA_PORT= "$DATA_DIR/broker.env")"
        fi
        log "already running (pid $pid); waiting until ready"
        wait_ready "$pid" 0
        log "ready on $HOST:$PORT"
        return 0
    fi
    rm -f "$PID_FILE"
    # A broker that was just stopped or killed may still hold its sockets for a moment.
    local free_by=$((SECONDS + 10))
    while { port_open "$PORT" || port_open "$CTRL_PORT"; } && ((SECONDS < free_by)); do sleep 0.2; done
    port_open "$PORT" && die "port $HOST:$PORT is in use by another process"
    port_open "$CTRL_PORT" && die "controller port $HOST:$CTRL_PORT is in use by another process"
    command -v "$JAVA" >/dev/null || die "java not found (Java 17 is needed)"
    cmd_fetch
    write_config
    format_storage
    log "starting Kafka $KAFKA_VERSION (KRaft) on $HOST:$PORT, controller $HOST:$CTRL_PORT, data $DATA_DIR"
    # Broker logs go to $LOG_DIR via log4j; kafka.out only gets JVM-level output (crashes).
    # setsid: its own session, so a Ctrl-C aimed at the caller does not reach the broker.
    java_cmd kafka.Kafka "$CONF_DIR/server.properties"
    [[ -f "$LOG_DIR/kafka.out" ]] && mv -f "$LOG_DIR/kafka.out" "$LOG_DIR/kafka.out.1"
    local detach=()
    command -v setsid >/dev/null && detach=(setsid)
    nohup "${detach[@]}" "${JAVA_CMD[@]}" >"$LOG_DIR/kafka.out" 2>&1 </dev/null 9>&- &
    pid=$!
    echo "$pid" >"$PID_FILE"
    wait_ready "$pid" 1
    log "ready on $HOST:$PORT (pid $pid) in $((SECONDS - t0))s"
}

cmd_kill9() {
    local pid
    [[ -d "$DATA_DIR" ]] && lock_data_dir
    if pid="$(broker_pid)"; then
        kill -KILL "$pid"
        wait_gone "$pid"
        # The leader shows as a zombie while the JVM's other threads still exit and hold the
        # sockets: a start right after this one found the port "in use" (seen in CI).
        wait_ports_closed
        log "killed broker (pid $pid) with SIGKILL"
    else
        log "not running"
    fi
    rm -f "$PID_FILE"
}

cmd_status() {
    local pid
    if pid="$(broker_pid)" && is_ready; then
        log "running and ready on $HOST:$PORT (pid $pid, data $DATA_DIR)"
        return 0
    fi
    if pid="$(broker_pid)"; then
        log "running (pid $pid) but not ready on $HOST:$PORT"
    else
        log "not running"
    fi
    return 1
}

main() {
    local cmd="${1:-}"
    shift || true
    case "$cmd" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop "$@" ;;
    wipe) cmd_stop --wipe ;;
    restart) cmd_stop && cmd_start ;;
    kill9) cmd_kill9 ;;
    status) cmd_status ;;
    logs) tail -n "${1:-100}" "$LOG_DIR/server.log" ;;
    bootstrap) echo "$HOST:$PORT" ;;
    -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
    esac
}

main "$@"

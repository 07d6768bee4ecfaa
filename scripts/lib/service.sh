# Shared by scripts/kafka.sh and scripts/questdb.sh: the lifecycle of one local server process
# (pid file, data-dir ownership and lock, stop with a SIGKILL fallback). Sourced, not run.
# The sourcing script sets SERVICE (its name, for messages), DATA_DIR, OWNER_MARK, PID_FILE and
# STOP_TIMEOUT, and defines service_pid (prints the pid of its live server, else fails) and
# make_data_dirs (creates the sub-directories it needs).

log() { printf '%s: %s\n' "$SERVICE" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

alive() { # alive <pid>: the process exists and is not a zombie
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ -n "$stat" && "${stat%% *}" != "Z" ]]
}

ensure_owned_data_dir() {
    if [[ -d "$DATA_DIR" && ! -f "$OWNER_MARK" ]] && [[ -n "$(ls -A "$DATA_DIR")" ]]; then
        die "$DATA_DIR exists, is not empty and was not created by $SERVICE; refusing to use it"
    fi
    make_data_dirs
    touch "$OWNER_MARK"
}

# Serialise start/stop/kill9 on one data dir (e.g. parallel test sessions starting a server).
lock_data_dir() {
    ensure_owned_data_dir
    command -v flock >/dev/null || return 0
    exec 9>"$DATA_DIR/.lock"
    flock -w 120 9 || die "another $SERVICE holds $DATA_DIR/.lock"
}

wait_gone() { # wait_gone <pid>: after SIGKILL
    local deadline=$((SECONDS + 30))
    while alive "$1"; do
        ((SECONDS < deadline)) || die "pid $1 survived SIGKILL for 30s"
        sleep 0.1
    done
}

cmd_wipe_data() {
    [[ -e "$DATA_DIR" ]] || return 0
    [[ -f "$OWNER_MARK" ]] || die "$DATA_DIR was not created by $SERVICE; not deleting it"
    rm -rf "$DATA_DIR"
    log "deleted $DATA_DIR"
}

cmd_stop() { # cmd_stop [--wipe]: SIGTERM, wait STOP_TIMEOUT, then SIGKILL
    local wipe=0 pid
    [[ "${1:-}" == "--wipe" ]] && wipe=1
    [[ -d "$DATA_DIR" ]] && lock_data_dir
    if pid="$(service_pid)"; then
        log "stopping (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + STOP_TIMEOUT))
        while alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
        if alive "$pid"; then
            log "still alive after ${STOP_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait_gone "$pid"
        fi
        log "stopped"
    else
        log "not running"
    fi
    rm -f "$PID_FILE"
    if ((wipe)); then cmd_wipe_data; fi
}

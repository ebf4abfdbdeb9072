# Shared helpers for deploy/*/start and stop. Sourced, not run.
# FLOWGUARD_HOME (default: <repo>/.flowguard) holds every service's data, logs and pid files.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FLOWGUARD_HOME=${FLOWGUARD_HOME:-$REPO_ROOT/.flowguard}

die() {
    echo "error: $*" >&2
    exit 1
}

# pid_of FILE: the pid in FILE if that process is alive, else nothing (a stale file is removed).
pid_of() {
    local file=$1 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
    else
        rm -f "$file"
    fi
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# stop_pid FILE NAME PATTERN: SIGTERM the process in FILE if its command line matches PATTERN,
# wait up to 30 s, then SIGKILL. Never signals a pid that was reused by something else.
stop_pid() {
    local file=$1 name=$2 pattern=$3 pid
    pid=$(pid_of "$file")
    if [ -z "$pid" ]; then
        echo "$name is not running"
        return 0
    fi
    if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern"; then
        rm -f "$file"
        echo "$name is not running (pid $pid belongs to another program; stale pid file removed)"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        echo "$name did not stop in 30 s: killed" >&2
    fi
    rm -f "$file"
    echo "$name stopped (pid $pid)"
}

# shellcheck shell=bash
# Shared helpers for deploy/*/start and stop. Sourced, not run.
# FLOWGUARD_HOME (default: <repo>/.flowguard) holds every service's data, logs and pid files.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Absolute, so the paths in a broker's command line match whichever directory stop runs from.
FLOWGUARD_HOME=$(realpath -m "${FLOWGUARD_HOME:-$REPO_ROOT/.flowguard}")

# die MESSAGE: one line on stderr, exit 1. Callers' traps still run (they clean up what they began).
die() {
    echo "error: $*" >&2
    exit 1
}

# check_port NAME VALUE: refuse anything but a TCP port number, before it reaches a path or a config.
check_port() {
    if ! [[ $2 =~ ^[0-9]+$ ]] || [ "$2" -lt 1 ] || [ "$2" -gt 65535 ]; then
        die "$1=$2 is not a TCP port"
    fi
}

# alive PID: the process exists and is not a zombie (a dead child we have not reaped yet).
alive() {
    local state
    state=$(sed -E 's/^.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# pid_of FILE PATTERN: the pid in FILE if that process is alive and its command line contains
# PATTERN; else nothing, and a stale file (process gone, or pid reused by another program) is removed.
pid_of() {
    local file=$1 pattern=$2 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern"; then
        echo "$pid"
    else
        rm -f "$file"
    fi
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# port_owner PORT: "pid N: <command line>" of the listener on PORT when ss can tell, else "".
port_owner() {
    local pid
    command -v ss >/dev/null 2>&1 || return 0
    pid=$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)
    [ -n "$pid" ] || return 0
    echo "pid $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-160)"
}

# require_free_port PORT VARIABLE: die with one line naming the holder when PORT is taken.
require_free_port() {
    local owner
    port_open "$1" || return 0
    owner=$(port_owner "$1")
    die "port $1 is taken by another process${owner:+ ($owner)}; stop it or set $2"
}

# lock FILE: hold an exclusive lock on FILE until this script exits, so two starts of the
# same service (a developer and a test session, say) never race on one pid file or one jar cache.
# A service we launch must not inherit the descriptors (see unlocked), or it would hold the lock.
LOCK_FDS=()
lock() {
    local fd
    exec {fd}>"$1" || die "cannot open lock file $1"
    flock -w 300 "$fd" || die "another start has held $1 for 5 minutes"
    LOCK_FDS+=("$fd")
}

# unlocked COMMAND...: exec COMMAND with every lock descriptor closed (run it in a subshell).
unlocked() {
    local fd
    for fd in "${LOCK_FDS[@]}"; do
        exec {fd}>&-
    done
    exec "$@"
}

# stop_pid FILE NAME PATTERN: SIGTERM the process in FILE (only if its command line contains
# PATTERN, so a reused pid is never signalled), wait up to 30 s, then SIGKILL; remove FILE.
stop_pid() {
    local file=$1 name=$2 pattern=$3 pid
    pid=$(pid_of "$file" "$pattern")
    if [ -z "$pid" ]; then
        echo "$name is not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        echo "$name did not stop within 30 s: sent SIGKILL" >&2
        for _ in $(seq 1 50); do
            alive "$pid" || break
            sleep 0.1
        done
    fi
    rm -f "$file"
    echo "$name stopped (pid $pid)"
}

#!/usr/bin/env bash
# Restarts prime-server instances behind HAProxy one at a time, so that no
# client request fails: each instance is drained, stopped gracefully, started
# again, checked by HAProxy, and only then given traffic again.
#
#   deploy/rolling-restart.sh --socket /run/haproxy/prime-admin.sock \
#       --backend prime_servers \
#       --restart-cmd 'systemctl restart prime-server@{name}' p1 p2 p3
#
# Run with --help for every option. Needs socat (Debian package `socat`,
# installed by `scripts/ensure-tools.sh socat`) and an HAProxy stats socket
# with `level admin` (see deploy/haproxy.cfg).
set -euo pipefail

program=${0##*/}

usage() {
    cat <<EOF
Usage: $program --socket PATH --backend NAME
         (--restart-cmd CMD | --stop-cmd CMD --start-cmd CMD)
         [--drain-timeout SECS] [--up-timeout SECS] SERVER...

Restarts each SERVER of HAProxy backend NAME in turn, through HAProxy's
runtime API on the stats socket PATH:

  1. drain it (HAProxy sends it no new connections),
  2. wait until it has no connections left (at most --drain-timeout),
  3. put it in maintenance, then run the stop and start commands (or the
     restart command); prime-server stops gracefully on SIGTERM, answering
     every connection it had accepted,
  4. wait until HAProxy's health checks see the new process up (at most
     --up-timeout; the check state is reset first, so an old result cannot
     count),
  5. make it ready (HAProxy sends it traffic again).

A server is restarted only while another server of the backend is up and
ready, so the backend is never left with nothing to serve.

Commands run with bash -c after these substitutions:
  {name}  the server's name in HAProxy     {addr}  its address
  {port}  its port
e.g. --restart-cmd 'systemctl restart prime-server@{name}'
     --stop-cmd 'kill -TERM \$(cat /run/prime/{name}.pid) && tail --pid=\$(cat /run/prime/{name}.pid) -f /dev/null'
The stop command must return only once the old process has exited (systemctl
does); the start command may return as soon as the process is launched.

Options:
  --socket PATH         HAProxy stats socket with 'level admin'
  --backend NAME        the backend holding the servers
  --restart-cmd CMD     one command that stops and starts an instance
  --stop-cmd CMD        stops an instance (with --start-cmd)
  --start-cmd CMD       starts an instance (with --stop-cmd)
  --drain-timeout SECS  longest wait for a server's connections to end (60)
  --up-timeout SECS     longest wait for HAProxy to see it up again (60)
  -h, --help            this text

Exit status: 0 when every server was restarted and is ready again; 1 when a
step failed (the message says which server and in what state it was left);
2 for bad usage.
EOF
}

die_usage() {
    echo "$program: $*" >&2
    echo "Try '$program --help'." >&2
    exit 2
}

fail() {
    echo "$program: $*" >&2
    exit 1
}

say() {
    echo "$program: $*"
}

socket=""
backend=""
restart_cmd=""
stop_cmd=""
start_cmd=""
drain_timeout=60
up_timeout=60
servers=()

while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --socket | --backend | --restart-cmd | --stop-cmd | --start-cmd | --drain-timeout | --up-timeout)
            [ $# -ge 2 ] || die_usage "$1 needs a value"
            case "$1" in
                --socket) socket=$2 ;;
                --backend) backend=$2 ;;
                --restart-cmd) restart_cmd=$2 ;;
                --stop-cmd) stop_cmd=$2 ;;
                --start-cmd) start_cmd=$2 ;;
                --drain-timeout) drain_timeout=$2 ;;
                --up-timeout) up_timeout=$2 ;;
            esac
            shift 2
            ;;
        --) shift; servers+=("$@"); break ;;
        -*) die_usage "unknown option $1" ;;
        *) servers+=("$1"); shift ;;
    esac
done

[ -n "$socket" ] || die_usage "--socket is required"
[ -n "$backend" ] || die_usage "--backend is required"
[ ${#servers[@]} -gt 0 ] || die_usage "name at least one server"
if [ -n "$restart_cmd" ]; then
    [ -z "$stop_cmd$start_cmd" ] || die_usage "give --restart-cmd or --stop-cmd/--start-cmd, not both"
else
    [ -n "$stop_cmd" ] && [ -n "$start_cmd" ] || die_usage "give --restart-cmd, or both --stop-cmd and --start-cmd"
fi
for value in "$drain_timeout" "$up_timeout"; do
    [[ "$value" =~ ^[0-9]+$ ]] && [ "$value" -gt 0 ] || die_usage "timeouts are whole seconds above 0, not '$value'"
done
for name in "$backend" "${servers[@]}"; do
    # HAProxy names are identifiers; anything else would be unsafe in the
    # runtime API line and in the commands.
    [[ "$name" =~ ^[A-Za-z0-9_.:-]+$ ]] || die_usage "'$name' is not a valid HAProxy name"
done
command -v socat >/dev/null 2>&1 || fail "socat is not installed (apt-get install socat)"
[ -S "$socket" ] || fail "$socket is not a socket (is HAProxy running with 'stats socket $socket level admin'?)"

# Sends one runtime API command and prints the answer.
api() {
    local answer
    if ! answer=$(printf '%s\n' "$1" | socat -t 10 - "UNIX-CONNECT:$socket" 2>&1); then
        fail "cannot talk to HAProxy on $socket: $answer"
    fi
    printf '%s' "$answer"
}

# Runs a command that changes state; HAProxy answers nothing on success.
api_set() {
    local answer
    answer=$(api "$1")
    if [ -n "${answer//[[:space:]]/}" ]; then
        fail "HAProxy refused '$1': $answer"
    fi
}

# Prints "op admin addr port" for one server (op 2 = running; admin 0 =
# ready, 1 = maintenance, 8 = drain), or nothing if there is no such server.
server_state() {
    api "show servers state $backend" | awk -v s="$1" '
        /^#/ { for (i = 2; i <= NF; i++) col[$i] = i - 1; next }
        NF > 5 && $col["srv_name"] == s {
            print $col["srv_op_state"], $col["srv_admin_state"], $col["srv_addr"], $col["srv_port"]
        }'
}

# Prints the connections a server has open plus those queued for it.
server_connections() {
    api "show stat" | awk -F, -v b="$backend" -v s="$1" '
        NR == 1 { sub(/^# /, ""); for (i = 1; i <= NF; i++) col[$i] = i; next }
        $col["pxname"] == b && $col["svname"] == s { print $col["scur"] + $col["qcur"] }'
}

# Counts the servers of the backend, other than $1, that are up and ready.
others_serving() {
    api "show servers state $backend" | awk -v s="$1" '
        /^#/ { for (i = 2; i <= NF; i++) col[$i] = i - 1; next }
        NF > 5 && $col["srv_name"] != s && $col["srv_op_state"] == 2 && $col["srv_admin_state"] == 0 { n++ }
        END { print n + 0 }'
}

# Runs a command template for one server.
run_for() {
    local template=$1 name=$2 addr=$3 port=$4 cmd
    cmd=${template//\{name\}/$name}
    cmd=${cmd//\{addr\}/$addr}
    cmd=${cmd//\{port\}/$port}
    say "$name: running: $cmd"
    bash -c "$cmd"
}

# Polls `check` (a function printing "yes" when done) every 0.2 s for at
# most $2 seconds.
wait_for() {
    local check=$1 limit=$2 name=$3 deadline
    deadline=$((SECONDS + limit))
    while [ "$("$check" "$name")" != yes ]; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}

drained() { [ "$(server_connections "$1")" = 0 ] && echo yes || echo no; }
running() { [ "$(server_state "$1" | cut -d' ' -f1)" = 2 ] && echo yes || echo no; }

# Every server must exist before anything is touched.
for name in "${servers[@]}"; do
    [ -n "$(server_state "$name")" ] || fail "backend '$backend' has no server '$name'"
done

for name in "${servers[@]}"; do
    read -r _ _ addr port <<<"$(server_state "$name")"
    if [ "$(others_serving "$name")" -eq 0 ]; then
        fail "$name: no other server of '$backend' is up and ready; not restarting it (nothing would serve meanwhile). Nothing was changed."
    fi

    say "$name: draining"
    api_set "set server $backend/$name state drain"
    if ! wait_for drained "$drain_timeout" "$name"; then
        left=$(server_connections "$name")
        api_set "set server $backend/$name state ready"
        fail "$name: still $left connection(s) after ${drain_timeout}s of draining; it was put back to ready and not restarted"
    fi

    # Maintenance stops HAProxy's checks, so stopping raises no alarm.
    api_set "set server $backend/$name state maint"
    if [ -n "$restart_cmd" ]; then
        run_for "$restart_cmd" "$name" "$addr" "$port" \
            || fail "$name: the restart command failed; the server is left in maintenance"
    else
        run_for "$stop_cmd" "$name" "$addr" "$port" \
            || fail "$name: the stop command failed; the server is left in maintenance"
        run_for "$start_cmd" "$name" "$addr" "$port" \
            || fail "$name: the start command failed; the server is left in maintenance"
    fi

    # Leaving maintenance makes HAProxy assume the server is up; forcing
    # its health down makes it prove it with `rise` fresh checks.
    api_set "set server $backend/$name state drain"
    api_set "set server $backend/$name health down"
    say "$name: waiting for HAProxy to see it up"
    if ! wait_for running "$up_timeout" "$name"; then
        api_set "set server $backend/$name state maint"
        fail "$name: HAProxy did not see it up within ${up_timeout}s; it is left in maintenance"
    fi
    api_set "set server $backend/$name state ready"
    say "$name: restarted and ready"
done
say "restarted ${#servers[@]} server(s) of '$backend'"

#!/usr/bin/env bash
# Before and after, in one run: builds prime-server at an older commit
# (default 57b2ca4, the blocking pool before the waiting room) beside the
# current release build, then alternates the floor (2 threads), the old
# server and the new one under the same load, round after round, and prints
# the medians as a Markdown table: server CPU per request and context
# switches per request (from /proc), for connection-per-request line `17`
# and for pipelined keep-alive lines.
#
#   bench/before-after.sh [OLD_COMMIT] [ROUNDS] [SECONDS_PER_ROUND]
#
# Needs `make build` first (target/release/prime-server, prime-bench).
# The old build goes to target/before-after/ (its own worktree, removed
# afterwards). Not part of make bench: it builds a second GMP (a few
# minutes) and the commit is a choice.
set -euo pipefail
cd "$(dirname "$0")/.."
old_commit=${1:-57b2ca4}
rounds=${2:-8}
seconds=${3:-3}
root=$PWD
bench=$root/target/release/prime-bench
new=$root/target/release/prime-server
[ -x "$bench" ] && [ -x "$new" ] || { echo "before-after: run 'make build' first" >&2; exit 1; }

work=$root/target/before-after
old=$work/prime-server-$old_commit
if [ ! -x "$old" ]; then
    mkdir -p "$work"
    tree=$(mktemp -d)
    git worktree add -q --detach "$tree" "$old_commit"
    echo "before-after: building prime-server at $old_commit (a few minutes)" >&2
    built=0
    (cd "$tree" && cargo build --release --bin prime-server -q) && cp "$tree/target/release/prime-server" "$old" && built=1
    git worktree remove --force "$tree"
    [ "$built" = 1 ] || { echo "before-after: building $old_commit failed" >&2; exit 1; }
fi

run=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT

# server CPU (ticks) and context switches of PID
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cs() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }

# start NAME CMD...: starts a server listening on 127.0.0.1:0, records its
# pid and waits (at most 10 s) for the address it prints
declare -A pid_of addr_of
start() {
    local name=$1 out; shift
    out="$run/$(echo "$name" | tr -c 'a-z0-9\n' _).out"
    "$@" --listen 127.0.0.1:0 >"$out" 2>&1 &
    pids+=($!); pid_of[$name]=$!
    for _ in $(seq 100); do
        addr_of[$name]=$(grep -oE '127\.0\.0\.1:[1-9][0-9]*' "$out" | head -1 || true)
        [ -n "${addr_of[$name]}" ] && return
        sleep 0.1
    done
    echo "before-after: $name did not start:" >&2; cat "$out" >&2; exit 1
}

# measure NAME ARGS...: one round against NAME, appends "name req cpu_us_per_req cs_per_req"
measure() {
    local name=$1; shift
    local pid=${pid_of[$name]} addr=${addr_of[$name]}
    local c0 s0 c1 s1 out req
    c0=$(cpu "$pid"); s0=$(cs "$pid")
    out=$("$bench" load --addr "$addr" --duration "${seconds}s" "$@" 2>&1)
    c1=$(cpu "$pid"); s1=$(cs "$pid")
    req=$(echo "$out" | grep -oE '^[0-9]+ requests' | awk '{print $1}')
    echo "$name $req $(( (c1 - c0) )) $(( s1 - s0 ))" >>"$run/results"
}

table() { # TITLE: prints medians of $run/results, ratios to the first row
    python3 - "$run/results" "$1" "$seconds" "$(getconf CLK_TCK)" <<'PY'
import sys, statistics as st
path, title, seconds, tck = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
rows = {}
for line in open(path):
    name, req, ticks, cs = line.rsplit(None, 3)
    req, ticks, cs = int(req), int(ticks), int(cs)
    rows.setdefault(name, []).append((req / seconds, ticks / tck * 1e6 / req, cs / req))
print(f"\n### {title}\n")
print("| server | req/s | server CPU/req | vs floor | cs/req | vs floor |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
base = None
for name, v in rows.items():
    rps = st.median(x[0] for x in v); cpu = st.median(x[1] for x in v); cs = st.median(x[2] for x in v)
    if base is None:
        base = (cpu, cs)
    print(f"| {name} | {rps:.0f} | {cpu:.{1 if cpu >= 10 else 2}f} us | {cpu / base[0]:.2f}x | {cs:.2f} | {cs / base[1]:.2f}x |")
med = {n: [st.median(x[i] for x in v) for i in range(3)] for n, v in rows.items()}
(_, before), (_, after) = list(med.items())[-2:]
print(f"\nnow against before: {after[0] / before[0]:.2f}x the req/s, {after[1] / before[1]:.2f}x the CPU per request, "
      f"{after[2] / before[2]:.2f}x the context switches per request "
      f"(medians of {len(next(iter(rows.values())))} rounds of {seconds:g} s, alternating)")
PY
}

echo "# Before and after: $old_commit vs $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d), $(nproc) cores"
start floor "$bench" floor --threads 2
start "prime-server $old_commit" "$old" --audit-log "$run/old.log"
start "prime-server now" "$new" --audit-log "$run/new.log"
for _ in $(seq "$rounds"); do
    for name in floor "prime-server $old_commit" "prime-server now"; do measure "$name"; done
done
table "line 17, 32 connections, one per request (default flags)"
kill "${pids[@]}"; wait 2>/dev/null || true; pids=(); : >"$run/results"

start floor "$bench" floor --threads 2 --keep-alive
start "prime-server $old_commit" "$old" --audit-log "$run/old-k.log" --keep-alive
start "prime-server now" "$new" --audit-log "$run/new-k.log" --keep-alive
for _ in $(seq "$rounds"); do
    for name in floor "prime-server $old_commit" "prime-server now"; do
        measure "$name" --keep-alive --concurrency 8
    done
done
table "keep-alive, 8 connections, 64 lines pipelined each (req = lines)"

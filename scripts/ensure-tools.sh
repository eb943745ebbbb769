#!/usr/bin/env bash
# Makes sure the command-line tools the build and tests need are present.
#
#   scripts/ensure-tools.sh m4 [tool...] [--optional tool...]
#
# A missing tool is installed from Debian's packages when we can (root with
# apt-get, as on CI and fresh machines). Otherwise a required tool stops us
# with one sentence saying what to install, and an optional one is reported:
# the tests that need it skip themselves and say so.
#   m4         required: the GMP that `rug` builds needs it
#   logrotate  optional: a test runs the shipped logrotate example for real
#   haproxy    optional: a test validates deploy/haproxy.cfg with `haproxy -c`;
#              tests/scale_out.rs runs it in front of three instances
#   socat      optional: deploy/rolling-restart.sh talks to HAProxy's stats
#              socket through it (tests/scale_out.rs runs the script)
set -euo pipefail

required=()
optional=()
target=required
for arg in "$@"; do
    case "$arg" in
        --optional) target=optional ;;
        *) if [ "$target" = required ]; then required+=("$arg"); else optional+=("$arg"); fi ;;
    esac
done

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

missing=()
for tool in "${required[@]}" "${optional[@]}"; do
    have "$tool" || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-tools: installing ${missing[*]} from Debian packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null; then
        exit 0
    fi
    echo "ensure-tools: apt-get could not install ${missing[*]}" >&2
fi

status=0
for tool in "${missing[@]}"; do
    have "$tool" && continue
    if printf '%s\n' "${required[@]}" | grep -qx "$tool"; then
        echo "ensure-tools: $tool not found; install it (e.g. 'sudo apt-get install $tool' or 'brew install $tool'): it is needed to build GMP." >&2
        status=1
    else
        echo "ensure-tools: $tool not found; the tests that need it will be skipped (install it with 'sudo apt-get install $tool')." >&2
    fi
done
exit $status

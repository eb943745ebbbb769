#!/usr/bin/env bash
# Makes sure the command-line tools the build and tests need are present.
#
#   scripts/ensure-tools.sh m4 [tool...] [--optional tool...]
#
# A missing tool is installed from Debian's packages when we can (root with
# apt-get, as on CI and fresh machines). Otherwise a required tool stops us
# with one sentence saying what to install, and an optional one is reported:
# the tests that need it skip themselves, loudly. On CI (CI set, and not
# "false" or "0") every tool is required: a test that skips there fails, so
# a tool that cannot be installed must stop the run here, saying which.
#   m4         required: the GMP that `rug` builds needs it
#   python3    tests/differential.rs checks the parser against Python's int()
#              (3.11 or later, for the 4300-digit limit)
#   logrotate  tests/operate.rs runs the shipped logrotate example for real
#   haproxy    tests/deploy.rs validates deploy/haproxy.cfg with `haproxy -c`;
#              tests/scale_out.rs runs it in front of three instances
#   socat      deploy/rolling-restart.sh talks to HAProxy's stats socket
#              through it (tests/scale_out.rs runs the script)
#   strace     tests/operate.rs checks that --audit-sync always syncs before
#              each reply, and tests/binary.rs that the log is synced at exit
#   fiu-run, fiu-ctrl
#              (package fiu-utils) tests/operate.rs injects fdatasync failures
#   help2man   required by `make deb`: the man pages are written from each
#              binary's --help
#   lintian    tests/package.rs checks the built .deb with it
#   systemd-analyze
#              (package systemd) tests/package.rs verifies the packaged units
#   prometheus, promtool
#              (package prometheus) tests/operator_kit.rs checks and unit-tests
#              deploy/prometheus/ with promtool and runs its own Prometheus
#              on a free port (where services may start, the package also
#              starts one on :9090; the tests neither need nor touch it)
#   rsyslogd   (package rsyslog) tests/seal_attacks.rs ships seals to a real
#              rsyslog over TCP and verifies against its copy
#   perf       (package linux-perf) optional for `make bench`: the scaling
#              table counts system calls per request by kind with it
set -euo pipefail

# The Debian package that provides a tool, where its name differs.
package_of() {
    case "$1" in
        fiu-run | fiu-ctrl) echo fiu-utils ;;
        systemd-analyze) echo systemd ;;
        promtool) echo prometheus ;;
        rsyslogd) echo rsyslog ;;
        perf) echo linux-perf ;;
        python3) echo python3 ;;
        *) echo "$1" ;;
    esac
}

on_ci() { [ -n "${CI:-}" ] && [ "${CI}" != false ] && [ "${CI}" != 0 ]; }

required=()
optional=()
target=required
for arg in "$@"; do
    case "$arg" in
        --optional) if on_ci; then target=required; else target=optional; fi ;;
        *) if [ "$target" = required ]; then required+=("$arg"); else optional+=("$arg"); fi ;;
    esac
done

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

missing=()
for tool in "${required[@]}" "${optional[@]}"; do
    have "$tool" || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0

packages=()
for tool in "${missing[@]}"; do
    package=$(package_of "$tool")
    printf '%s\n' "${packages[@]}" | grep -qx -- "$package" || packages+=("$package")
done

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-tools: installing ${packages[*]} (for ${missing[*]}) from Debian packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -qq >/dev/null && apt-get install -y -qq "${packages[@]}" >/dev/null; then
        status=0
        for tool in "${missing[@]}"; do
            have "$tool" || { echo "ensure-tools: package $(package_of "$tool") installed but $tool is still not found" >&2; status=1; }
        done
        [ $status -eq 0 ] && exit 0
    else
        echo "ensure-tools: apt-get could not install ${packages[*]}" >&2
    fi
fi

status=0
for tool in "${missing[@]}"; do
    have "$tool" && continue
    package=$(package_of "$tool")
    if printf '%s\n' "${required[@]}" | grep -qx -- "$tool"; then
        case "$tool" in
            m4) why="it is needed to build GMP" ;;
            help2man) why="make deb writes the man pages with it" ;;
            *) why="CI runs every test, and the tests that need it would fail" ;;
        esac
        echo "ensure-tools: $tool not found; install it (e.g. 'sudo apt-get install $package'): $why." >&2
        status=1
    else
        echo "ensure-tools: $tool not found; the tests that need it will be SKIPPED (install it with 'sudo apt-get install $package')." >&2
    fi
done
exit $status

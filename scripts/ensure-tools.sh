#!/usr/bin/env bash
# Makes sure the command-line tools the build needs are present.
#
#   scripts/ensure-tools.sh m4 [tool...]
#
# A missing tool is installed from Debian's packages when we can (root with
# apt-get, as on CI and fresh machines); otherwise we stop with one sentence
# saying what to install. m4 is needed by the GMP that `rug` builds.
set -euo pipefail

missing=()
for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-tools: installing ${missing[*]} from Debian packages (needed to build GMP for big-number primality)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${missing[@]}" >/dev/null
    exit 0
fi

echo "ensure-tools: ${missing[*]} not found; install it (e.g. 'sudo apt-get install ${missing[*]}' or 'brew install ${missing[*]}'), it is needed to build GMP." >&2
exit 1

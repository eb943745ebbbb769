#!/usr/bin/env bash
# Writes a man page for each of the package's binaries from the binary
# itself (help2man runs `BIN --help` and `BIN --version`), so the pages say
# exactly what the built program accepts, wherever its argument definitions
# live in the source. prime-audit's subcommands get their own --help in a
# COMMANDS section.
#
#   scripts/man-pages.sh BIN_DIR OUT_DIR
#
# writes OUT_DIR/<binary>.1.gz for prime-server, prime-client, echo-server
# and prime-audit found in BIN_DIR (e.g. target/release). `make deb` calls it.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 BIN_DIR OUT_DIR" >&2
    exit 2
fi
bin_dir=$1
out_dir=$2

command -v help2man >/dev/null 2>&1 || {
    echo "man-pages: help2man not found; install it (e.g. 'sudo apt-get install help2man')" >&2
    exit 1
}

# name|one-line summary for the NAME section (what `whatis` shows)
pages=(
    "prime-server|answer whether each line holds a prime number, over TCP, with an audit log"
    "prime-client|ask a prime-server whether numbers are prime"
    "echo-server|TCP echo service built on prime-server's connection handling"
    "prime-audit|make the sealing key for prime-server's audit log, and verify sealed logs"
)

see_also=".BR prime-server (1),
.BR prime-client (1),
.BR echo-server (1),
.BR prime-audit (1)
.PP
/etc/default/prime-server holds the settings of prime-server.service;
/usr/share/doc/prime-server/ describes the package (packaging.md) and the
protocol."

# Roff-escapes plain text shown verbatim: backslashes, and lines that would
# otherwise start a request.
roff_verbatim() {
    sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/" -e 's/-/\\-/g'
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out_dir"

for entry in "${pages[@]}"; do
    name=${entry%%|*}
    summary=${entry#*|}
    binary=$bin_dir/$name
    [ -x "$binary" ] || { echo "man-pages: $binary is missing or not executable (build it first)" >&2; exit 1; }
    include=$work/$name.h2m
    {
        if [ "$name" = prime-audit ]; then
            echo "[COMMANDS]"
            for sub in keygen verify; do
                echo ".SS \"prime-audit $sub\""
                echo ".nf"
                "$binary" "$sub" --help | roff_verbatim
                echo ".fi"
            done
        fi
        echo "[SEE ALSO]"
        echo "$see_also"
    } >"$include"
    # The output's date is the binary's, so an unchanged build gives the
    # same page (SOURCE_DATE_EPOCH is what help2man reads for it).
    SOURCE_DATE_EPOCH=$(stat -c %Y "$binary") \
        help2man --no-info --section=1 --name="$summary" --include="$include" \
        --output="$work/$name.1" "$binary"
    gzip -9n -c "$work/$name.1" >"$out_dir/$name.1.gz"
done
echo "man-pages: wrote ${#pages[@]} pages in $out_dir"

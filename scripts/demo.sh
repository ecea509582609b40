#!/bin/bash
# Live-patches a running TCP server while a client stays connected:
# builds the tools, copies samples/kvserver (a small key-value server whose
# request parser drops the last byte of every value) to a temporary
# directory, builds it and its fix with `libcare-patch-make --clean
# fix.diff`, starts the original server, shows the bug from a client,
# applies the patch with `libcare-ctl patch`, shows the fix on the same
# connection and the same PID, unpatches and shows the bug back.
#
# Every process it starts is killed by PID on exit; it exits non-zero if any
# step does not show what it should. LIBCARE_BIN=DIR uses tools already
# built in DIR instead of running cargo (the tests do).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${LIBCARE_BIN:-}" ]; then
	bin=$LIBCARE_BIN
	echo "== using the tools in $bin"
else
	bin=${CARGO_TARGET_DIR:-$root/target}/release
	echo "== building the tools (cargo build --release)"
	cargo build --release --quiet --manifest-path "$root/Cargo.toml"
fi

start=$(date +%s%N)
work=$(mktemp -d /tmp/libcare-demo.XXXXXX)
pid=
cleanup() {
	exec 3>&-
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

fail() {
	echo "demo: FAILED: $*" >&2
	exit 1
}

cp -r "$root/samples/kvserver" "$work/kvserver"
cd "$work/kvserver"
echo "== the fix (samples/kvserver/fix.diff):"
sed 's/^/   | /' fix.diff
echo "== libcare-patch-make --clean fix.diff (in $work/kvserver)"
"$bin/libcare-patch-make" --clean fix.diff >"$work/build.log" 2>&1 || {
	cat "$work/build.log"
	fail "libcare-patch-make"
}
tail -n 1 "$work/build.log" | sed 's/^ */   /'
echo "   original binary: lpmake/usr/bin/kvserver, $(readelf -n lpmake/usr/bin/kvserver | grep -o 'Build ID.*')"

./lpmake/usr/bin/kvserver 0 >"$work/server.out" 2>&1 &
pid=$!
port=
for _ in $(seq 100); do
	port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/server.out")
	[ -n "$port" ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.05
done
[ -n "$port" ] || fail "the server did not start: $(cat "$work/server.out")"
echo "== started kvserver, pid $pid, listening on 127.0.0.1:$port"

# One connection for the whole demo, on fd 3 (bash's /dev/tcp).
exec 3<>"/dev/tcp/127.0.0.1/$port"
echo "== client connected (one connection, kept open to the end)"

reply=
ask() {
	printf '%s\n' "$1" >&3
	IFS= read -r -t 5 reply <&3 || fail "no answer to '$1' (server pid $pid)"
	printf '   client> %-22s server> %s\n' "$1" "$reply"
}
# SET greeting, GET it back: prints and checks the value the server returns.
roundtrip() {
	ask "SET greeting hello"
	[ "$reply" = OK ] || fail "SET answered '$reply'"
	ask "GET greeting"
	[ "$reply" = "VALUE $1" ] || fail "expected 'VALUE $1', got '$reply' ($2)"
}
# STATS: the server's own PID must be the one we started and patched.
same_process() {
	ask "STATS"
	[[ "$reply" == "pid=$pid "* ]] || fail "STATS answered '$reply', expected pid=$pid"
}

# libcare-ctl ARGS..., its log indented; a failure ends the demo.
ctl() {
	local status=0
	"$bin/libcare-ctl" "$@" >"$work/ctl.log" 2>&1 || status=$?
	sed 's/^ */   /' "$work/ctl.log"
	[ "$status" = 0 ] || fail "libcare-ctl $* exited with $status"
}

echo "== before the patch: the parser drops the last byte of every value"
roundtrip hell "the bug"
same_process

echo "== libcare-ctl -v patch -p $pid patchroot"
ctl -v patch -p "$pid" patchroot
echo "== patched: same connection, same process"
roundtrip hello "the fix"
same_process

echo "== libcare-ctl -v unpatch -p $pid"
ctl -v unpatch -p "$pid"
echo "== unpatched: the old code is back"
roundtrip hell "the bug again"
same_process

end=$(date +%s%N)
ms=$(((end - start) / 1000000))
echo "== done: pid $pid served one connection through patch and unpatch; stopping it"
printf '== demo took %d.%03d s after the tools were built\n' $((ms / 1000)) $((ms % 1000))
[ "$ms" -lt 60000 ] || fail "the demo took longer than a minute"

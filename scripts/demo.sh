#!/bin/bash
# Live-patches the seed's example end to end on this machine:
# builds the tools, builds tests/cases/seed with libcare-patch-make (original
# binary in lpmake/, patch in patchroot/), starts the original program,
# patches it while it runs, shows its output change, unpatches it and shows
# the old output again. Every process it starts is killed by PID on exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/release

echo "== building the tools (cargo build --release)"
cargo build --release --quiet --manifest-path "$root/Cargo.toml"

work=$(mktemp -d /tmp/libcare-demo.XXXXXX)
pid=
cleanup() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

cp -r "$root/tests/cases/seed" "$work/seed"
cd "$work/seed"
echo "== libcare-patch-make --clean fix.diff (in $work/seed)"
"$bin/libcare-patch-make" --clean fix.diff >"$work/build.log" 2>&1 || {
	cat "$work/build.log"
	exit 1
}
tail -n 2 "$work/build.log"
echo "   original binary: lpmake/usr/bin/foo, $(readelf -n lpmake/usr/bin/foo | grep 'Build ID')"

# stdbuf: stdout is a file here, and stdio would hold lines back.
stdbuf -oL ./lpmake/usr/bin/foo >"$work/foo.out" &
pid=$!
shown=0
show() {
	sleep "$1"
	local total
	total=$(wc -l <"$work/foo.out")
	sed -n "$((shown + 1)),${total}p" "$work/foo.out" | sed 's/^/   foo| /'
	shown=$total
}
last_line() { tail -n 1 "$work/foo.out"; }

echo "== started foo, pid $pid"
show 3
echo "== libcare-ctl -v patch -p $pid patchroot"
"$bin/libcare-ctl" -v patch -p "$pid" patchroot
show 3
[ "$(last_line)" = "you patched my tralala" ] || { echo "demo: the patch did not take" >&2; exit 1; }
echo "== libcare-ctl -v unpatch -p $pid"
"$bin/libcare-ctl" -v unpatch -p "$pid"
show 3
[ "$(last_line)" = "i'm unpatched!" ] || { echo "demo: unpatch did not restore the old code" >&2; exit 1; }
echo "== done: patched and unpatched pid $pid live; stopping it"

#!/bin/bash
# Benchmarks kpatch_gensrc on a large real translation unit: the sqlite3
# amalgamation (taken from the libsqlite3-sys crate, which bundles it, so only
# crates.io is needed) at -O2 -g, against a one-line edit of a small static
# helper that gcc inlines into its callers. Prints the time `as` takes on one
# input, then the differ's wall time, peak memory and what it would patch.
# Usage: bash scripts/bench-gensrc-sqlite.sh [workdir]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d /tmp/gensrc-sqlite.XXXXXX)}
mkdir -p "$work"
cd "$work"

if [ ! -f orig.c ]; then
	mkdir -p fetch/src
	cat >fetch/Cargo.toml <<'EOF'
[package]
name = "fetch-sqlite-amalgamation"
version = "0.0.0"
edition = "2021"
[dependencies]
libsqlite3-sys = { version = "0.30", features = ["bundled"] }
EOF
	echo 'fn main() {}' >fetch/src/main.rs
	cargo fetch --quiet --manifest-path fetch/Cargo.toml
	src=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -path '*libsqlite3-sys-0.30*/sqlite3/sqlite3.c' | head -n 1)
	[ -n "$src" ] || { echo "bench: sqlite3.c not found after cargo fetch" >&2; exit 1; }
	cp "$src" orig.c
	cp "$(dirname "$src")/sqlite3.h" .
fi

# The edit: one line added to vdbeSafety(), which gcc inlines into
# sqlite3_finalize/sqlite3_reset callers; every function below it that uses
# __LINE__ (SQLITE_MISUSE_BKPT, SQLITE_CORRUPT_BKPT) sees its line numbers move.
line=$(grep -n '^static int vdbeSafety(Vdbe \*p){' orig.c | cut -d: -f1)
[ -n "$line" ] || { echo "bench: vdbeSafety() not found in this sqlite3.c" >&2; exit 1; }
awk -v l=$((line + 2)) '{print} NR==l {print "    sqlite3_log(SQLITE_MISUSE, \"statement %p\", (void*)p);"}' orig.c >patched.c

for v in orig patched; do
	[ -f $v.s ] || gcc -O2 -g -S -I. $v.c -o $v.s
done
ls -l orig.s patched.s | awk '{printf "input %s: %.1f MiB\n", $9, $5/1048576}'

start=$(date +%s.%N)
as orig.s -o orig.o
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" 'BEGIN {printf "as orig.s: %.2f s\n", e - s}'

cd "$root"
GENSRC_BENCH_ORIG=$work/orig.s GENSRC_BENCH_PATCHED=$work/patched.s cargo bench -p gensrc --bench diff

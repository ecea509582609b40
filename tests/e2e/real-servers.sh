#!/bin/bash
# End-to-end suite: real servers from Debian 12's sources, patched live
# under load with the tools of this repository.
#
#   bash tests/e2e/real-servers.sh            # as root, on Debian 12
#
# For each case it gets the source the way an operator would (`apt-get
# source`, adding a deb-src entry that mirrors the machine's Debian source
# list when there is none), builds the original and the patch with
# `libcare-patch-make`, times a plain build of the same tree for comparison,
# starts the original server on 127.0.0.1, shows the bug from a client,
# starts a bounded load, applies the patch with `libcare-ctl` in the middle
# of it, shows the bug fixed, unpatches, shows the bug back, and reports
# requests completed and failed, the longest request latency the load client
# saw (the run spans the patch), and the time libcare-ctl kept the server
# stopped (`stopped_us` of `libcare-ctl -j`).
#
# Cases (LIBCARE_E2E_CASES, default all four):
#   memcached      1.6.18: upstream issue 1100, `me` prints exp= with the
#                  wrong sign; the function is inlined into a clone of the
#                  command dispatcher (process_command_ascii.part.0).
#   redis          7.0.15: not CVE-2024-31227: Debian 12's source has no
#                  visible bug there (its patch 0002-Fix-Read-Write-key-
#                  pattern-selector-CVE-2024-51741 rewrote that check in
#                  ACLSetSelector(): `ACL SETUSER u1 '%~'` is already an
#                  error). Instead upstream #12452 (Redis 7.2.0, "false
#                  success and a memory leak for ACL selector with bad
#                  parenthesis combination", not in Debian 12's 7.0.15):
#                  ACLMergeSelectorArguments() restarts the selector on a
#                  second '(', so `ACL SETUSER u (+PING (+SELECT (+DEL )`
#                  answers OK (and leaks); fixed, it is a syntax error.
#   nginx          1.22.1, master_process off: ngx_http_script_regex_end_code()
#                  does not reset e->is_args, so a rewrite after a rewrite
#                  with arguments over-escapes its capture.
#   nginx-workers  the same with a master and two workers; the master and
#                  every worker are patched (their PIDs listed).
#   glibc          opt-in (LIBCARE_E2E_GLIBC=1 or glibc in LIBCARE_E2E_CASES):
#                  Debian 12's glibc 2.36 with its CVE-2025-15281 fix
#                  (wordexp with WRDE_REUSE|WRDE_APPEND) reverted, patched
#                  back live into a program run with the build's testrun.sh.
#
# Environment:
#   LIBCARE_E2E_CASES    cases to run (space separated)
#   LIBCARE_E2E_CACHE    sources and builds (default /var/cache/libcare-e2e);
#                        a build is redone only when its fix or the tools change
#   LIBCARE_E2E_RESULTS  results JSON (default $LIBCARE_E2E_CACHE/results.json)
#   LIBCARE_E2E_JOBS     build jobs (default: number of CPUs)
#   LIBCARE_E2E_GLIBC=1  add the glibc case (long build; see BENCHMARKS.md)
#   LIBCARE_E2E_GLIBC_PLAIN=0  no plain glibc build for the timing
#   LIBCARE_E2E_GLIBC_FIX=F    another source patch for glibc; when the cache
#                        holds a build with the same libcare-cc, only the
#                        patched stage is built (libcare-patch-make
#                        --reuse-original)
#
# Exits non-zero when a case fails: a bug not shown before the patch, not
# fixed after it or not back after unpatching, any failed request, a load
# that ended before the patch, or a server that died.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
FIXES="$REPO/tests/e2e/fixes"
CACHE=${LIBCARE_E2E_CACHE:-/var/cache/libcare-e2e}
CASES=${LIBCARE_E2E_CASES:-"memcached redis nginx nginx-workers"}
# glibc builds the whole library three times (original and patched stage,
# plain build for the timing): opt-in.
if [ "${LIBCARE_E2E_GLIBC:-0}" = 1 ] && [[ " $CASES " != *" glibc "* ]]; then
	CASES="$CASES glibc"
fi
RESULTS=${LIBCARE_E2E_RESULTS:-$CACHE/results.json}
JOBS=${LIBCARE_E2E_JOBS:-$(nproc)}
BIN="$REPO/target/release"
SUITE_START=$(date +%s)

log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (apt-get, servers patched with ptrace)"

# --- every process we start, stopped by PID on exit -----------------------
STARTED=()
cleanup() {
	local p
	for p in "${STARTED[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	sleep 0.3
	for p in "${STARTED[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	STARTED=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM
started() { STARTED+=("$@"); }
# a process that ended is forgotten, so that its PID, if reused, is not killed
forget() {
	local keep=() p q
	for p in "${STARTED[@]}"; do
		for q in "$@"; do [ "$p" = "$q" ] && continue 2; done
		keep+=("$p")
	done
	STARTED=("${keep[@]}")
}
stop_pid() {
	local p=$1 i
	kill -TERM "$p" 2>/dev/null || { forget "$p"; return 0; }
	for i in $(seq 50); do
		kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null || true; forget "$p"; return 0; }
		sleep 0.1
	done
	kill -KILL "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
	forget "$p"
}

# --- packages ---------------------------------------------------------------
# dpkg-dev: apt-get source unpacks with dpkg-source. The libraries are the
# Debian packages the three builds need (libevent for memcached; PCRE2,
# OpenSSL and zlib for nginx's default modules; jemalloc for Redis, which
# Debian builds with the system jemalloc). Clients: redis-tools
# (redis-cli, redis-benchmark), libmemcached-tools (memcaslap), wrk, curl.
PACKAGES="dpkg-dev gcc make patch pkg-config libevent-dev libpcre2-dev libssl-dev zlib1g-dev
 libjemalloc-dev redis-tools libmemcached-tools wrk curl jq util-linux"
# glibc's configure: gawk, bison, python3
[[ " $CASES " == *" glibc "* ]] && PACKAGES="$PACKAGES gawk bison python3"

has_deb_src() {
	grep -qsE '^[[:space:]]*deb-src[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list && return 0
	grep -qsiE '^Types:.*deb-src' /etc/apt/sources.list.d/*.sources && return 0
	return 1
}

# A deb-src entry for every Debian `deb` entry of the machine (deb822
# stanzas of debian.sources, one-line entries of sources.list).
add_deb_src() {
	local out=/etc/apt/sources.list.d/libcare-e2e-src.sources
	local list=/etc/apt/sources.list.d/libcare-e2e-src.list
	if [ -f /etc/apt/sources.list.d/debian.sources ]; then
		awk 'BEGIN{RS=""; ORS="\n\n"}
		     /(^|\n)Types:[^\n]*deb/ && /URIs:[^\n]*debian/ {
		         sub(/(^|\n)Types:[^\n]*/, "\nTypes: deb-src"); sub(/^\n/, ""); print }' \
			/etc/apt/sources.list.d/debian.sources >"$out"
		[ -s "$out" ] || rm -f "$out"
	fi
	if [ -f /etc/apt/sources.list ]; then
		sed -nE 's/^[[:space:]]*deb[[:space:]]+(.*debian.*)$/deb-src \1/p' /etc/apt/sources.list >"$list"
		[ -s "$list" ] || rm -f "$list"
	fi
	[ -e "$out" ] || [ -e "$list" ] || die "no Debian deb entry to mirror as deb-src"
	log "added deb-src entries: $(ls "$out" "$list" 2>/dev/null | tr '\n' ' ')"
}

setup_packages() {
	local missing="" p updated=0
	export DEBIAN_FRONTEND=noninteractive
	if ! has_deb_src; then
		add_deb_src
		apt-get update -q >/dev/null
		updated=1
	fi
	for p in $PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		log "installing:$missing"
		[ "$updated" = 1 ] || apt-get update -q >/dev/null
		apt-get install -y -q --no-install-recommends $missing >/dev/null
	fi
}

build_tools() {
	export HOME="${HOME:-/root}"
	[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
	log "cargo build --release (the six tools)"
	(cd "$REPO" && cargo build --release -q)
	export PATH="$BIN:$PATH"
}

# --- sources -------------------------------------------------------------------
# fetch_source PKG [FIX] -> prints the unpacked source directory;
# $CACHE/src/PKG/.how says what was used.
fetch_source() {
	local pkg=$1 fix=${2:-} dir="$CACHE/src/$1" d
	mkdir -p "$dir"
	if [ ! -f "$dir/.done" ]; then
		rm -rf "${dir:?}"/*
		log "apt-get source $pkg"
		if (cd "$dir" && apt-get source "$pkg" >"$dir/apt-get-source.log" 2>&1); then
			echo "apt-get source $pkg ($(sed -n 's/.*Get:.* \([^ ]*\) (dsc).*/\1/p' "$dir/apt-get-source.log" | head -n 1))" >"$dir/.how"
		else
			# The orig tarball of the same source package (apt-get
			# fetches it before it fails on the missing dsc or
			# debian.tar.xz): upstream source without Debian's patches.
			local orig
			orig=$(ls "$dir"/"${pkg}"_*.orig.tar.* 2>/dev/null | head -n 1)
			[ -n "$orig" ] || die "apt-get source $pkg failed (see $dir/apt-get-source.log)"
			log "apt-get source $pkg failed; unpacking its orig tarball $(basename "$orig")"
			(cd "$dir" && tar xf "$orig")
			echo "orig tarball $(basename "$orig") of apt-get source $pkg (dsc/debian.tar.xz unavailable: $(grep -m1 -o '404.*' "$dir/apt-get-source.log" || echo failed))" >"$dir/.how"
		fi
		touch "$dir/.done"
	fi
	d=$(find "$dir" -mindepth 1 -maxdepth 1 -type d -name "${pkg}-*" | head -n 1)
	[ -n "$d" ] || die "no unpacked ${pkg}-* in $dir"
	# Debian may ship the fix already (then there is no bug to show): use
	# the upstream orig tarball of the same source package instead.
	if [ -n "$fix" ] && (cd "$d" && patch -p1 -R --dry-run -s -f <"$fix" >/dev/null 2>&1); then
		local orig
		orig=$(ls "$dir"/"${pkg}"_*.orig.tar.* 2>/dev/null | head -n 1)
		[ -n "$orig" ] || die "$pkg: Debian's source already has the fix and there is no orig tarball"
		if [ ! -d "$dir/orig" ]; then
			log "$pkg: Debian's source already contains the fix; using $(basename "$orig")"
			mkdir -p "$dir/orig" && tar xf "$orig" -C "$dir/orig"
			echo "orig tarball $(basename "$orig") of apt-get source $pkg (Debian's patched source already has the fix)" >"$dir/.how"
		fi
		d=$(find "$dir/orig" -mindepth 1 -maxdepth 1 -type d -name "${pkg}-*" | head -n 1)
	fi
	echo "$d"
}

# --- builds ----------------------------------------------------------------------
# build_case NAME PKG FIX BINPATH CONFIGURE LPM_ARGS PLAIN_MAKE
# Builds the patch with libcare-patch-make in $CACHE/build/NAME-lpm and the
# same tree with plain gcc in $CACHE/build/NAME-plain; both are cached under
# a key of the fix and the tools.
# Sets ORIG_BIN, KPATCH, LPM_SECS, PLAIN_SECS, BUILD_CACHED.
build_case() {
	local name=$1 pkg=$2 fix=$3 binpath=$4 configure=$5 lpm_env=$6 lpm_args=$7 plain_make=$8
	local src key stamp b p t0 t1
	src=$(fetch_source "$pkg" "$fix")
	b="$CACHE/build/$name-lpm"
	p="$CACHE/build/$name-plain"
	stamp="$CACHE/build/$name.stamp"
	key=$( (sha256sum "$fix"; sha256sum "$BIN"/libcare-cc "$BIN"/libcare-patch-make "$BIN"/kpatch_gensrc \
		"$BIN"/kpatch_strip "$BIN"/kpatch_make; echo "$configure|$lpm_env|$lpm_args|$plain_make|$src") |
		sha256sum | cut -c1-16)
	BUILD_CACHED=no
	if [ -f "$stamp" ] && [ "$(sed -n 1p "$stamp")" = "$key" ] && [ -x "$b/$binpath" ]; then
		BUILD_CACHED=yes
		log "$name: builds cached (key $key)"
	else
		rm -rf "$b" "$p" "$stamp"
		mkdir -p "$CACHE/build"
		cp -a "$src" "$b"
		cp -a "$src" "$p"
		log "$name: plain build (gcc) in $p"
		(cd "$p" && if [ -n "$configure" ]; then eval "CC=gcc $configure" >configure.log 2>&1; fi)
		t0=$(date +%s.%N)
		(cd "$p" && eval "$plain_make -j$JOBS" >make.log 2>&1) || die "$name: plain build failed, see $p/make.log"
		t1=$(date +%s.%N)
		PLAIN_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
		log "$name: libcare-patch-make in $b"
		(cd "$b" && if [ -n "$configure" ]; then eval "KPATCH_STAGE=configure CC=libcare-cc $configure" >configure.log 2>&1; fi)
		t0=$(date +%s.%N)
		(cd "$b" && eval "$lpm_env libcare-patch-make -j $JOBS $lpm_args $fix" >lpm.log 2>&1) ||
			{ tail -n 20 "$b/lpm.log" >&2; die "$name: libcare-patch-make failed, see $b/lpm.log"; }
		t1=$(date +%s.%N)
		LPM_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
		printf '%s\n%s\n%s\n' "$key" "$LPM_SECS" "$PLAIN_SECS" >"$stamp"
	fi
	LPM_SECS=$(sed -n 2p "$stamp")
	PLAIN_SECS=$(sed -n 3p "$stamp")
	ORIG_BIN="$b/$binpath"
	KPATCH=$(ls "$b"/patchroot/*.kpatch 2>/dev/null | head -n 1)
	[ -n "$KPATCH" ] || die "$name: no .kpatch in $b/patchroot"
	grep 'libcare-patch-make: patch for' "$b/lpm.log" >&2 || true
	log "$name: libcare-patch-make ${LPM_SECS}s (original + patched stage), plain make ${PLAIN_SECS}s"
}

# --- libcare-ctl ---------------------------------------------------------------
# ctl patch|unpatch PID [ARGS]: prints stopped_us; fails when the command
# fails or reports an error.
ctl() {
	local cmd=$1 pid=$2 out
	shift 2
	out=$(libcare-ctl -j "$cmd" -p "$pid" "$@" 2>>"$CASE_DIR/ctl.log") ||
		{ echo "$out" >>"$CASE_DIR/ctl.log"; log "libcare-ctl $cmd -p $pid failed (see $CASE_DIR/ctl.log)"; return 1; }
	echo "$out" >>"$CASE_DIR/ctl.log"
	if [ "$(echo "$out" | jq -r 'select(.error != null) | .error' | head -n 1)" != "" ]; then
		log "libcare-ctl $cmd -p $pid: $(echo "$out" | jq -r .error)"
		return 1
	fi
	echo "$out" | jq -s 'map(.stopped_us) | max'
}

# --- results ------------------------------------------------------------------------
RESULT_LINES=()
FAILED_CASES=()
# record NAME STATUS COMPLETED FAILED STALL_MS BASE_STALL_MS STOPPED_US PLAIN LPM CACHED SOURCE NOTE
record() {
	RESULT_LINES+=("$(jq -cn --arg case "$1" --arg status "$2" --arg completed "$3" --arg failed "$4" \
		--arg stall_ms "$5" --arg baseline_max_ms "$6" --arg stopped_us "$7" --arg plain_build_s "$8" \
		--arg patch_build_s "$9" --arg build_cached "${10}" --arg source "${11}" --arg bug "${12}" \
		'{case:$case,status:$status,requests_completed:($completed|tonumber? // null),
		  requests_failed:($failed|tonumber? // null),longest_stall_ms:($stall_ms|tonumber? // null),
		  baseline_max_latency_ms:($baseline_max_ms|tonumber? // null),
		  server_stopped_us:($stopped_us|tonumber? // null),plain_build_s:($plain_build_s|tonumber? // null),
		  patch_build_s:($patch_build_s|tonumber? // null),build_cached:$build_cached,source:$source,bug:$bug}')")
	[ "$2" = ok ] || FAILED_CASES+=("$1")
}

check() { # check DESCRIPTION CONDITION...: logs and fails the case
	local what=$1
	shift
	if "$@"; then
		log "  ok: $what"
	else
		log "  FAILED: $what"
		CASE_OK=0
	fi
}
alive() { kill -0 "$1" 2>/dev/null; }

# =============================================================================
# memcached
# =============================================================================
MC_PORT=21211
mc_me() { # prints the reply line of `me k` after storing k with a 100 s TTL
	local line
	exec 3<>/dev/tcp/127.0.0.1/$MC_PORT
	printf 'set k 0 100 1\r\nx\r\nme k\r\n' >&3
	read -r -t 3 line <&3 # STORED
	read -r -t 3 line <&3
	exec 3<&-
	printf '%s\n' "${line%$'\r'}"
}
mc_bug_shown() { [[ "$(mc_me)" == *" exp=-"* ]]; }
mc_fixed() { [[ "$(mc_me)" =~ \ exp=[0-9]+ ]]; }

case_memcached() {
	CASE_BUG="upstream issue 1100: meta 'me' prints exp= with the wrong sign"
	build_case memcached memcached "$FIXES/memcached.diff" lpmake/usr/local/bin/memcached \
		"./configure" "" "" "make"
	local pid lpid stopped stopped_un out stats completed failed stall base
	"$ORIG_BIN" -l 127.0.0.1 -p "$MC_PORT" -U 0 -t 2 -u root >"$CASE_DIR/server.log" 2>&1 &
	pid=$!
	started "$pid"
	sleep 0.5
	alive "$pid" || die "memcached did not start: $(cat "$CASE_DIR/server.log")"
	log "  before: $(mc_me)"
	check "bug visible before the patch (negative exp=)" mc_bug_shown
	# baseline: the same load without patching
	memcaslap -s 127.0.0.1:$MC_PORT -T 2 -c 16 -t 4s -S 1s >"$CASE_DIR/load-baseline.log" 2>&1 || true
	base=$(mc_max_ms "$CASE_DIR/load-baseline.log")
	memcaslap -s 127.0.0.1:$MC_PORT -T 2 -c 16 -t 8s -S 1s >"$CASE_DIR/load.log" 2>&1 &
	lpid=$!
	started "$lpid"
	sleep 3
	check "load still running when the patch is applied" alive "$lpid"
	stopped=$(ctl patch "$pid" "$KPATCH") || CASE_OK=0
	log "  patched: server stopped ${stopped:-?} us; after: $(mc_me)"
	check "bug fixed after the patch (positive exp=)" mc_fixed
	wait "$lpid" || true
	forget "$lpid"
	check "server alive after the load" alive "$pid"
	stopped_un=$(ctl unpatch "$pid") || CASE_OK=0
	log "  unpatched (stopped ${stopped_un:-?} us): $(mc_me)"
	check "bug back after unpatch" mc_bug_shown
	read -r completed failed <<<"$(mc_counts "$CASE_DIR/load.log")"
	stall=$(mc_max_ms "$CASE_DIR/load.log")
	check "no failed request ($failed)" [ "${failed:-1}" = 0 ]
	check "requests completed ($completed)" [ "${completed:-0}" -gt 0 ]
	stop_pid "$pid"
	CASE_RESULT=("$completed" "$failed" "$stall" "$base" "$stopped")
}
# memcaslap's final "Run time: ... Ops: N TPS: ..." and its Max latency
# (us) in the "Total Statistics" block.
mc_counts() {
	local ops fails
	ops=$(sed -nE 's/^Run time: .* Ops: ([0-9]+) .*/\1/p' "$1" | tail -n 1)
	# errors memcaslap counts: failed/unexpected replies, missed gets of
	# keys it set (misses of keys never set are not failures)
	fails=$(grep -ciE 'error|fail|timeout|refused|reset' "$1" || true)
	echo "${ops:-0} ${fails:-0}"
}
mc_max_ms() {
	awk '/^Total Statistics/{t=1} t && /Max:/{for(i=1;i<=NF;i++) if($i=="Max:"){print $(i+1)/1000; exit}}' "$1"
}

# =============================================================================
# redis
# =============================================================================
REDIS_PORT=26399
REDIS_MAKE="USE_SYSTEM_JEMALLOC=yes USE_JEMALLOC=yes OPTIMIZATION=-O2"
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
# The reply to a selector with a second '(' inside it: OK with the bug.
redis_acl() { rcli ACL SETUSER e2e-user '(+PING' '(+SELECT' '(+DEL' ')' 2>&1 | head -n 1; }
redis_bug_shown() { [ "$(redis_acl)" = OK ]; }
redis_fixed() { [[ "$(redis_acl)" == *"ERR Error in ACL SETUSER modifier"* ]]; }
# calls and failed+rejected calls of SET and GET, from INFO commandstats
redis_calls() {
	rcli INFO commandstats | tr -d '\r' | awk -F'[:,=]' '
		/^cmdstat_(set|get):/ { for (i = 2; i < NF; i += 2) {
			if ($i == "calls") c += $(i+1);
			if ($i == "failed_calls" || $i == "rejected_calls") f += $(i+1) } }
		END { print c + 0, f + 0 }'
}
redis_max_ms() { # the largest max_latency_ms of redis-benchmark --csv
	awk -F'","' 'NR > 1 { gsub(/"/, "", $8); if ($8 + 0 > m) m = $8 + 0 } END { print m }' "$1"
}

case_redis() {
	CASE_BUG="upstream #12452 (Redis 7.2.0): ACL selector with a second '(' answers OK"
	build_case redis redis "$FIXES/redis.diff" lpmake/bin/redis-server \
		"" "$REDIS_MAKE" "-c -d PREFIX" "make $REDIS_MAKE"
	local pid lpid stopped stopped_un c0 f0 c1 f1 stall base lrc=0
	"$ORIG_BIN" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
		>"$CASE_DIR/server.log" 2>&1 &
	pid=$!
	started "$pid"
	sleep 0.5
	alive "$pid" || die "redis-server did not start: $(cat "$CASE_DIR/server.log")"
	log "  before: ACL SETUSER e2e-user (+PING (+SELECT (+DEL ) -> $(redis_acl)"
	check "bug visible before the patch (OK)" redis_bug_shown
	redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c 16 -n 100000 -t set,get --csv \
		>"$CASE_DIR/load-baseline.log" 2>&1 || true
	base=$(redis_max_ms "$CASE_DIR/load-baseline.log")
	read -r c0 f0 <<<"$(redis_calls)"
	redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c 16 -n 400000 -t set,get --csv \
		>"$CASE_DIR/load.log" 2>&1 &
	lpid=$!
	started "$lpid"
	sleep 2
	check "load still running when the patch is applied" alive "$lpid"
	stopped=$(ctl patch "$pid" "$KPATCH") || CASE_OK=0
	log "  patched: server stopped ${stopped:-?} us; after: $(redis_acl)"
	check "bug fixed after the patch (error)" redis_fixed
	wait "$lpid" || lrc=$?
	forget "$lpid"
	check "redis-benchmark exited 0 ($lrc)" [ "$lrc" = 0 ]
	check "server alive after the load" alive "$pid"
	read -r c1 f1 <<<"$(redis_calls)"
	stopped_un=$(ctl unpatch "$pid") || CASE_OK=0
	log "  unpatched (stopped ${stopped_un:-?} us): $(redis_acl)"
	check "bug back after unpatch" redis_bug_shown
	local completed=$((c1 - c0)) failed=$((f1 - f0))
	failed=$((failed + $(grep -c 'Error' "$CASE_DIR/load.log" || true)))
	stall=$(redis_max_ms "$CASE_DIR/load.log")
	check "no failed request ($failed)" [ "$failed" = 0 ]
	check "all 800000 requests completed ($completed)" [ "$completed" = 800000 ]
	stop_pid "$pid"
	CASE_RESULT=("$completed" "$failed" "$stall" "$base" "$stopped")
}

# =============================================================================
# nginx
# =============================================================================
NGINX_PORT=28080
nginx_conf() { # nginx_conf DIR MASTER(on|off)
	mkdir -p "$1/logs"
	cat >"$1/nginx.conf" <<EOF
daemon off;
master_process $2;
worker_processes 2;
error_log logs/error.log;
pid logs/nginx.pid;
events { worker_connections 512; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        # a rewrite with arguments, then a rewrite that copies a capture:
        # with the bug the second copy is escaped as arguments
        location /t/ {
            rewrite ^/t/(.*)\$ /u/\$1?x=1;
            rewrite ^/u/(.*)\$ /v/\$1 last;
        }
        location /v/ { return 200 "uri=\$uri args=\$args\n"; }
    }
}
EOF
}
NGX_GOOD="uri=/v/a b args=x=1"
ngx_get() { curl -sS --max-time 3 "http://127.0.0.1:$NGINX_PORT/t/a%20b"; }
# 8 requests, each on a new connection, so that every worker answers some
ngx_8() { local i; for i in 1 2 3 4 5 6 7 8; do ngx_get || echo "curl failed"; done; }
ngx_show() { ngx_8 | sort | uniq -c | sed 's/^ *//' | paste -sd ';' -; }
ngx_fixed() { [ "$(ngx_8 | sort -u)" = "$NGX_GOOD" ]; }
ngx_bug_shown() { [ "$(ngx_8 | grep -c -F -x -v "$NGX_GOOD")" = 8 ]; }
wrk_max_ms() { # wrk's "Latency avg stdev max" line, max in ms
	awk '$1 == "Latency" && NF >= 4 { v = $4; u = v; sub(/^[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
		m = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : (u == "m") ? v * 60000 : v; print m; exit }' "$1"
}
wrk_counts() { # completed, failed (socket errors + non-2xx/3xx)
	local n f
	n=$(sed -nE 's/^ *([0-9]+) requests in .*/\1/p' "$1")
	f=$(awk '/Socket errors:/ { gsub(/,/, ""); s += $4 + $6 + $8 + $10 } /Non-2xx or 3xx/ { s += $NF } END { print s + 0 }' "$1")
	echo "${n:-0} $f"
}
children() { awk -v p="$1" '$4 == p { print $1 }' /proc/[0-9]*/stat 2>/dev/null || true; }

nginx_case() { # nginx_case off|on
	local master=$1 dir="$CASE_DIR/prefix" pid lpid pids p s stopped=0 stall base completed failed
	build_case nginx nginx "$FIXES/nginx.diff" lpmake/usr/local/nginx/sbin/nginx "./configure" "" "" "make"
	nginx_conf "$dir" "$master"
	"$ORIG_BIN" -p "$dir" -c nginx.conf >"$CASE_DIR/server.log" 2>&1 &
	pid=$!
	started "$pid"
	sleep 0.7
	alive "$pid" || die "nginx did not start: $(cat "$CASE_DIR/server.log" "$dir/logs/error.log")"
	pids=$pid
	if [ "$master" = on ]; then
		pids="$pid $(children "$pid" | tr '\n' ' ')"
		# shellcheck disable=SC2086
		started $pids
		log "  master $pid, workers: $(children "$pid" | tr '\n' ' ')"
		check "two workers" [ "$(children "$pid" | wc -l)" = 2 ]
	fi
	log "  before: GET /t/a%20b x8 -> $(ngx_show)"
	check "bug visible before the patch (URI not /v/a b)" ngx_bug_shown
	wrk -t 2 -c 16 -d 4s --latency "http://127.0.0.1:$NGINX_PORT/t/abc" >"$CASE_DIR/load-baseline.log" 2>&1 || true
	base=$(wrk_max_ms "$CASE_DIR/load-baseline.log")
	wrk -t 2 -c 16 -d 8s --latency "http://127.0.0.1:$NGINX_PORT/t/abc" >"$CASE_DIR/load.log" 2>&1 &
	lpid=$!
	started "$lpid"
	sleep 3
	check "load still running when the patch is applied" alive "$lpid"
	for p in $pids; do
		s=$(ctl patch "$p" "$KPATCH") || { CASE_OK=0; s=0; }
		log "  patched pid $p: stopped $s us"
		[ "$s" -gt "$stopped" ] && stopped=$s
	done
	log "  after: GET /t/a%20b x8 -> $(ngx_show)"
	check "bug fixed after the patch (every answer: $NGX_GOOD)" ngx_fixed
	wait "$lpid" || true
	forget "$lpid"
	check "server alive after the load" alive "$pid"
	for p in $pids; do
		ctl unpatch "$p" >/dev/null || CASE_OK=0
	done
	log "  unpatched: GET /t/a%20b x8 -> $(ngx_show)"
	check "bug back after unpatch" ngx_bug_shown
	read -r completed failed <<<"$(wrk_counts "$CASE_DIR/load.log")"
	stall=$(wrk_max_ms "$CASE_DIR/load.log")
	check "no failed request ($failed)" [ "$failed" = 0 ]
	check "requests completed ($completed)" [ "${completed:-0}" -gt 0 ]
	stop_pid "$pid"
	# shellcheck disable=SC2086
	forget $pids
	CASE_RESULT=("$completed" "$failed" "$stall" "$base" "$stopped")
}
case_nginx() {
	CASE_BUG="ngx_http_script_regex_end_code() does not reset e->is_args (master_process off)"
	nginx_case off
}
case_nginx_workers() {
	CASE_BUG="ngx_http_script_regex_end_code() does not reset e->is_args (master + 2 workers, all patched)"
	nginx_case on
}

# =============================================================================
# glibc (opt-in: LIBCARE_E2E_GLIBC=1)
# =============================================================================
# Debian 12's glibc source already has the fix (in git-updates.diff, the
# release/2.36 branch); the original is that source with this one hunk
# reverted, i.e. Debian's glibc as it was before the fix, and the patch is
# the hunk itself. glibc builds out of tree: configure and libcare-patch-make
# run in build/ with -s pointing at the source.
case_glibc() {
	CASE_BUG="CVE-2025-15281: wordexp(WRDE_REUSE|WRDE_APPEND) keeps the freed word count"
	local fix=${LIBCARE_E2E_GLIBC_FIX:-$FIXES/glibc-wordexp.diff} deb src b p stamp key okey t0 t1
	deb=$(fetch_source glibc)
	# the source next to its build directories (configured as ../glibc-2.36)
	src="$CACHE/build/glibc/glibc-2.36"
	if [ ! -f "$src/.done" ]; then
		mkdir -p "$CACHE/build/glibc"
		rm -rf "$src" && cp -a "$deb" "$src"
		(cd "$src" && patch -p1 -R -s <"$fix") || die "glibc: cannot revert the fix from Debian's source"
		touch "$src/.done"
	fi
	echo "apt-get source glibc ($(sed -n 's/.*Get:.* \([^ ]*\) (dsc).*/\1/p' "$CACHE/src/glibc/apt-get-source.log" | head -n 1)), with the fix's hunk of debian/patches/git-updates.diff reverted" >"$CACHE/src/glibc/.how"
	b="$CACHE/build/glibc/lpm"
	p="$CACHE/build/glibc/plain"
	stamp="$CACHE/build/glibc/stamp"
	# okey: what the original stage's output depends on (the compiler
	# wrapper; the source is fixed); key: that, the other tools and the fix.
	okey=$(sha256sum <"$BIN"/libcare-cc | cut -c1-16)
	key=$( (echo "$okey"; sha256sum <"$fix"; sha256sum "$BIN"/libcare-patch-make "$BIN"/kpatch_gensrc \
		"$BIN"/kpatch_strip "$BIN"/kpatch_make) | sha256sum | cut -c1-16)
	BUILD_CACHED=no
	if [ -f "$stamp" ] && [ "$(sed -n 1p "$stamp")" = "$key" ]; then
		BUILD_CACHED=yes
		log "glibc: builds cached (key $key)"
	elif [ -f "$CACHE/build/glibc/original.key" ] && [ "$(cat "$CACHE/build/glibc/original.key")" = "$okey" ] &&
		[ -d "$b/lpmake" ] && [ -f "$stamp" ]; then
		# Another fix, same tools: the original stage of the last run (its
		# installs and kept assembly) is reused; only the patched stage builds.
		BUILD_CACHED=reused-original
		log "glibc: libcare-patch-make --reuse-original in $b (patched stage only)"
		rm -rf "$b/patchroot"
		t0=$(date +%s.%N)
		(cd "$b" && libcare-patch-make --reuse-original -j "$JOBS" -s ../glibc-2.36 "$fix" >lpm.log 2>&1) ||
			{ tail -n 20 "$b/lpm.log" >&2; die "glibc: libcare-patch-make --reuse-original failed, see $b/lpm.log"; }
		t1=$(date +%s.%N)
		LPM_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
		printf '%s\n%s\n%s\n%s\n' "$key" "$LPM_SECS" "$(sed -n 3p "$stamp")" \
			"patched stage only; the full run took $(sed -n 2p "$stamp")s" >"$stamp.new"
		mv "$stamp.new" "$stamp"
	else
		rm -rf "$b" "$p" "$stamp" "$CACHE/build/glibc/original.key"
		mkdir -p "$b" "$p"
		log "glibc: libcare-patch-make in $b (long: the whole library twice)"
		(cd "$b" && KPATCH_STAGE=configure CC=libcare-cc ../glibc-2.36/configure \
			--prefix=/usr --disable-werror >configure.log 2>&1) || die "glibc: configure failed, see $b/configure.log"
		t0=$(date +%s.%N)
		(cd "$b" && libcare-patch-make -j "$JOBS" -s ../glibc-2.36 "$fix" >lpm.log 2>&1) ||
			{ tail -n 20 "$b/lpm.log" >&2; die "glibc: libcare-patch-make failed, see $b/lpm.log"; }
		t1=$(date +%s.%N)
		echo "$okey" >"$CACHE/build/glibc/original.key"
		LPM_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
		PLAIN_SECS=""
		if [ "${LIBCARE_E2E_GLIBC_PLAIN:-1}" = 1 ]; then
			log "glibc: plain build (gcc) in $p"
			(cd "$p" && CC=gcc ../glibc-2.36/configure --prefix=/usr --disable-werror \
				>configure.log 2>&1) || die "glibc: plain configure failed"
			t0=$(date +%s.%N)
			(cd "$p" && make -j"$JOBS" >make.log 2>&1) || die "glibc: plain build failed, see $p/make.log"
			t1=$(date +%s.%N)
			PLAIN_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
		fi
		printf '%s\n%s\n%s\n' "$key" "$LPM_SECS" "$PLAIN_SECS" >"$stamp"
	fi
	LPM_SECS=$(sed -n 2p "$stamp")
	PLAIN_SECS=$(sed -n 3p "$stamp")
	grep 'libcare-patch-make: patch for' "$b/lpm.log" >&2 || true
	KPATCH=$(grep -o 'patch for [^ ]*libc.so[^ ]*  BuildID [0-9a-f]*' "$b/lpm.log" | awk '{print $NF}' | head -n 1)
	[ -n "$KPATCH" ] && KPATCH="$b/patchroot/$KPATCH.kpatch"
	[ -f "$KPATCH" ] || die "glibc: no .kpatch for libc.so.6 in $b/patchroot"
	log "glibc: libcare-patch-make ${LPM_SECS}s $(sed -n 4p "$stamp"), plain make ${PLAIN_SECS:-?}s"

	# testrun.sh runs a program with the build tree's ld.so and libc.so.6;
	# the patched stage left its own build there, so put the original
	# stage's (installed into lpmake/, same BuildID as the .kpatch's
	# target) back first.
	local libc ldso
	libc=$(find "$b/lpmake" -name 'libc.so.6' | head -n 1)
	ldso=$(find "$b/lpmake" -name 'ld-linux-x86-64.so.2' | head -n 1)
	[ -n "$libc" ] && [ -n "$ldso" ] || die "glibc: no libc.so.6 or ld.so in $b/lpmake"
	cp -L "$libc" "$b/libc.so.6.orig" && mv -f "$b/libc.so.6.orig" "$(readlink -f "$b/libc.so.6")"
	cp -L "$ldso" "$b/ld.so.orig" && mv -f "$b/ld.so.orig" "$(readlink -f "$b/elf/ld-linux-x86-64.so.2")"
	gcc -O2 -o "$CASE_DIR/wordexp-loop" "$REPO/tests/e2e/glibc-wordexp.c"

	local pid out stopped un completed failed stall states
	"$b/testrun.sh" "$CASE_DIR/wordexp-loop" 6000 >"$CASE_DIR/out.log" 2>&1 &
	pid=$!
	started "$pid"
	sleep 2
	check "program alive before the patch" alive "$pid"
	check "runs the built libc.so.6" grep -q "$b/libc.so" "/proc/$pid/maps"
	stopped=$(ctl patch "$pid" "$KPATCH") || CASE_OK=0
	log "  patched: stopped ${stopped:-?} us"
	sleep 2
	un=$(ctl unpatch "$pid") || CASE_OK=0
	log "  unpatched: stopped ${un:-?} us"
	wait "$pid" || true
	forget "$pid"
	states=$(grep -o 'wordc=[0-9]*' "$CASE_DIR/out.log" | paste -sd ' ' -)
	log "  program output states: $states"
	check "bug, fixed, bug again (wordc=3 wordc=1 wordc=3)" [ "$states" = "wordc=3 wordc=1 wordc=3" ]
	read -r completed failed stall <<<"$(sed -nE 's/^iterations=([0-9]+) failed=([0-9]+) max_gap_us=([0-9]+)$/\1 \2 \3/p' "$CASE_DIR/out.log")"
	check "all iterations completed (${completed:-none})" [ "${completed:-0}" = 6000 ]
	check "no failed call (${failed:-?})" [ "${failed:-1}" = 0 ]
	[ -n "$stall" ] && stall=$(awk -v s="$stall" 'BEGIN{print s / 1000}')
	CASE_RESULT=("$completed" "$failed" "$stall" "" "$stopped")
}

# =============================================================================
# main
# =============================================================================
setup_packages
build_tools
mkdir -p "$CACHE/runs"
for c in $CASES; do
	CASE_DIR="$CACHE/runs/$c"
	rm -rf "$CASE_DIR"
	mkdir -p "$CASE_DIR"
	CASE_OK=1
	CASE_RESULT=()
	log "=== $c"
	t0=$(date +%s)
	fn="case_${c//-/_}"
	"$fn"
	cleanup
	status=ok
	[ "$CASE_OK" = 1 ] || status=FAILED
	log "=== $c: $status ($(($(date +%s) - t0)) s)"
	record "$c" "$status" "${CASE_RESULT[0]:-}" "${CASE_RESULT[1]:-}" "${CASE_RESULT[2]:-}" \
		"${CASE_RESULT[3]:-}" "${CASE_RESULT[4]:-}" "${PLAIN_SECS:-}" "${LPM_SECS:-}" "${BUILD_CACHED:-}" \
		"$(cat "$CACHE/src/${c%-workers}/.how" 2>/dev/null || true)" "${CASE_BUG:-}"
done

total=$(($(date +%s) - SUITE_START))
printf '%s\n' "${RESULT_LINES[@]}" | jq -s --argjson total "$total" --arg host "$(uname -srm), $(nproc) CPUs" \
	'{suite_seconds:$total,machine:$host,cases:.}' >"$RESULTS"
echo
printf '%-14s %-7s %10s %7s %10s %10s %11s %9s %9s\n' case status completed failed stall_ms base_ms stopped_us plain_s patch_s
jq -r '.cases[] | [.case,.status,.requests_completed,.requests_failed,.longest_stall_ms,.baseline_max_latency_ms,
	.server_stopped_us,.plain_build_s,.patch_build_s] | map(if . == null then "-" else tostring end) | @tsv' "$RESULTS" |
	while IFS=$'\t' read -r a b c d e f g h i; do
		printf '%-14s %-7s %10s %7s %10s %10s %11s %9s %9s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h" "$i"
	done
echo "suite: ${total}s; results in $RESULTS"
[ ${#FAILED_CASES[@]} = 0 ] || die "failed cases: ${FAILED_CASES[*]}"

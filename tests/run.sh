#!/usr/bin/env bash
# Runs every suite and ends with one line summing them all: "N passed, N failed".
#   tests/run.sh BUILD_DIR [unit|integration] [NAME_FILTER]
# Unit suites are cmocka binaries (build/tests/test_*); integration suites are
# tests/integration/test_*.sh, each ending with "# passed N failed M".
set -u
B=${1:-build}; what=${2:-all}; filter=${3:-${TESTS:-}}
B=$(cd "$B" && pwd)
cd "$(dirname "$0")/.."
total_pass=0; total_fail=0; failed_suites=()
logdir="$B/test-logs"; mkdir -p "$logdir"

run_suite() { # name, command...
	local name=$1; shift
	local log="$logdir/$name.log" p f rc
	local t0=$SECONDS
	"$@" >"$log" 2>&1; rc=$?
	if grep -q '^\[==========\]' "$log"; then   # cmocka
		p=$(grep -E '^\[  PASSED  \] [0-9]+' "$log" | awk '{s+=$4} END {print s+0}')
		f=$(grep -E '^\[  FAILED  \] [0-9]+ test' "$log" | awk '{s+=$4} END {print s+0}')
	else
		p=$(grep -E '^# passed [0-9]+ failed [0-9]+' "$log" | tail -1 | awk '{print $3}')
		f=$(grep -E '^# passed [0-9]+ failed [0-9]+' "$log" | tail -1 | awk '{print $5}')
		p=${p:-0}; f=${f:-0}
	fi
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi  # a suite that crashed counts as a failure
	total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
	if [ "$f" -ne 0 ]; then
		failed_suites+=("$name")
		printf '%-34s %4d passed %3d failed  (%ds)  FAIL, log: %s\n' "$name" "$p" "$f" $((SECONDS - t0)) "$log"
		grep -E 'not ok|FAILED|\[  ERROR   \]|Assert|error:' "$log" | head -15 | sed 's/^/    /'
	else
		printf '%-34s %4d passed %3d failed  (%ds)\n' "$name" "$p" "$f" $((SECONDS - t0))
	fi
}

if [ "$what" = all ] || [ "$what" = unit ]; then
	for t in "$B"/tests/test_*; do
		[ -x "$t" ] || continue
		n=$(basename "$t"); [ -n "$filter" ] && [[ $n != *$filter* ]] && continue
		run_suite "$n" "$t"
	done
fi
if [ "$what" = all ] || [ "$what" = integration ]; then
	for t in tests/integration/test_*.sh; do
		[ -f "$t" ] || continue
		n=$(basename "$t" .sh); [ -n "$filter" ] && [[ $n != *$filter* ]] && continue
		run_suite "$n" env LLMCAP_BUILD="$B" bash "$t"
	done
fi
[ ${#failed_suites[@]} -gt 0 ] && echo "failed suites: ${failed_suites[*]}"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]

#!/usr/bin/env bash
# Runs each libFuzzer target for SECONDS on a copy of its seed corpus (the tree's
# fuzz/corpus/TARGET is only read) with its dictionary fuzz/TARGET.dict, prints the executions per target, and fails
# when any target crashed (the crashing input is left in BUILD/fuzz/artifacts/).
#   fuzz/run.sh BUILD_DIR SECONDS TARGET_BINARY...
set -u
B=$1; secs=$2; shift 2
cd "$(dirname "$0")/.."
case $secs in ''|*[!0-9]*) echo "fuzz: FUZZ_SECONDS must be a whole number of seconds" >&2; exit 2 ;; esac
mkdir -p "$B/fuzz/artifacts" "$B/fuzz/logs" "$B/fuzz/tmp"
failed=()
for bin in "$@"; do
	t=$(basename "$bin")
	work="$B/fuzz/corpus/$t"
	mkdir -p "$work"
	[ -d "fuzz/corpus/$t" ] && cp -f fuzz/corpus/"$t"/* "$work"/ 2>/dev/null
	log="$B/fuzz/logs/$t.log"
	dict=()
	[ -f "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")
	TMPDIR="$B/fuzz/tmp" "$bin" -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
		"${dict[@]}" -artifact_prefix="$B/fuzz/artifacts/$t-" "$work" >"$log" 2>&1
	rc=$?
	execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
	per=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}')
	files=$(find "$work" -type f | wc -l)
	if [ "$rc" -ne 0 ]; then
		failed+=("$t")
		printf 'fuzz %-10s CRASH (exit %d) after %s executions, log: %s\n' "$t" "$rc" "${execs:-?}" "$log"
		grep -E 'ERROR|SUMMARY|fuzz property failed|Test unit written' "$log" | head -8 | sed 's/^/    /'
	else
		printf 'fuzz %-10s %9s executions in %ss (%s/s), corpus %d inputs\n' "$t" "${execs:-?}" "$secs" \
			"${per:-?}" "$files"
	fi
done
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: crashed: ${failed[*]}"
	exit 1
fi
echo "fuzz: no crash in ${#} targets"

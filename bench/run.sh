#!/usr/bin/env bash
# make bench: every benchmark, figures on stdout.
set -u
B=$(cd "${1:-build}" && pwd)
cd "$(dirname "$0")/.."
for b in "$B"/bench/*; do
	[ -x "$b" ] || continue
	echo "== $(basename "$b")"
	"$b"
done
for s in bench/bench_*.sh; do
	[ -f "$s" ] || continue
	echo "== $(basename "$s" .sh)"
	bash "$s" "$B"
done

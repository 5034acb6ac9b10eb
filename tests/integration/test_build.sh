#!/usr/bin/env bash
# The build keeps what it built: `make test` run twice compiles nothing the second time
# (objects only the unit tests link used to be deleted as intermediates and rebuilt each run).
. "$(dirname "$0")/lib.sh"

targets="all"
for t in "$LC_ROOT"/tests/unit/test_*.c; do targets+=" $B/tests/$(basename "$t" .c)"; done
for t in "$LC_ROOT"/tests/bin/*.c; do targets+=" $B/tests/bin/$(basename "$t" .c)"; done
san=${LLMCAP_SAN:+SANITIZE=1}

missing=0
for o in "$B"/obj/preload/*.o "$B"/obj/server/*.o; do [ -f "$o" ] || missing=1; done
for src in "$LC_ROOT"/preload/classify.c "$LC_ROOT"/preload/conn.c "$LC_ROOT"/server/api.c; do
	[ -f "$src" ] || continue
	o=$B/obj/${src#"$LC_ROOT"/}; o=${o%.c}.o
	[ -f "$o" ] || { missing=1; echo "# deleted after the build: $o"; }
done
expect_eq "objects only the unit tests link are kept after the build" 0 "$missing"

# Nothing to rebuild, unless a source changed while the suite ran (then there is nothing to judge).
newest_bin=$(ls -t "$B"/tests/test_* 2>/dev/null | head -1)
if [ -n "$newest_bin" ] && [ -z "$(cd "$LC_ROOT" && find shared-state sdk preload server cli tests/unit tests/bin examples Makefile -newer "$newest_bin" -name '*.[ch]' -o -newer "$newest_bin" -name Makefile 2>/dev/null | head -1)" ]; then
	out=$(make -C "$LC_ROOT" --no-print-directory B="$B" $san -n $targets 2>&1 | grep -v '^make' | head -5)
	expect_eq "a second build compiles nothing" "" "$out"
else
	ok "a source changed during the run: the up-to-date check is skipped"
fi
finish

#!/usr/bin/env bash
# make bench: every benchmark, figures on stdout.
set -u
B=$(cd "${1:-build}" && pwd)
cd "$(dirname "$0")/.."

# a PostgreSQL of the benchmarks' own (Debian's postgresql: initdb in a temp dir as an unprivileged
# user, a free port), for the figures on the PostgreSQL store: LLMCAP_BENCH_PG_URL
PGT=$(mktemp -d /tmp/llmcap-bench-pg.XXXXXX)
PG_AS=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
trap '[ -n "${LLMCAP_BENCH_PG_URL:-}" ] && "${PG_AS[@]}" "$pg_bin/pg_ctl" -D "$PGT/data" -m immediate -w stop >/dev/null 2>&1; rm -rf "$PGT"' EXIT
if [ -x "$pg_bin/initdb" ]; then
	if [ "$(id -u)" = 0 ]; then
		u=postgres; id -u postgres >/dev/null 2>&1 || u=nobody
		chmod 711 "$PGT"; chown "$u" "$PGT"
		PG_AS=(setpriv --reuid="$u" --regid="$(id -g "$u")" --clear-groups)
	fi
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
	if "${PG_AS[@]}" "$pg_bin/initdb" -D "$PGT/data" -A trust -U llmcap -E UTF8 --no-sync >"$PGT/init.log" 2>&1 &&
		"${PG_AS[@]}" "$pg_bin/pg_ctl" -D "$PGT/data" -l "$PGT/log" -w -t 60 \
			-o "-p $port -k $PGT -c listen_addresses=127.0.0.1" start >/dev/null 2>&1; then
		export LLMCAP_BENCH_PG_URL="postgresql://llmcap@127.0.0.1:$port/postgres"
	else
		echo "(PostgreSQL did not start: $(tail -2 "$PGT/init.log" "$PGT/log" 2>/dev/null | tr '\n' ' '))"
	fi
fi

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

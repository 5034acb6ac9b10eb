#!/usr/bin/env bash
# bench_usage_memory: the server's peak memory while it takes the largest usage report it accepts
# (16 MiB: 65,536 counters with 128-byte customer ids, padded to the cap), against the body's size.
# Real llmcap-server over loopback HTTP, an enrolled host; the peak is the server's VmHWM.
# Figures, not tests.
set -u
. "$(dirname "$0")/lib.sh"

"$B/llmcap" keygen --out "$T/keys" >/dev/null
TOKEN=bench-admin-token-0123456789abcdef
echo "$TOKEN" >"$T/admin.token"
SP=$(free_port)
"$B/llmcap-server" --listen "127.0.0.1:$SP" --data "$T/srv" --signing-key "$T/keys/llmcap.key" \
	--admin-token-file "$T/admin.token" >/dev/null 2>&1 & pids+=($!)
SRV=$!
wait_port "$SP" || { echo "bench_usage_memory: could not start the server"; exit 1; }
S=http://127.0.0.1:$SP
code=$(curl -s -X POST -H "Authorization: Bearer $TOKEN" "$S/v1/admin/hosts/enroll" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["code"])')
cred=$(curl -s -X POST -H 'content-type: application/json' -d '{"code":"'"$code"'","host_id":"h-mem"}' \
	"$S/v1/hosts/enroll" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["credential"])')
# REPORT SEQ USED: the largest report, its counters all customers' lifetime costs
report() {
	"$PY" - "$1" "$2" "$T/report.json" <<'EOF'
import json, sys
seq, used, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
cap = 65536 * 256
ctrs = ['{"scope":"customer","id":"%s","metric":"cost","window":"lifetime","bucket":0,"used":%d}'
        % (("c%07d" % i) * 16, used) for i in range(65536)]
body = '{"host_id":"h-mem","epoch":"e","seq":%d,"counters":[%s]}' % (seq, ",".join(ctrs))
body += " " * (cap - len(body))   # padded to the cap: the body the server must hold
open(out, "w").write(body)
EOF
}
cpu() { awk '{print $14 + $15}' "/proc/$SRV/stat"; }   # the server's CPU time, in clock ticks
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$SRV/status"; }
rss() { awk '/^RssAnon/ {a=$2} /^RssFile/ {f=$2} END {printf "%d kB anonymous + %d kB of mapped store", a, f}' "/proc/$SRV/status"; }
post() { curl -s -o "$T/answer" -w '%{http_code}' -H "Authorization: Bearer $cred" -H 'content-type: application/json' \
	--data-binary @"$T/report.json" "$S/v1/usage"; }
body_kb=$(( (65536 * 256) / 1024 ))
for round in $(seq 1 "${ROUNDS:-2}"); do
	report "$round" $((round * 1000))
	h0=$(hwm)
	c0=$(cpu)
	t0=$(date +%s%N)
	st=$(post)
	t1=$(date +%s%N)
	c1=$(cpu)
	h1=$(hwm)
	what=$([ "$round" = 1 ] && echo "new counters" || echo "the same counters, raised")
	printf 'POST /v1/usage, 16 MiB, 65536 counters (%s): HTTP %s in %d ms (%d ms of server CPU); answer %d bytes; peak %d -> %d kB (+%d kB = %.1f x the body), RSS after: %s\n' \
		"$what" "$st" $(((t1 - t0) / 1000000)) $(((c1 - c0) * 1000 / $(getconf CLK_TCK))) "$(stat -c %s "$T/answer")" "$h0" "$h1" $((h1 - h0)) \
		"$(echo "($h1 - $h0) / $body_kb" | bc -l)" "$(rss)"
done

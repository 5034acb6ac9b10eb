#!/usr/bin/env bash
# docs/server.md's admin examples, as written: every ```sh block marked <!-- admin-example --> shows
# each change with `llmcap admin` and the curl line beside it. Each block runs twice: its `llmcap
# admin` lines against one server (curl a no-op there), its curl lines against another (`llmcap
# admin` a no-op there). Every call must succeed, the two must make as many calls, and after each
# block both servers must hold the same policy and the same pieces. Every sh block of the page
# that calls the admin API must be marked (so each example is shown both ways).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"

setup_keys
start_server
URL_A=$SRV_URL
PORT_B=$(free_port)
"$SERVER" --listen "127.0.0.1:$PORT_B" --data "$T/srvdata-b" --signing-key "$T/keys/llmcap.key" \
	--admin-token-file "$T/admin.token" >>"$T/server-b.log" 2>&1 &
_pids+=($!)
wait_port "$PORT_B" || fail "the second server starts"
URL_B=http://127.0.0.1:$PORT_B

# the page's sh blocks: marked ones into $T/block-N.sh; an unmarked one that calls the admin API
# is reported
"$PY" - "$LC_ROOT/docs/server.md" "$T" >"$T/blocks.txt" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
n = 0
for m in re.finditer(r"(<!-- admin-example -->\n)?```sh\n(.*?)```", text, re.S):
    body = m.group(2)
    if m.group(1):
        n += 1
        open("%s/block-%d.sh" % (sys.argv[2], n), "w").write(body)
        print("block", n, body.count("llmcap admin "), len(re.findall(r"^curl |\ncurl ", body)))
    elif re.search(r"llmcap admin [a-z]", body) or re.search(r"curl .*(/v1/admin|\$S/)", body):   # not the synopsis
        print("unmarked", body.splitlines()[0][:100])
EOF
expect_eq "every sh block that calls the admin API is marked as an admin example" "" "$(grep '^unmarked' "$T/blocks.txt")"
check "the page has admin examples ($(grep -c '^block' "$T/blocks.txt"))" test "$(grep -c '^block' "$T/blocks.txt")" -ge 5
while read -r _ n adm crl; do
	expect_eq "block $n: each llmcap admin line has its curl line" "$adm" "$crl"
done < <(grep '^block' "$T/blocks.txt")

# run_block MODE URL FILE: the block as written, with one kind of call live (admin or curl)
run_block() {
	mkdir -p "$T/wd-$1"
	(
		cd "$T/wd-$1" || exit 1
		mode=$1 url=$2
		KEY=sk-docs-example
		llmcap() {
			if [ "$1" != admin ]; then "$LLMCAP" "$@"; return; fi
			[ "$mode" = admin ] || return 0
			echo call >>"$T/calls-$mode"
			"$LLMCAP" "$@" >>"$T/out-$mode" 2>"$T/err1" || echo "llmcap $*: $(cat "$T/err1")" >>"$T/fail-$mode"
		}
		curl() {
			[ "$mode" = curl ] || return 0
			echo call >>"$T/calls-$mode"
			local c
			c=$(command curl -s -o "$T/curl.out" -w '%{http_code}' "$@")
			case $c in 2??) ;; *) echo "curl $*: $c $(head -c 300 "$T/curl.out")" >>"$T/fail-$mode" ;; esac
		}
		A="Authorization: Bearer $TOKEN" S=$url
		export LLMCAP_SERVER=$url LLMCAP_ADMIN_TOKEN=$TOKEN
		# shellcheck disable=SC1090
		. <(sed -e "s#http://127.0.0.1:8787#$url#g" -e "s#/etc/llmcap-server/admin.token#$T/admin.token#g" "$3")
	)
}
# state URL: the policy without its version and times, and every piece
state() {
	local p
	for p in policy org customers webhooks emails settings teams keys providers prices; do
		command curl -s -H "Authorization: Bearer $TOKEN" "$1/v1/admin/$p" | "$PY" -c '
import json, sys
j = json.load(sys.stdin)
for k in ("version", "issued_at", "expires_at"):
    j.pop(k, None)
print(sys.argv[1], json.dumps(j, sort_keys=True))' "$p"
	done
}

for f in $(ls "$T"/block-*.sh | sort -V); do
	n=$(basename "$f" .sh)
	: >"$T/calls-admin"; : >"$T/calls-curl"; : >"$T/fail-admin"; : >"$T/fail-curl"
	run_block admin "$URL_A" "$f"
	run_block curl "$URL_B" "$f"
	expect_eq "$n: every llmcap admin call succeeds" "" "$(cat "$T/fail-admin")"
	expect_eq "$n: every curl call succeeds" "" "$(cat "$T/fail-curl")"
	expect_eq "$n: as many llmcap admin calls as curl calls" "$(wc -l <"$T/calls-curl")" "$(wc -l <"$T/calls-admin")"
	state "$URL_A" >"$T/state-a"
	state "$URL_B" >"$T/state-b"
	expect_eq "$n: both servers hold the same policy and pieces" "" "$(diff "$T/state-a" "$T/state-b" | head -c 1500)"
done
check "the examples changed something (org cap, team, key, customers, webhooks, e-mails, leases)" \
	grep -q '"lease_ttl_seconds": 30' "$T/state-a"
check "... and llmcap admin printed its tables" grep -q "research" "$T/out-admin"
finish

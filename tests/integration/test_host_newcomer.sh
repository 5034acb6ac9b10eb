#!/usr/bin/env bash
# Issue 13, the host side: what a newcomer stumbled over. Key material is git-ignored; keygen's
# errors have one prefix; an unsigned policy given to apply says to sign it; status names the
# state directory (also when LLMCAP_STATE_DIR is a file); the agent's messages fit the situation
# (no policy yet, no webhooks); a host with a local policy version 7 joins a server whose policy is
# version 1 after `llmcap reset-policy --yes`; with the server's long-poll, an admin change reaches
# the host in about a second, not an interval.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"
setup_keys

# ---- keys stay out of git ----
git -C "$LC_ROOT" check-ignore -q keys/llmcap.key && git -C "$LC_ROOT" check-ignore -q somewhere/llmcap.key &&
	ok "keys/ and *.key are git-ignored" || fail "keys are not git-ignored"

# ---- keygen: one prefix ----
"$LLMCAP" keygen --out "$T/keys" 2>"$T/kg.err"; rc=$?
v=$(cat "$T/kg.err")
[ $rc -ne 0 ] && [[ $v == "llmcap: keygen: "*"already exists"* ]] && [[ $v != *"keygen: keygen"* ]] &&
	ok "keygen over an existing key: one 'keygen:' prefix ($v)" || fail "keygen error: rc $rc '$v'"

# ---- apply of an unsigned policy: a hint to sign it ----
cat >"$T/p.json" <<JSON
{"schema": 1, "version": 1, "issued_at": "2026-01-01T00:00:00Z", "expires_at": "$(iso_in_days 30)",
 "providers": [{"name": "openai", "format": "openai", "hosts": ["api.openai.com"]}]}
JSON
"$LLMCAP" apply --trust "$T/keys/llmcap.pub" "$T/p.json" 2>"$T/ap.err"; rc=$?
[ $rc -ne 0 ] && grep -q "sign it first: llmcap sign --key KEYFILE $T/p.json" "$T/ap.err" &&
	ok "apply of an unsigned policy says to run llmcap sign first" || fail "unsigned apply: rc $rc $(cat "$T/ap.err")"

# ---- status names the state directory ----
export LLMCAP_STATE_DIR=$T/nothing-here
"$LLMCAP" status 2>"$T/st.err"; rc=$?
[ $rc -eq 1 ] && grep -q "no policy installed in $T/nothing-here" "$T/st.err" &&
	ok "status without a policy names the directory it looked in" || fail "status: rc $rc $(cat "$T/st.err")"
: >"$T/a-file"
export LLMCAP_STATE_DIR=$T/a-file
"$LLMCAP" status 2>"$T/st.err"; rc=$?
[ $rc -eq 1 ] && grep -q "state directory $T/a-file is not a directory (LLMCAP_STATE_DIR)" "$T/st.err" &&
	ok "status with LLMCAP_STATE_DIR pointing at a file says so" || fail "status on a file: rc $rc $(cat "$T/st.err")"

# ---- agent messages ----
export LLMCAP_STATE_DIR=$T/fresh
dead=$(free_port)
"$LLMCAP" apply --trust "$T/keys/llmcap.pub" "$T/p.json" 2>/dev/null   # refused: queues policy_rejected
"$LLMCAP" agent --server "http://127.0.0.1:$dead" --trust "$T/keys/llmcap.pub" --once 2>"$T/ag.err"
grep -q "enforcing the installed policy" "$T/ag.err" && fail "agent claims a policy is enforced: $(cat "$T/ag.err")" ||
	ok "agent without a policy does not claim to enforce one"
(LLMCAP_STATE_DIR=$T/fresh exec "$LLMCAP" agent --server "http://127.0.0.1:$dead" --trust "$T/keys/llmcap.pub" \
	--interval 1 --max-backoff 1 2>"$T/ag2.err") &
apid=$!; _pids+=("$apid")
wait_for 10 grep -q "server unreachable" "$T/ag2.err"
kill -TERM "$apid"; wait "$apid" 2>/dev/null
grep -q "server unreachable, no policy installed yet (provider calls pass)" "$T/ag2.err" &&
	ok "agent: unreachable and nothing installed is said as such" || fail "agent message: $(head -3 "$T/ag2.err")"
grep -q "kept until this host is enrolled" "$T/ag.err" && ! grep -q "not uploaded yet" "$T/ag.err" &&
	ok "agent: events of a host not enrolled are 'kept', not 'not uploaded'" || fail "agent events: $(cat "$T/ag.err")"

# ---- a host with a local policy version 7 joins a server (version 1) ----
export LLMCAP_STATE_DIR=$T/host
sed 's/"version": 1/"version": 7/' "$T/p.json" >"$T/p7.json"
apply_policy "$T/p7.json" >/dev/null 2>&1 || fail "apply local v7"
start_server
agent_once() { "$LLMCAP" agent --server "$SRV_URL" --trust "$T/keys/llmcap.pub" --once "$@"; }
agent_once 2>"$T/join.err"; rc=$?
[ $rc -ne 0 ] && grep -q "rollback refused" "$T/join.err" && grep -q "llmcap reset-policy --yes" "$T/join.err" &&
	ok "joining with a higher local version: refused as a rollback, and the message names reset-policy" ||
	fail "join: rc $rc $(cat "$T/join.err")"
"$LLMCAP" reset-policy 2>"$T/rp.err"; rc=$?
[ $rc -ne 0 ] && grep -q -- "--yes" "$T/rp.err" && ok "reset-policy wants --yes" || fail "reset-policy without --yes: rc $rc"
"$LLMCAP" reset-policy --yes 2>"$T/rp.err" && grep -q "policy version 7 forgotten in $T/host" "$T/rp.err" &&
	ok "reset-policy --yes forgets version 7 ($(cat "$T/rp.err"))" || fail "reset-policy: $(cat "$T/rp.err")"
agent_once 2>"$T/join.err" && "$LLMCAP" status 2>/dev/null | grep -q "^policy version 1," &&
	ok "after reset-policy the agent installs the server's version 1" || fail "join after reset: $(cat "$T/join.err")"
apply_policy "$T/p7.json" >/dev/null 2>&1; agent_once 2>/dev/null
"$LLMCAP" status 2>/dev/null | grep -q "^policy version 7," && ok "a reset is not a standing exception: v7 then holds again" ||
	fail "after re-apply of v7"
"$LLMCAP" reset-policy --yes 2>/dev/null; agent_once 2>/dev/null

# ---- long-poll: an admin change reaches the host within about a second ----
api GET /v1/policy >/dev/null; etag=$(curl -s -D - -o /dev/null "$SRV_URL/v1/policy" | tr -d '\r' | sed -n 's/^[Ee][Tt][Aa][Gg]: //p')
t0=$(date +%s%N)
curl -s -o /dev/null -m 8 -H "If-None-Match: $etag" "$SRV_URL/v1/policy?wait=5"
held=$(( ($(date +%s%N) - t0) / 1000000 ))
if [ "$held" -lt 3500 ]; then
	ok "# SKIP the server does not hold long-polls yet (answered in $held ms); the agent falls back to --interval"
else
	(exec "$LLMCAP" agent --server "$SRV_URL" --trust "$T/keys/llmcap.pub" --interval 120 2>"$T/lp.err") &
	lpid=$!; _pids+=("$lpid")
	v0=$(api GET /v1/admin/policy; jget 'j["version"]')
	wait_for 20 sh -c "\"$LLMCAP\" status 2>/dev/null | grep -q '^policy version $v0,'" || fail "the agent never installed v$v0"
	sleep 1   # the agent is now waiting in its long-poll
	api PUT /v1/admin/org '{"spend_cap_usd":5,"period":"monthly"}'
	v1=$(api GET /v1/admin/policy; jget 'j["version"]')
	t0=$(date +%s%N)
	if wait_for 15 sh -c "\"$LLMCAP\" status 2>/dev/null | grep -q '^policy version $v1,'"; then
		ms=$(( ($(date +%s%N) - t0) / 1000000 ))
		[ "$ms" -lt 5000 ] && ok "an admin change reached the host in $ms ms (interval 120 s)" ||
			fail "the change took $ms ms"
	else
		fail "the agent did not install v$v1 within 15 s (interval 120 s): $(tail -3 "$T/lp.err")"
	fi
	kill -TERM "$lpid"; t0=$(date +%s%N); wait "$lpid" 2>/dev/null
	ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	[ "$ms" -lt 5000 ] && ok "SIGTERM ends the agent during a long-poll promptly ($ms ms)" || fail "agent stop took $ms ms"
fi
finish

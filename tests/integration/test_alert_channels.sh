#!/usr/bin/env bash
# Alert channels: llmcap-server delivers one event to a generic, a Slack-format and a Teams-format
# webhook, each in its own shape, and as e-mail through an SMTP relay (a loopback receiver), each
# saying the limit, level, used / threshold and reset time.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"

setup_keys
start_receiver gen
start_receiver slack
start_receiver teams
SMTP_PORT=$(free_port)
"$PY" "$LC_ROOT/tests/provider/smtp_receiver.py" --port "$SMTP_PORT" --log "$T/mail.jsonl" >"$T/smtp.out" 2>&1 &
_pids+=($!)
wait_port "$SMTP_PORT"
"$SERVER" --listen 127.0.0.1:1 --data "$T/x" --signing-key "$T/keys/llmcap.key" --admin-token-file "$T/admin.token" \
	--smtp-relay http://x >/dev/null 2>"$T/err"
expect_eq "--smtp-relay must be smtp:// (exit 2)" 2 $?
check "... saying so" grep -q "expected smtp://HOST:PORT" "$T/err"
start_server --smtp-relay "smtp://127.0.0.1:$SMTP_PORT" --smtp-from llmcap@example.com
api PUT /v1/admin/emails '{"emails":[{"to":"finance@example.com","events":["limit_alert"]},{"to":"cto@example.com","events":["spend_cap_reached"]}]}'
expect_code "e-mail recipients" 200
api PUT /v1/admin/emails '{"emails":[{"to":"not an address"}]}'
expect_code "a bad address is refused, naming the JSON path" 400 "emails[0].to"
api PUT /v1/admin/emails '{"emails":[{"to":"a@b.c","events":["nope"]}]}'
expect_code "an unknown event is refused" 400 "emails[0].events[0]: unknown event"
api GET /v1/admin/emails
expect_code "GET the recipients" 200 '"relay_configured":true'
api PUT /v1/admin/webhooks '{"webhooks":[{"url":"'"$RCV_gen"'/h","secret":"'"$WHSECRET"'","events":["limit_alert"]},
 {"url":"'"$RCV_slack"'/h","secret":"'"$WHSECRET"'","events":["limit_alert"],"format":"slack"},
 {"url":"'"$RCV_teams"'/h","secret":"'"$WHSECRET"'","events":["limit_alert"],"format":"teams"}]}'
expect_code "three webhooks, three formats" 200
api PUT /v1/admin/webhooks '{"webhooks":[{"url":"'"$RCV_gen"'/h","secret":"s","format":"discord"}]}'
expect_code "an unknown format is refused, naming the JSON path" 400 "notifications.webhooks[0].format: must be one of generic, slack, teams"
api PUT /v1/admin/teams/research '{"limits":[{"metric":"cost","window":"monthly","threshold":300,"alert_at":200}]}'
expect_code "team with an alert level" 201
HCRED=$(host_cred h1)
curl -s -o /dev/null -X POST -H "Authorization: Bearer $HCRED" "$SRV_URL/v1/usage" -d '{"host_id":"h1","epoch":"e1","seq":1,"counters":[{"scope":"team","id":"research","metric":"cost","window":"monthly","bucket":'"$(month_start)"',"used":250000000}]}'
RESET=$(date -u -d "$(date -u +%Y-%m-01) +1 month" +%Y-%m-01T00:00:00Z)
for r in gen slack teams; do
	wait_for 20 test "$(rstat $r 'j["ok"]')" -ge 1 || fail "$r: nothing delivered"
done
rstat gen 'j["last"]["limit_alert"]' >"$T/gen.json"
expect_eq "generic: the event JSON" "team:research:cost:monthly" "$(jget 'j["data"]["limit"]' "$T/gen.json")"
rstat slack 'j["last"]["limit_alert"]' >"$T/slack.json"
TEXT=$(jget 'j["text"]' "$T/slack.json")
expect_eq "slack: the message line" "llmcap: Limit alert: team:research:cost:monthly; Level alert at \$200.00; Used \$250.00 of \$300.00 (83%); Resets $RESET" "$TEXT"
expect_eq "slack: Block Kit header + section with fields" "header section mrkdwn" "$(jget '" ".join([j["blocks"][0]["type"], j["blocks"][1]["type"], j["blocks"][1]["fields"][0]["type"]])' "$T/slack.json")"
rstat teams 'j["last"]["limit_alert"]' >"$T/teams.json"
expect_eq "teams: a message with an Adaptive Card" "message application/vnd.microsoft.card.adaptive AdaptiveCard" \
	"$(jget '" ".join([j["type"], j["attachments"][0]["contentType"], j["attachments"][0]["content"]["type"]])' "$T/teams.json")"
expect_eq "teams: the facts" "Limit=team:research:cost:monthly|Level=alert at \$200.00|Used=\$250.00 of \$300.00 (83%)|Resets=$RESET" \
	"$(jget '"|".join(f["title"]+"="+f["value"] for f in j["attachments"][0]["content"]["body"][1]["facts"])' "$T/teams.json")"
wait_for 20 test -s "$T/mail.jsonl" || fail "no e-mail arrived"
sleep 1
expect_eq "one e-mail (only finance@ wants limit_alert)" 1 "$(wc -l <"$T/mail.jsonl")"
MAIL=$(head -1 "$T/mail.jsonl")
expect_eq "e-mail: envelope" '<llmcap@example.com> ["<finance@example.com>"]' "$(jget 'j["from"] + " " + json.dumps(j["to"])' <(echo "$MAIL"))"
jget 'j["data"]' <(echo "$MAIL") >"$T/mail.txt"
check "e-mail: subject names the limit" grep -q "^Subject: \[llmcap\] Limit alert: team:research:cost:monthly" "$T/mail.txt"
check "e-mail: To header" grep -q "^To: finance@example.com" "$T/mail.txt"
check "e-mail: level" grep -q "^Level *alert at \$200.00" "$T/mail.txt"
check "e-mail: used and threshold" grep -q "^Used *\$250.00 of \$300.00 (83%)" "$T/mail.txt"
check "e-mail: reset time" grep -q "^Resets *$RESET" "$T/mail.txt"
for r in gen slack teams; do
	expect_eq "$r: signed like every delivery" 0 "$(rstat $r 'j["bad_signature"]')"
done
finish

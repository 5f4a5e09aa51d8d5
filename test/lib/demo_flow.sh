# test/lib/demo_flow.sh — the demo's connect-and-sync part, sourced by
# test/demo once the simulator and the connect/sync functions exist.

CLIENT_ID=11111111-2222-3333-4444-555555555555
CLIENT_SECRET=demo-secret-$(openssl rand -hex 8)
REDIRECT=https://flowagent.example/m365/callback

echo; echo "-- In the simulator: tenant contoso, the FlowAgent app, user ada with events"
sim -X POST "$SIM/_sim/tenants" -d '{"tenant":"contoso.example"}' >/dev/null
sim -X POST "$SIM/_sim/apps" -d "{\"client_id\":\"$CLIENT_ID\",\"client_secret\":\"$CLIENT_SECRET\",\"redirect_uris\":[\"$REDIRECT\"]}" >/dev/null
ADA=$(sim -X POST "$SIM/_sim/users" -d '{"tenant":"contoso.example","upn":"ada@contoso.example","display_name":"Ada"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
D1=$(date -u -d '+1 day' +%Y-%m-%d); D2=$(date -u -d '+2 day' +%Y-%m-%d); D3=$(date -u -d '+3 day' +%Y-%m-%d)
sim -X POST "$SIM/_sim/users/$ADA/events" -d "{\"subject\":\"Board meeting\",\"start\":{\"dateTime\":\"${D1}T09:00:00\",\"timeZone\":\"Romance Standard Time\"},\"end\":{\"dateTime\":\"${D1}T10:30:00\",\"timeZone\":\"Romance Standard Time\"},\"location\":{\"displayName\":\"Copenhagen\"}}" >/dev/null
sim -X POST "$SIM/_sim/users/$ADA/events" -d "{\"subject\":\"Company holiday\",\"isAllDay\":true,\"start\":{\"dateTime\":\"${D2}T00:00:00\",\"timeZone\":\"UTC\"},\"end\":{\"dateTime\":\"${D3}T00:00:00\",\"timeZone\":\"UTC\"}}" >/dev/null
sim -X POST "$SIM/_sim/users/$ADA/events" -d "{\"subject\":\"Daily stand-up\",\"start\":{\"dateTime\":\"${D1}T08:00:00\",\"timeZone\":\"UTC\"},\"end\":{\"dateTime\":\"${D1}T08:15:00\",\"timeZone\":\"UTC\"},\"recurrence\":{\"pattern\":{\"type\":\"daily\",\"interval\":1},\"range\":{\"type\":\"numbered\",\"startDate\":\"${D1}\",\"numberOfOccurrences\":3}}}" >/dev/null
sim -X POST "$SIM/_sim/authorize_as" -d '{"upn":"ada@contoso.example"}' >/dev/null

echo; echo "-- The DBA registers the app; the user clicks Connect and approves at Microsoft"
psql_demo -q -c "SELECT m365sync.configure('$CLIENT_ID', '$CLIENT_SECRET', '$REDIRECT')"
URL=$(psql_demo -Atc "BEGIN; SET LOCAL m365sync.flowagent_user = 'flow-ada'; SELECT m365sync.connect_url(); COMMIT" | grep '^https')
echo "   sign-in URL: ${URL%%\?*}?…"
LOC=$(curl -sS -o /dev/null -w '%{redirect_url}' --cacert "$DEMO/certs/ca.crt" "$URL")
CODE=$(python3 -c 'import sys,urllib.parse as u; q=u.parse_qs(u.urlparse(sys.argv[1]).query); print(q["code"][0])' "$LOC")
STATE=$(python3 -c 'import sys,urllib.parse as u; q=u.parse_qs(u.urlparse(sys.argv[1]).query); print(q["state"][0])' "$LOC")
ACCOUNT=$(psql_demo -Atc "BEGIN; SET LOCAL m365sync.flowagent_user = 'flow-ada'; SELECT m365sync.connect_complete('$STATE', '$CODE'); COMMIT" | grep -E '^[0-9]+$')
echo "   connected: account $ACCOUNT"
psql_demo -c "BEGIN; SET LOCAL m365sync.flowagent_user = 'flow-ada'; SELECT * FROM m365sync.calendars(); COMMIT"

if has sync; then
    echo; echo "-- Pull: Outlook's events arrive in FlowAgent"
    echo "   (the worker syncs a new account at once, so sync() here may find little left to fetch)"
    psql_demo -c "SELECT account_id, calendars, fetched, applied, deleted, pushed, status FROM m365sync.sync($ACCOUNT)"
    psql_demo -c "BEGIN; SET LOCAL m365sync.flowagent_user = 'flow-ada'; SET LOCAL TimeZone = 'Europe/Copenhagen';
      SELECT event_id, subject, start_at, end_at, is_all_day, start_date, end_date, event_type, sync_state
        FROM m365sync.events(now(), now() + interval '7 days') ORDER BY start_at; COMMIT"

    echo; echo "-- Push: FlowAgent creates an event in its own transaction"
    psql_demo -c "BEGIN; SET LOCAL m365sync.flowagent_user = 'flow-ada';
      SELECT m365sync.upsert_event('{\"subject\":\"Lunch with Grace (from FlowAgent)\",\"start\":{\"dateTime\":\"${D2}T12:00:00\",\"timeZone\":\"Europe/Copenhagen\"},\"end\":{\"dateTime\":\"${D2}T13:00:00\",\"timeZone\":\"Europe/Copenhagen\"}}') AS new_event_id; COMMIT"
    echo "   (the commit woke the worker, which may already have pushed it; then sync() pushes 0"
    echo "    and its delta call brings our own change back, recognised by its changeKey: applied 0)"
    psql_demo -c "SELECT account_id, fetched, applied, pushed, status FROM m365sync.sync($ACCOUNT)"
    echo "   in Outlook (simulator ground truth) now:"
    sim "$SIM/_sim/users/$ADA/truth" | python3 -c 'import json,sys
d=json.load(sys.stdin); evs=d["events"] if isinstance(d,dict) else d
for e in evs: print("    ", e.get("subject"), "|", e["start"]["dateTime"], e["start"]["timeZone"])'
    psql_demo -c "SELECT account_id, tenant, mode, status, events, pending_pushes, conflicts FROM m365sync.account_status"
fi

echo; echo "-- At rest: what the disk holds for an event (ciphertext), and a grep for its subject"
psql_demo -c "SELECT event_id, start_at, encode(substr(content, 1, 48), 'hex') AS content_prefix, length(content) AS bytes FROM m365sync.events ORDER BY event_id LIMIT 3"
psql_demo -q -c "CHECKPOINT"
hits=$(grep -rl 'Board meeting' "$DEMO/data/base" "$DEMO/data/pg_wal" "$DEMO/server.log" 2>/dev/null | wc -l)
echo "   files under base/, pg_wal/ and the server log containing 'Board meeting': $hits"

"""One full pull + push cycle of the sync worker, for test/valgrind/run.

Connects one delegated account through the OAuth flow (connect_url, the
simulator's authorize page, connect_complete), waits for the worker's
initial sync, then makes Outlook-side edits (rename, delete, create) and,
in one FlowAgent transaction, an upsert (create), an upsert (update) and a
delete_event; that commit wakes the worker, whose round pulls the edits and
pushes the three changes. Checks both sides afterwards and writes the
worker's pid to $WORK/worker.pid. Exit status 1 when a check fails.
Everything is slow under memcheck: waits are generous.
"""
import http.client
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.parse

WORK = os.environ["WORK"]
BIN = os.environ["BIN"]
SIM = os.environ["SIM"]
CTX = ssl.create_default_context(cafile=os.environ["CA"])
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SECRET = "vg-secret-" + os.urandom(8).hex()
REDIRECT = "https://flowagent.example/m365/callback"
UPN = "ada@contoso.example"
failures = 0


def psql(q, role="postgres", user=None):
    if user is not None:
        q = "BEGIN; SELECT set_config('m365sync.flowagent_user', '%s', true) \\g /dev/null\n%s;\nCOMMIT;" % (user, q.rstrip().rstrip(";"))
    r = subprocess.run([BIN + "/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-U", role, "-d", "postgres"],
                       input=q, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise SystemExit("psql: " + r.stderr[:2000])
    return r.stdout.strip()


def lit(s):
    return "'" + s.replace("'", "''") + "'"


def sim(method, path, body=None):
    u = urllib.parse.urlparse(SIM)
    c = http.client.HTTPSConnection(u.hostname, u.port, context=CTX, timeout=60)
    c.request(method, path, json.dumps(body) if body is not None else None, {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status >= 400:
        raise SystemExit("sim %s %s: %s %s" % (method, path, r.status, data[:300]))
    return r.status, r.getheader("Location"), (json.loads(data) if data else None)


def check(ok, what):
    global failures
    print("  %s %s" % ("ok  " if ok else "FAIL", what))
    failures += 0 if ok else 1


def wait_for(what, cond, timeout=900):
    t = time.time()
    while not cond():
        if time.time() - t > timeout:
            check(False, "waited %d s for %s" % (timeout, what))
            return False
        time.sleep(2)
    print("  (%s after %.0f s)" % (what, time.time() - t))
    return True


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))


def main():
    day = (int(time.time()) // 86400 + 1) * 86400
    sim("POST", "/_sim/tenants", {"tenant": "contoso.example"})
    sim("POST", "/_sim/apps", {"client_id": CLIENT_ID, "client_secret": SECRET, "redirect_uris": [REDIRECT]})
    _, _, user = sim("POST", "/_sim/users", {"tenant": "contoso.example", "upn": UPN, "display_name": "Ada"})
    uid = user["id"]
    sim("POST", "/_sim/users/%s/events/bulk" % uid, {"count": 12, "start": iso(day + 9 * 3600),
                                                     "interval_minutes": 240, "duration_minutes": 30})
    # a weekly series with one edited and one cancelled occurrence, an all-day event
    _, _, series = sim("POST", "/_sim/users/%s/events" % uid, {
        "subject": "Weekly", "start": {"dateTime": iso(day + 14 * 3600), "timeZone": "Europe/Copenhagen"},
        "end": {"dateTime": iso(day + 15 * 3600), "timeZone": "Europe/Copenhagen"},
        "recurrence": {"pattern": {"type": "weekly", "interval": 1,
                                   "daysOfWeek": [time.strftime("%A", time.gmtime(day)).lower()]},
                       "range": {"type": "numbered", "numberOfOccurrences": 5,
                                 "startDate": time.strftime("%Y-%m-%d", time.gmtime(day))}},
        "attendees": [{"emailAddress": {"address": "bob@contoso.example", "name": "Bob"}, "type": "required"}]})
    sim("POST", "/_sim/users/%s/events" % uid, {
        "subject": "Offsite", "isAllDay": True,
        "start": {"dateTime": time.strftime("%Y-%m-%dT00:00:00", time.gmtime(day + 2 * 86400)), "timeZone": "UTC"},
        "end": {"dateTime": time.strftime("%Y-%m-%dT00:00:00", time.gmtime(day + 3 * 86400)), "timeZone": "UTC"}})
    print("simulator: 1 mailbox, 12 single events, a weekly series of 5, an all-day event")

    psql("SELECT m365sync.configure(%s, %s, %s)" % (lit(CLIENT_ID), lit(SECRET), lit(REDIRECT)))
    sim("POST", "/_sim/authorize_as", {"upn": UPN})
    url = psql("SELECT m365sync.connect_url()", role="flowagent", user="vg-ada")
    u = urllib.parse.urlparse(url)
    _, loc, _ = sim("GET", u.path + "?" + u.query)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(loc).query))
    account = psql("SELECT m365sync.connect_complete(%s, %s)" % (lit(q["state"]), lit(q["code"])),
                   role="flowagent", user="vg-ada")
    print("connected account %s through connect_url / authorize / connect_complete" % account)
    with open(WORK + "/worker.pid", "w") as f:
        f.write(psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'm365sync worker'"))

    def rounds_ok():
        return int(psql("SELECT count(*) FROM m365sync.sync_run_log WHERE status = 'ok'"))

    def truth():
        return sim("GET", "/_sim/users/%s/truth" % uid)[2]["events"]

    if not wait_for("the worker's initial sync", lambda: rounds_ok() >= 1):
        return 1
    local = psql("SELECT count(*) FROM m365sync.events(now(), now() + interval '60 days')", role="flowagent", user="vg-ada")
    check(int(local) >= 12 + 5 + 1, "initial pull: %s events in the next 60 days (12 single, 5 occurrences, 1 all-day)" % local)

    # Outlook side: rename one, delete one, create one
    singles = sorted((e for e in truth() if e.get("type") == "singleInstance" and e["subject"] == "Bulk event"),
                     key=lambda e: e["start"]["dateTime"])
    sim("PATCH", "/_sim/users/%s/events/%s" % (uid, singles[0]["id"]), {"subject": "Renamed in Outlook"})
    sim("DELETE", "/_sim/users/%s/events/%s" % (uid, singles[1]["id"]))
    sim("POST", "/_sim/users/%s/events" % uid, {
        "subject": "Created in Outlook", "start": {"dateTime": iso(day + 20 * 3600), "timeZone": "UTC"},
        "end": {"dateTime": iso(day + 21 * 3600), "timeZone": "UTC"}})
    # FlowAgent side, one transaction: create, update, delete (events the Outlook side left alone)
    ids = psql("SELECT event_id FROM m365sync.events(now(), now() + interval '60 days') "
               "WHERE subject = 'Bulk event' ORDER BY start_at DESC LIMIT 2", role="flowagent", user="vg-ada").split()
    mark = psql("SELECT coalesce(max(run_id), 0) FROM m365sync.sync_run_log")
    psql("UPDATE m365sync.accounts SET next_sync_at = now()")
    psql("""SELECT m365sync.upsert_event('{"subject": "Created in FlowAgent", "body": {"contentType": "text", "content": "Agenda"},
              "start": {"dateTime": "%s", "timeZone": "Europe/Copenhagen"},
              "end": {"dateTime": "%s", "timeZone": "Europe/Copenhagen"}}'::jsonb);
            SELECT m365sync.upsert_event('{"subject": "Updated in FlowAgent"}'::jsonb, %s);
            SELECT m365sync.delete_event(%s);""" % (iso(day + 86400 + 10 * 3600), iso(day + 86400 + 11 * 3600),
                                                   ids[0], ids[1]), role="flowagent", user="vg-ada")
    print("Outlook side: renamed, deleted, created one event; FlowAgent: upsert (create), upsert (update), delete_event")

    wait_for("the pull + push round", lambda: int(psql(
        "SELECT count(*) FROM m365sync.sync_run_log WHERE run_id > %s AND status = 'ok'" % mark)) >= 1
        and psql("SELECT count(*) FROM m365sync.outbox WHERE state <> 'done'") == "0")
    print("  rounds: " + psql("SELECT string_agg(format('%s pages, %s applied, %s deleted, %s pushed, %s requests',"
                              " pages, applied, deleted, pushed, http_requests), '; ') FROM m365sync.sync_run_log"
                              " WHERE run_id > " + mark))
    subj = psql("SELECT string_agg(subject, '|' ORDER BY subject) FROM m365sync.events(now(), now() + interval '60 days')",
                role="flowagent", user="vg-ada").split("|")
    check("Renamed in Outlook" in subj, "pulled: the Outlook rename")
    check("Created in Outlook" in subj, "pulled: the Outlook create")
    check(subj.count("Bulk event") == 12 - 2 - 2, "pulled: the Outlook delete (%d untouched single events left)"
          % subj.count("Bulk event"))
    remote = [e["subject"] for e in truth()]
    check(remote.count("Created in FlowAgent") == 1, "pushed: the FlowAgent create, once")
    check(remote.count("Updated in FlowAgent") == 1, "pushed: the FlowAgent update")
    check(remote.count("Bulk event") == 12 - 2 - 2, "pushed: the FlowAgent delete")
    print("cycle: %s" % ("all checks passed" if failures == 0 else "%d checks failed" % failures))
    return 1 if failures else 0


sys.exit(main())

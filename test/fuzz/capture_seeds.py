#!/usr/bin/env python3
"""capture_seeds.py — seed corpora for the fuzz targets from graphsim's real answers.

Starts test/graphsim/graphsim.py (plain HTTP, fixed seed), builds a mailbox
with single events, a series with an exception and a cancelled occurrence,
all-day and odd-zone events, then records what the extension would read:
delta pages (first round, incremental with @removed, the 410 answer),
single events, token and OAuth error responses, Graph error bodies, /me,
calendar pages and raw response header lines (Retry-After). Writes them
to corpus/<target>/sim-*.json next to the hand-made cases (which it never
touches). Run again after changing the simulator; output is deterministic
for a given simulator version. Nothing here is a secret: tokens are the
simulator's own.
"""
import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "graphsim"))
import simtest  # noqa: E402

CORPUS = os.path.join(HERE, "corpus")


def save(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "sim-" + name), "wb") as f:
        f.write(data)


def main():
    sim = simtest.Sim.start("--seed", "7", tls=False)
    try:
        run(sim)
    finally:
        sim.stop()


def run(sim):
    ctl = sim.ctl
    ctl("POST", "reset", expect=200)
    ctl("POST", "tenants", {"tenant": "contoso.example"}, expect=201)
    ctl("POST", "apps", {"client_id": simtest.CLIENT_ID, "client_secret": simtest.SECRET,
                         "redirect_uris": [simtest.REDIRECT]}, expect=201)
    user = ctl("POST", "users", {"tenant": "contoso.example", "upn": "ada@contoso.example",
                                 "display_name": "Ada Lovelace"}, expect=201)
    uid = user["id"]
    second = ctl("POST", "users/%s/calendars" % uid, {"name": "Shared", "can_edit": False}, expect=201)
    tok = ctl("POST", "tokens/issue", {"client_id": simtest.CLIENT_ID, "upn": "ada@contoso.example"}, expect=200)
    save("oauth", "token-issue.json", json.dumps(tok))
    token = tok["access_token"]

    def g(method, path, body=None, headers=None):
        if not path.startswith("http") and not path.startswith("/"):
            path = "/v1.0/" + path
        return sim.req(method, path, body, headers, token=token)

    ev = simtest.event
    created = []
    created.append(ctl("POST", "users/%s/events" % uid, ev("Standup", body={"contentType": "html", "content": "<p>notes</p>"},
                                                          attendees=[{"emailAddress": {"address": "bob@contoso.example", "name": "Bob"},
                                                                      "type": "required"}],
                                                          location={"displayName": "Room 1"}, categories=["Blue"]), expect=201))
    created.append(ctl("POST", "users/%s/events" % uid, ev("Offsite", start="2025-03-05T00:00:00", end="2025-03-07T00:00:00",
                                                          isAllDay=True), expect=201))
    created.append(ctl("POST", "users/%s/events" % uid, ev("Zoned", start="2025-03-04T09:00:00", end="2025-03-04T09:30:00",
                                                          tz="Romance Standard Time", showAs="tentative", importance="high",
                                                          sensitivity="private", isReminderOn=True,
                                                          reminderMinutesBeforeStart=15), expect=201))
    series = ctl("POST", "users/%s/events" % uid, ev("Weekly", start="2025-03-03T13:00:00", end="2025-03-03T13:30:00",
                                                    recurrence={"pattern": {"type": "weekly", "interval": 1,
                                                                            "daysOfWeek": ["monday"], "firstDayOfWeek": "monday"},
                                                                "range": {"type": "numbered", "startDate": "2025-03-03",
                                                                          "numberOfOccurrences": 5}}), expect=201)
    ctl("POST", "users/%s/events" % uid, dict(ev("Shared cal"), calendar_id=second["id"]), expect=201)

    window = simtest.WINDOW
    prefer = {"Prefer": 'IdType="ImmutableId", outlook.timezone="UTC", odata.maxpagesize=3'}
    url = "/v1.0/me/calendarView/delta?" + window
    n = 0
    delta = None
    while True:
        r = g("GET", url, headers=prefer)
        save("delta_page", "round1-page%d.json" % n, r.body)
        n += 1
        d = json.loads(r.body)
        for it in d["value"]:
            save("event_json", "graph-%s.json" % hashlib.sha1(json.dumps(it, sort_keys=True).encode()).hexdigest()[:12],
                 json.dumps(it))
        if "@odata.nextLink" in d:
            url = d["@odata.nextLink"]
            continue
        delta = d["@odata.deltaLink"]
        break

    # second round: an edit, a delete, an exception and a cancelled occurrence
    ctl("PATCH", "users/%s/events/%s" % (uid, created[0]["id"]), {"subject": "Standup (moved)",
                                                                  "start": {"dateTime": "2025-03-03T10:00:00", "timeZone": "UTC"},
                                                                  "end": {"dateTime": "2025-03-03T10:15:00", "timeZone": "UTC"}}, expect=200)
    ctl("DELETE", "users/%s/events/%s" % (uid, created[1]["id"]), expect=204)
    inst = g("GET", "me/events/%s/instances?startDateTime=2025-03-01T00:00:00Z&endDateTime=2025-04-01T00:00:00Z" % series["id"],
             headers={"Prefer": 'outlook.timezone="UTC"'})
    occ = json.loads(inst.body)["value"]
    save("delta_page", "instances.json", inst.body)
    if len(occ) >= 2:
        ctl("PATCH", "users/%s/events/%s" % (uid, occ[0]["id"]), {"subject": "Weekly (exception)"}, expect=200)
        ctl("DELETE", "users/%s/events/%s" % (uid, occ[1]["id"]), expect=204)
    url = delta
    n = 0
    while True:
        r = g("GET", url, headers=prefer)
        save("delta_page", "round2-page%d.json" % n, r.body)
        n += 1
        d = json.loads(r.body)
        for it in d["value"]:
            save("event_json", "graph-%s.json" % hashlib.sha1(json.dumps(it, sort_keys=True).encode()).hexdigest()[:12],
                 json.dumps(it))
        if "@odata.nextLink" in d:
            url = d["@odata.nextLink"]
            continue
        delta = d["@odata.deltaLink"]
        break

    # a delta cursor gone: 410 (each style), the error body goes to delta_page and graph_util
    for style in ("SyncStateNotFound", "resyncRequired"):
        ctl("POST", "config", {"delta_gone_style": style}, expect=200)
        ctl("POST", "delta/expire", {"upn": "ada@contoso.example"}, expect=200)
        r = g("GET", delta, headers=prefer)
        save("delta_page", "gone-%s.json" % style, r.body)
        save("graph_util", "gone-%s.json" % style, r.body)

    # Graph error bodies of every status fault
    hdr_lines = []
    for kind in ("400", "401", "403", "404", "409", "412", "423", "429", "500", "502", "503", "504"):
        ctl("POST", "faults", {"route": "/v1.0/me/calendars$", "kind": kind, "count": 1, "retry_after": "2.128"}, expect=201)
        r = g("GET", "me/calendars")
        save("graph_util", "fault-%s.json" % kind, r.body)
        for k, v in r.headers:
            if k.lower() in ("retry-after", "content-type", "request-id", "location"):
                hdr_lines.append("%s: %s\r\n" % (k, v))
    ctl("DELETE", "faults", expect=200)

    # /me, calendars (paged), a missing item
    save("graph_util", "me.json", g("GET", "me").body)
    r = g("GET", "me/calendars?$top=1")
    save("graph_util", "calendars-page1.json", r.body)
    nl = json.loads(r.body).get("@odata.nextLink")
    if nl:
        save("graph_util", "calendars-page2.json", g("GET", nl).body)
    save("graph_util", "notfound.json", g("GET", "me/events/AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A").body)
    save("graph_util", "badtoken.json", sim.req("GET", "/v1.0/me", token="not-a-token").body)

    # identity platform: token endpoint errors
    tokpath = "/contoso.example/oauth2/v2.0/token"
    for i, form in enumerate([
        {"grant_type": "refresh_token", "client_id": simtest.CLIENT_ID, "client_secret": simtest.SECRET,
         "refresh_token": "bogus", "scope": "offline_access Calendars.ReadWrite"},
        {"grant_type": "authorization_code", "client_id": simtest.CLIENT_ID, "client_secret": "wrong",
         "code": "x", "redirect_uri": simtest.REDIRECT, "code_verifier": "v" * 50},
        {"grant_type": "client_credentials", "client_id": "00000000-0000-0000-0000-000000000000"},
        {"grant_type": "nonsense"},
    ]):
        r = sim.req("POST", tokpath, form=form)
        save("oauth", "token-error-%d.json" % i, r.body)
    for kind in ("400", "429", "503"):
        ctl("POST", "faults", {"route": "/oauth2/", "kind": kind, "count": 1, "retry_after": "5"}, expect=201)
        r = sim.req("POST", tokpath, form={"grant_type": "refresh_token", "client_id": simtest.CLIENT_ID})
        save("oauth", "fault-%s.json" % kind, r.body)
        for k, v in r.headers:
            if k.lower() in ("retry-after", "content-type"):
                hdr_lines.append("%s: %s\r\n" % (k, v))
    ctl("DELETE", "faults", expect=200)
    # a refresh that works: the rotated refresh token response
    full = ctl("POST", "tokens/issue", {"client_id": simtest.CLIENT_ID, "upn": "ada@contoso.example", "offline": True},
               expect=200)
    save("oauth", "token-offline.json", json.dumps(full))
    if full.get("refresh_token"):
        r = sim.req("POST", tokpath, form={"grant_type": "refresh_token", "client_id": simtest.CLIENT_ID,
                                           "client_secret": simtest.SECRET, "refresh_token": full["refresh_token"],
                                           "scope": "offline_access https://graph.microsoft.com/Calendars.ReadWrite"})
        save("oauth", "token-refreshed.json", r.body)

    # request ids are random: one is enough
    rid = [h for h in hdr_lines if h.lower().startswith("request-id")][:1]
    hdr_lines = [h for h in hdr_lines if not h.lower().startswith("request-id")] + rid
    for i, line in enumerate(sorted(set(hdr_lines))):
        save("http_util", "header-%d.txt" % i, line)
    # the links the simulator hands out, as URLs
    save("http_util", "deltalink.txt", delta)
    save("http_util", "user-url.txt", sim.url + "/v1.0/users/ada@contoso.example/calendarView/delta?" + window)


if __name__ == "__main__":
    main()

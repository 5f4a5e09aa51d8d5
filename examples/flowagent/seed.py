#!/usr/bin/env python3
"""seed: the simulated Microsoft 365 side of the example, through graphsim's
control API (/_sim/): the FlowAgent app registration, two organisations,
their users (as in users.json) and a few Outlook events in the current week.
Turns on graphsim's sign-in pages, so a browser clicks through Microsoft's
sign-in and consent. Prints the week's Monday and the simulator's user ids
as JSON.

    seed.py SIM_URL CA_FILE REDIRECT_URI CLIENT_ID CLIENT_SECRET
"""
import datetime
import json
import ssl
import sys
import urllib.request
import zoneinfo

ORGS = ["contoso.example", "fabrikam.example"]
PEOPLE = [("olivia@contoso.example", "Olivia Hansen"), ("ada@contoso.example", "Ada Lovelace"),
          ("grace@contoso.example", "Grace Hopper"), ("bob@fabrikam.example", "Bob Jensen")]


def main(sim, ca, redirect, client_id, secret):
    ctx = ssl.create_default_context(cafile=ca)

    def ctl(method, path, body=None):
        req = urllib.request.Request(sim + "/_sim/" + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            data = r.read()
        return json.loads(data) if data else None

    ctl("POST", "config", {"sign_in_pages": True})
    for org in ORGS:
        ctl("POST", "tenants", {"tenant": org})
    ctl("POST", "apps", {"client_id": client_id, "client_secret": secret, "redirect_uris": [redirect],
                         "name": "FlowAgent"})
    users = {upn: ctl("POST", "users", {"tenant": upn.split("@")[1], "upn": upn, "display_name": name})
             for upn, name in PEOPLE}

    # This week as the first users see it (Copenhagen).
    today = datetime.datetime.now(zoneinfo.ZoneInfo("Europe/Copenhagen")).date()
    mon = today - datetime.timedelta(days=today.weekday())

    def day(n):
        return (mon + datetime.timedelta(days=n)).isoformat()

    def at(n, hhmm, tz):
        return {"dateTime": "%sT%s:00" % (day(n), hhmm), "timeZone": tz}

    cph, ny, lon = "Romance Standard Time", "Eastern Standard Time", "GMT Standard Time"
    events = {
        "ada@contoso.example": [
            {"subject": "Daily stand-up", "start": at(0, "08:45", cph), "end": at(0, "09:00", cph),
             "recurrence": {"pattern": {"type": "daily", "interval": 1},
                            "range": {"type": "numbered", "startDate": day(0), "numberOfOccurrences": 5}}},
            {"subject": "Board meeting", "start": at(1, "09:30", cph), "end": at(1, "11:00", cph),
             "location": {"displayName": "Copenhagen HQ"}},
            {"subject": "Design review", "start": at(2, "13:00", cph), "end": at(2, "14:00", cph),
             "location": {"displayName": "Room Turing"}},
            {"subject": "Customer call", "start": at(2, "13:30", cph), "end": at(2, "14:30", cph)},
            {"subject": "Company offsite", "isAllDay": True, "start": {"dateTime": day(3) + "T00:00:00",
             "timeZone": "UTC"}, "end": {"dateTime": day(5) + "T00:00:00", "timeZone": "UTC"}},
            {"subject": "Lunch with Grace", "start": at(4, "12:00", cph), "end": at(4, "13:00", cph),
             "location": {"displayName": "Canteen"}},
        ],
        "grace@contoso.example": [
            {"subject": "Ops sync", "start": at(1, "10:00", ny), "end": at(1, "11:00", ny)},
            {"subject": "Vendor visit", "start": at(3, "14:00", ny), "end": at(3, "16:00", ny),
             "location": {"displayName": "Loading dock"}},
        ],
        "bob@fabrikam.example": [
            {"subject": "Quarterly planning", "start": at(2, "10:00", lon), "end": at(2, "11:00", lon)},
        ],
    }
    for upn, evs in events.items():
        for ev in evs:
            ctl("POST", "users/%s/events" % users[upn]["id"], ev)
    json.dump({"monday": mon.isoformat(), "users": {upn: u["id"] for upn, u in users.items()}}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:6])

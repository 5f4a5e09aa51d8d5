"""GRAPH.md sections 2 and 10: recurrence patterns and time zones, input beside expected output."""
import datetime as dt
import unittest

import simtime as T
from simtest import SimCase, event


def rec(ptype, rtype="numbered", start="2025-01-01", n=4, end=None, **p):
    r = {"type": rtype, "startDate": start}
    if rtype == "numbered":
        r["numberOfOccurrences"] = n
    if rtype == "endDate":
        r["endDate"] = end
    return {"pattern": dict({"type": ptype, "interval": 1}, **p), "range": r}


CASES = [
    ("daily every 2 days",
     rec("daily", interval=2), ["2025-01-01", "2025-01-03", "2025-01-05", "2025-01-07"]),
    ("weekly mon+fri",
     rec("weekly", start="2025-01-01", daysOfWeek=["monday", "friday"]), ["2025-01-03", "2025-01-06", "2025-01-10", "2025-01-13"]),
    ("weekly every 2 weeks on wednesday, week starts sunday",
     rec("weekly", start="2025-01-01", interval=2, daysOfWeek=["wednesday"]), ["2025-01-01", "2025-01-15", "2025-01-29", "2025-02-12"]),
    ("absoluteMonthly day 31 falls back to the month's last day",
     rec("absoluteMonthly", start="2025-01-31", dayOfMonth=31), ["2025-01-31", "2025-02-28", "2025-03-31", "2025-04-30"]),
    ("absoluteMonthly every 3 months",
     rec("absoluteMonthly", start="2025-01-15", interval=3, n=3, dayOfMonth=15), ["2025-01-15", "2025-04-15", "2025-07-15"]),
    ("relativeMonthly last friday",
     rec("relativeMonthly", n=3, daysOfWeek=["friday"], index="last"), ["2025-01-31", "2025-02-28", "2025-03-28"]),
    ("relativeMonthly second tuesday",
     rec("relativeMonthly", n=2, daysOfWeek=["tuesday"], index="second"), ["2025-01-14", "2025-02-11"]),
    ("absoluteYearly 29 february",
     rec("absoluteYearly", start="2024-02-29", n=3, month=2, dayOfMonth=29), ["2024-02-29", "2025-02-28", "2026-02-28"]),
    ("relativeYearly first monday of september",
     rec("relativeYearly", n=2, month=9, daysOfWeek=["monday"], index="first"), ["2025-09-01", "2026-09-07"]),
    ("endDate is inclusive",
     rec("daily", rtype="endDate", end="2025-01-03"), ["2025-01-01", "2025-01-02", "2025-01-03"]),
    ("noEnd stops at the horizon",
     rec("weekly", rtype="noEnd", daysOfWeek=["thursday"]), ["2025-01-02", "2025-01-09", "2025-01-16", "2025-01-23", "2025-01-30"]),
]


class Patterns(unittest.TestCase):
    def test_patterns_expand_like_exchange(self):
        for name, r, want in CASES:
            with self.subTest(name):
                T.validate(r)
                got = [d.isoformat() for d in T.occurrence_dates(r, dt.date(2026, 12, 31) if r["range"]["type"] != "noEnd" else dt.date(2025, 1, 31))]
                self.assertEqual(got, want)

    def test_invalid_patterns_are_rejected(self):
        bad = [
            {"pattern": {"type": "hourly"}, "range": {"type": "noEnd", "startDate": "2025-01-01"}},
            rec("weekly"),                       # no daysOfWeek
            rec("daily", interval=0),
            rec("absoluteMonthly"),              # no dayOfMonth
            rec("daily", rtype="numbered", n=0),
            rec("daily", rtype="endDate", end="2024-01-01"),
        ]
        for r in bad:
            with self.subTest(r=r):
                with self.assertRaises(T.BadRecurrence):
                    T.validate(r)


ZONES = [
    # zone name, local time, expected UTC
    ("W. Europe Standard Time", "2025-01-15T09:00:00", "2025-01-15T08:00:00.0000000"),
    ("W. Europe Standard Time", "2025-07-15T09:00:00", "2025-07-15T07:00:00.0000000"),
    ("Romance Standard Time", "2025-03-30T12:00:00", "2025-03-30T10:00:00.0000000"),
    ("Pacific Standard Time", "2025-11-02T09:00:00", "2025-11-02T17:00:00.0000000"),
    ("Europe/Berlin", "2025-01-15T09:00:00", "2025-01-15T08:00:00.0000000"),
    ("America/New_York", "2025-06-01T09:00:00", "2025-06-01T13:00:00.0000000"),
    ("UTC", "2025-06-01T09:00:00", "2025-06-01T09:00:00.0000000"),
    ("tzone://Microsoft/Utc", "2025-06-01T09:00:00", "2025-06-01T09:00:00.0000000"),
    ("India Standard Time", "2025-06-01T09:00:00", "2025-06-01T03:30:00.0000000"),
]


class Zones(unittest.TestCase):
    def test_windows_and_iana_names_convert_to_utc(self):
        for name, local, want in ZONES:
            with self.subTest(name=name, local=local):
                ts = T.local_to_epoch(T.parse_local(local), T.zone(name))
                self.assertEqual(T.fmt_local(T.epoch_to_local(ts, T.UTC)), want)

    def test_unknown_zone_is_refused(self):
        with self.assertRaises(T.BadZone):
            T.zone("Mars Standard Time")

    def test_formats_have_seven_fraction_digits(self):
        self.assertEqual(T.fmt_local(dt.datetime(2017, 4, 15, 11)), "2017-04-15T11:00:00.0000000")
        self.assertEqual(T.fmt_offset(0), "1970-01-01T00:00:00.0000000Z")


class SeriesInTime(SimCase):
    def test_weekly_series_keeps_local_time_across_dst(self):
        r = rec("weekly", start="2025-03-24", n=2, daysOfWeek=["monday"])
        self.outlook_create(event("dst", "2025-03-24T09:00:00", "2025-03-24T09:30:00", tz="W. Europe Standard Time",
                                  recurrence=r))
        v = self.g("GET", "me/calendarView/delta?startDateTime=2025-03-01T00:00:00Z&endDateTime=2025-05-01T00:00:00Z",
                   headers={"Prefer": 'outlook.timezone="UTC"'}).json()["value"]
        self.assertEqual([e["start"]["dateTime"] for e in v], ["2025-03-24T08:00:00.0000000", "2025-03-31T07:00:00.0000000"])
        v = self.g("GET", "me/calendarView/delta?startDateTime=2025-03-01T00:00:00Z&endDateTime=2025-05-01T00:00:00Z").json()["value"]
        self.assertEqual([e["start"] for e in v], [{"dateTime": "2025-03-24T09:00:00.0000000", "timeZone": "W. Europe Standard Time"},
                                                    {"dateTime": "2025-03-31T09:00:00.0000000", "timeZone": "W. Europe Standard Time"}])

    def test_all_day_series_occurrences_are_dates(self):
        r = rec("daily", start="2025-03-01", n=3)
        self.outlook_create(event("allday", "2025-03-01T00:00:00", "2025-03-02T00:00:00", tz="Pacific Standard Time",
                                  isAllDay=True, recurrence=r))
        v = self.g("GET", "me/calendarView/delta?startDateTime=2025-02-01T00:00:00Z&endDateTime=2025-05-01T00:00:00Z",
                   headers={"Prefer": 'outlook.timezone="UTC"'}).json()["value"]
        self.assertTrue(all("isAllDay" not in e for e in v), "stubs carry no isAllDay")
        v = self.g("GET", "me/calendarView?startDateTime=2025-02-01T00:00:00Z&endDateTime=2025-05-01T00:00:00Z",
                   headers={"Prefer": 'outlook.timezone="UTC"'}).json()["value"]
        self.assertEqual([(e["start"]["dateTime"], e["end"]["dateTime"], e["isAllDay"]) for e in v],
                         [("2025-03-0%dT00:00:00.0000000" % d, "2025-03-0%dT00:00:00.0000000" % (d + 1), True) for d in (1, 2, 3)])

    def test_recurrence_time_zone_is_the_organisers(self):
        r = rec("daily", start="2025-03-01", n=1)
        r["range"]["recurrenceTimeZone"] = "Pacific Standard Time"
        self.outlook_create(event("x", "2025-03-01T09:00:00", "2025-03-01T10:00:00", tz="Pacific Standard Time", recurrence=r))
        m = self.sim.ctl("GET", "users/%s/truth" % self.uid)["events"][0]
        self.assertEqual(m["recurrence"]["range"]["recurrenceTimeZone"], "Pacific Standard Time")
        self.assertEqual(m["originalStartTimeZone"], "Pacific Standard Time")


if __name__ == "__main__":
    unittest.main()

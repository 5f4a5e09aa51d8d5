"""Bad input gets a Graph 4xx error body, never a 500 or a dropped connection."""
import unittest

from simtest import SimCase, WINDOW, event

BAD_CREATES = [
    [],
    "just a string",
    {"subject": "no times"},
    {"start": "2025-01-01T00:00:00", "end": "2025-01-01T01:00:00"},
    event(start="not a date"),
    event(start=None),
    dict(event(), recurrence={"pattern": "weekly"}),
    dict(event(), recurrence={"pattern": {"type": "weekly", "daysOfWeek": ["funday"]},
                              "range": {"type": "noEnd", "startDate": "2025-01-01"}}),
    dict(event(), recurrence={"pattern": {"type": "daily", "interval": 1}, "range": {"type": "endDate", "startDate": "x"}}),
    dict(event(), isAllDay=True),
    dict(event(), transactionId=42),
]


class BadInput(SimCase):
    def assert4xx(self, r, what):
        self.assertTrue(400 <= r.status < 500, "%s -> %d %s" % (what, r.status, r.body[:200]))
        self.assertIn("error", r.json())

    def test_bad_creates(self):
        for body in BAD_CREATES:
            with self.subTest(body=body):
                self.assert4xx(self.g("POST", "me/events", body), body)

    def test_non_json_body(self):
        self.assert4xx(self.g("POST", "me/events", b"{not json", headers={"Content-Type": "application/json"}), "not json")

    def test_bad_patches(self):
        ev = self.g("POST", "me/events", event()).json()
        for body in ([], {"start": {"dateTime": "garbage", "timeZone": "UTC"}}, {"recurrence": {"pattern": {}}},
                     {"end": {"dateTime": "2000-01-01T00:00:00", "timeZone": "UTC"}}):
            with self.subTest(body=body):
                self.assert4xx(self.g("PATCH", "me/events/" + ev["id"], body), body)

    def test_bad_windows_and_ids(self):
        for path in ("me/calendarView/delta?startDateTime=yesterday&endDateTime=today",
                     "me/calendarView/delta?startDateTime=2025-02-01&endDateTime=2025-01-01",
                     "me/calendarView?" + WINDOW + "&$top=-1",
                     "me/events/AAkALgAAxxxxxxxxxxxxxxxxxxxxxxAAAAEx20251399=",
                     "me/calendars/nope", "me/nosuchthing", "users/nobody@contoso.example/events"):
            with self.subTest(path=path):
                self.assert4xx(self.g("GET", path), path)

    def test_bad_batches(self):
        for body in ({}, {"requests": "x"}, {"requests": [{"id": "1", "method": "GET", "url": "/me", "dependsOn": ["9"]}]}):
            with self.subTest(body=body):
                self.assert4xx(self.g("POST", "$batch", body), body)

    def test_bad_subscriptions(self):
        for body in ({}, {"resource": "me/events", "changeType": "created", "notificationUrl": "ftp://x",
                          "expirationDateTime": "2030-01-01T00:00:00Z"},
                     {"resource": "me/messages", "changeType": "created"}):
            with self.subTest(body=body):
                self.assert4xx(self.g("POST", "subscriptions", body), body)


if __name__ == "__main__":
    unittest.main()

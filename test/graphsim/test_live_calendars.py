"""GRAPH.md section 11, issue 22 items 3, 7 and 8: what the live service does
with calendars that the reference pages do not say: events moved between
calendars keep their immutable id, calendars get deleted or change their id,
and calendarView spans at most 1825 days."""
import unittest
import urllib.parse

from simtest import SimCase, WINDOW, event


def window(days, start="2025-01-01T00:00:00Z"):
    import datetime as dt
    s = dt.datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ")
    e = s + dt.timedelta(days=days)
    return "startDateTime=%s&endDateTime=%s" % (start, e.strftime("%Y-%m-%dT%H:%M:%SZ"))


class WindowCap(SimCase):
    """docs 6284 / contrib 6321: 400 ErrorInvalidRequest over 1825 days."""

    def test_1825_days_are_accepted(self):
        for path in ("me/calendarView/delta?", "me/calendarView?", "me/calendars/%s/calendarView/delta?" % self.cal_id):
            r = self.g("GET", path + window(1825))
            self.assertEqual(r.status, 200, (path, r.body[:200]))

    def test_a_wider_window_is_400_error_invalid_request(self):
        for path in ("me/calendarView/delta?", "me/calendarView?", "me/calendars/%s/calendarView/delta?" % self.cal_id):
            r = self.g("GET", path + window(1826))
            self.assertEqual(r.status, 400, path)
            err = r.json()["error"]
            self.assertEqual(err["code"], "ErrorInvalidRequest")
            self.assertIn("Maximum number of days: 1825", err["message"])

    def test_a_second_too_many_is_refused(self):
        q = "startDateTime=2025-01-01T00:00:00Z&endDateTime=" + urllib.parse.quote("2029-12-31T00:00:01Z")
        self.assertEqual(self.g("GET", "me/calendarView/delta?" + q).status, 400)


class Moves(SimCase):
    """contrib 72: a moved event keeps its immutable id; the old calendar's
    delta reports it @removed, the new one's reports it, each in its own round."""

    def setUp(self):
        SimCase.setUp(self)
        self.other = self.sim.ctl("POST", "users/%s/calendars" % self.uid, {"name": "Other", "can_edit": True},
                                  expect=201)["id"]

    def path(self, cal):
        return "me/calendars/%s/calendarView/delta?%s" % (cal, WINDOW)

    def test_moved_event_keeps_its_id_removed_in_one_calendar_added_in_the_other(self):
        e = self.outlook_create(event(calendar_id=self.cal_id))
        _, link_a, _ = self.delta_all(path=self.path(self.cal_id))
        _, link_b, _ = self.delta_all(path=self.path(self.other))
        self.outlook_patch(e["id"], {"calendar_id": self.other})
        items_b, link_b, _ = self.delta_all(url=link_b)
        self.assertEqual([(i["id"], "@removed" in i) for i in items_b], [(e["immutable_id"], False)])
        items_a, link_a, _ = self.delta_all(url=link_a)
        self.assertEqual([(i["id"], "@removed" in i) for i in items_a], [(e["immutable_id"], True)])
        # and back, read in the other order
        self.outlook_patch(e["immutable_id"], {"calendar_id": self.cal_id})
        items_a, _, _ = self.delta_all(url=link_a)
        self.assertEqual([(i["id"], "@removed" in i) for i in items_a], [(e["immutable_id"], False)])
        items_b, _, _ = self.delta_all(url=link_b)
        self.assertEqual([(i["id"], "@removed" in i) for i in items_b], [(e["immutable_id"], True)])

    def test_default_id_changes_immutable_id_does_not(self):
        e = self.outlook_create(event(calendar_id=self.cal_id))
        moved = self.outlook_patch(e["id"], {"calendar_id": self.other})
        self.assertEqual(moved["immutable_id"], e["immutable_id"])
        self.assertNotEqual(moved["default_id"], e["default_id"])
        r = self.g("GET", "me/calendars/%s/events/%s" % (self.other, e["immutable_id"]))
        self.assertEqual(r.status, 200)
        self.assertEqual(self.g("GET", "me/calendars/%s/events/%s" % (self.cal_id, e["immutable_id"])).status, 404)


class CalendarsChange(SimCase):
    """docs 11296, 5580: calendars get deleted and their ids change; the old id then answers 404."""

    def setUp(self):
        SimCase.setUp(self)
        self.other = self.sim.ctl("POST", "users/%s/calendars" % self.uid, {"name": "Other", "can_edit": True},
                                  expect=201)["id"]

    def listed(self):
        return [c["id"] for c in self.g("GET", "me/calendars").json()["value"]]

    def test_a_deleted_calendar_answers_404_and_leaves_the_list(self):
        e = self.outlook_create(event(calendar_id=self.other))
        _, link, _ = self.delta_all(path="me/calendars/%s/calendarView/delta?%s" % (self.other, WINDOW))
        self.sim.ctl("DELETE", "users/%s/calendars/%s" % (self.uid, self.other), expect=204)
        self.assertEqual(self.listed(), [self.cal_id])
        for r in (self.g("GET", link), self.g("GET", "me/calendars/" + self.other),
                  self.g("GET", "me/calendars/%s/calendarView/delta?%s" % (self.other, WINDOW))):
            self.assertEqual(r.status, 404)
            self.assertEqual(r.json()["error"]["code"], "ErrorItemNotFound")
        self.assertEqual(self.g("GET", "me/events/" + e["immutable_id"]).status, 404)
        user = self.sim.ctl("GET", "users/" + self.uid, expect=200)
        self.assertEqual([c["id"] for c in user["calendars"]], [self.cal_id])

    def test_the_default_calendar_cannot_be_deleted(self):
        self.sim.ctl("DELETE", "users/%s/calendars/%s" % (self.uid, self.cal_id), expect=400)

    def test_a_changed_id_answers_404_events_keep_their_ids(self):
        e = self.outlook_create(event(calendar_id=self.other))
        old_path = "me/calendars/%s/calendarView/delta?%s" % (self.other, WINDOW)
        _, link, _ = self.delta_all(path=old_path)
        new = self.sim.ctl("POST", "users/%s/calendars/%s/change_id" % (self.uid, self.other), expect=200)
        self.assertNotEqual(new["id"], self.other)
        self.assertEqual(new["name"], "Other")
        self.assertEqual(sorted(self.listed()), sorted([self.cal_id, new["id"]]))
        self.assertEqual(self.g("GET", link).status, 404)
        items, _, _ = self.delta_all(path="me/calendars/%s/calendarView/delta?%s" % (new["id"], WINDOW))
        self.assertEqual([i["id"] for i in items], [e["immutable_id"]])


if __name__ == "__main__":
    unittest.main()


class BulkUsers(SimCase):
    def test_bulk_users_name_each_default_calendar(self):
        out = self.sim.ctl("POST", "bulk_users", {"tenant": "contoso.example", "count": 3, "prefix": "b"}, expect=201)
        self.assertEqual(out["count"], 3)
        for u in out["users"]:
            user = self.sim.ctl("GET", "users/%s" % u["id"], expect=200)
            self.assertEqual([u["calendar"]], [c["id"] for c in user["calendars"] if c["is_default"]])

"""GRAPH.md sections 3, 4, 6 (error bodies) and 9: writes, calendars, errors, ids."""
import re
import unittest

from simtest import SimCase, WINDOW, UTC, event

WEEKLY = {"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
          "range": {"type": "numbered", "startDate": "2025-03-03", "numberOfOccurrences": 4}}


class Writes(SimCase):
    def test_create_returns_201_and_the_event(self):
        r = self.g("POST", "users/%s/events" % self.uid, event("new"))
        self.assertEqual(r.status, 201)
        ev = r.json()
        self.assertEqual(ev["subject"], "new")
        self.assertEqual(ev["type"], "singleInstance")
        self.assertIn("@odata.context", ev)

    def test_create_in_a_named_calendar(self):
        other = self.sim.ctl("POST", "users/%s/calendars" % self.uid, {"name": "Team"}, expect=201)
        r = self.g("POST", "users/%s/calendars/%s/events" % (self.uid, other["id"]), event("team"))
        self.assertEqual(r.status, 201)
        truth = self.sim.ctl("GET", "users/%s/truth" % self.uid)
        self.assertEqual(truth["events"][0]["calendar_id"], other["id"])

    def test_me_events_is_the_signed_in_users_mailbox(self):
        r = self.g("POST", "me/events", event("mine"))
        self.assertEqual(r.status, 201)
        self.assertEqual(self.g("GET", "users/ada@contoso.example/events").json()["value"][0]["subject"], "mine")

    def test_transaction_id_deduplicates_a_retried_create(self):
        body = event("once", transactionId="6f1c5d2e-0000-4000-8000-000000000001")
        a = self.g("POST", "me/events", body)
        b = self.g("POST", "me/events", body)
        self.assertEqual(a.status, 201)
        self.assertIn(b.status, (200, 201))
        self.assertEqual(a.json()["id"], b.json()["id"])
        self.assertEqual(a.json()["transactionId"], "6f1c5d2e-0000-4000-8000-000000000001")
        self.assertEqual(len(self.sim.ctl("GET", "users/%s/truth" % self.uid)["events"]), 1)

    def test_transaction_id_duplicate_variant_409(self):
        self.sim.ctl("POST", "config", {"txid_duplicate": "409"}, expect=200)
        body = event("once", transactionId="tx-1")
        self.assertEqual(self.g("POST", "me/events", body).status, 201)
        self.assertEqual(self.g("POST", "me/events", body).status, 409)

    def test_transaction_id_cannot_be_changed(self):
        ev = self.g("POST", "me/events", event(transactionId="tx-a")).json()
        r = self.g("PATCH", "me/events/" + ev["id"], {"transactionId": "tx-b"})
        self.assertEqual(r.status, 400)

    def test_update_returns_200_with_new_changekey(self):
        ev = self.g("POST", "me/events", event()).json()
        r = self.g("PATCH", "me/events/" + ev["id"], {"subject": "changed"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["subject"], "changed")
        self.assertNotEqual(r.json()["changeKey"], ev["changeKey"])

    def test_if_match_with_current_key_succeeds_and_stale_key_gives_412(self):
        ev = self.g("POST", "me/events", event()).json()
        r = self.g("PATCH", "me/events/" + ev["id"], {"subject": "a"}, headers={"If-Match": ev["@odata.etag"]})
        self.assertEqual(r.status, 200)
        r = self.g("PATCH", "me/events/" + ev["id"], {"subject": "b"}, headers={"If-Match": ev["@odata.etag"]})
        self.assertEqual(r.status, 412)
        self.assertEqual(r.json()["error"]["code"], "ErrorIrresolvableConflict")
        r = self.g("DELETE", "me/events/" + ev["id"], headers={"If-Match": ev["@odata.etag"]})
        self.assertEqual(r.status, 412)

    def test_delete_returns_204_and_again_404_item_not_found(self):
        ev = self.g("POST", "me/events", event()).json()
        r = self.g("DELETE", "me/events/" + ev["id"])
        self.assertEqual((r.status, r.body), (204, b""))
        r = self.g("DELETE", "me/events/" + ev["id"])
        self.assertEqual(r.status, 404)
        err = r.json()["error"]
        self.assertEqual(err["code"], "ErrorItemNotFound")
        self.assertEqual(err["message"], "The specified object was not found in the store.")

    def test_error_body_has_inner_error_with_request_id_and_date(self):
        r = self.g("GET", "me/events/AAkALgAA0000000000000000000000AAA=", headers={"client-request-id": "c0ffee00-0000-4000-8000-000000000000"})
        inner = r.json()["error"]["innerError"]
        self.assertRegex(inner["date"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")
        self.assertRegex(inner["request-id"], r"^[0-9a-f-]{36}$")
        self.assertEqual(inner["client-request-id"], "c0ffee00-0000-4000-8000-000000000000")
        self.assertEqual(r.header("request-id"), inner["request-id"])

    def test_malformed_id_gives_400_invalid_id(self):
        r = self.g("GET", "me/events/not-an-id")
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["error"]["code"], "ErrorInvalidIdMalformed")

    def test_read_only_calendar_gives_403_on_writes(self):
        ro = self.sim.ctl("POST", "users/%s/calendars" % self.uid, {"name": "Boss", "can_edit": False,
                                                                    "owner_name": "Boss", "owner_address": "boss@contoso.example"},
                          expect=201)
        r = self.g("POST", "users/%s/calendars/%s/events" % (self.uid, ro["id"]), event())
        self.assertEqual(r.status, 403)
        self.assertEqual(r.json()["error"]["code"], "ErrorAccessDenied")
        e = self.outlook_create(dict(event("owner's"), calendar_id=ro["id"]))
        self.assertEqual(self.g("PATCH", "me/events/" + e["id"], {"subject": "x"}).status, 403)
        self.assertEqual(self.g("DELETE", "me/events/" + e["id"]).status, 403)

    def test_unknown_time_zone_is_rejected(self):
        r = self.g("POST", "me/events", event(tz="Mars/Olympus_Mons"))
        self.assertEqual(r.status, 400)

    def test_end_before_start_is_rejected(self):
        r = self.g("POST", "me/events", event(start="2025-03-03T10:00:00", end="2025-03-03T09:00:00"))
        self.assertEqual(r.status, 400)


class ZoneNamesOnWrite(SimCase):
    """GRAPH.md section 10: Windows names are taken on write, IANA names refused."""

    def test_windows_names_are_taken(self):
        r = self.g("POST", "me/events", event("w", tz="Romance Standard Time"))
        self.assertEqual(r.status, 201)

    def test_an_iana_name_is_refused_like_graph_does(self):
        for name in ("Europe/Copenhagen", "America/New_York"):
            r = self.g("POST", "me/events", event("i", tz=name))
            self.assertEqual(r.status, 400)
            err = r.json()["error"]
            self.assertEqual(err["code"], "TimeZoneNotSupportedException")
            self.assertIn("The following TimeZone value is not supported: '%s'." % name, err["message"])
        self.assertEqual(self.sim.ctl("GET", "users/%s/truth" % self.uid)["events"], [])

    def test_recurrence_time_zone_and_updates_are_checked_too(self):
        rec = dict(WEEKLY, range=dict(WEEKLY["range"], recurrenceTimeZone="Europe/Berlin"))
        r = self.g("POST", "me/events", event("r", recurrence=rec))
        self.assertEqual((r.status, r.json()["error"]["code"]), (400, "TimeZoneNotSupportedException"))
        ev = self.g("POST", "me/events", event("u")).json()
        r = self.g("PATCH", "me/events/" + ev["id"], {"start": {"dateTime": "2025-03-03T10:00:00", "timeZone": "Asia/Tokyo"}})
        self.assertEqual(r.status, 400)

    def test_outlook_itself_and_the_switch_take_any_zone(self):
        self.outlook_create(event("o", tz="America/New_York"))
        self.sim.ctl("POST", "config", {"iana_zones_on_write": True}, expect=200)
        self.assertEqual(self.g("POST", "me/events", event("i", tz="Europe/Copenhagen")).status, 201)


class OnlineMeetings(SimCase):
    def create(self):
        return self.g("POST", "me/events", event("teams", isOnlineMeeting=True, onlineMeetingProvider="teamsForBusiness",
                                                 body={"contentType": "html", "content": "<p>hello</p>"})).json()

    def test_a_teams_meeting_gets_a_join_link(self):
        ev = self.create()
        url = ev["onlineMeeting"]["joinUrl"]
        self.assertTrue(url.startswith("https://teams.microsoft.com/l/meetup-join/"))
        self.assertIn(url, ev["body"]["content"])

    def test_a_body_patch_without_the_meeting_fields_drops_the_link_from_the_body(self):
        ev = self.create()
        url = ev["onlineMeeting"]["joinUrl"]
        r = self.g("PATCH", "me/events/" + ev["id"], {"body": {"contentType": "html", "content": "<p>new</p>"}}).json()
        self.assertNotIn(url, r["body"]["content"])
        self.assertEqual(r["onlineMeeting"]["joinUrl"], url)
        r = self.g("PATCH", "me/events/" + ev["id"], {"body": {"contentType": "html", "content": "<p>again</p>"},
                                                      "isOnlineMeeting": True, "onlineMeetingProvider": "teamsForBusiness"}).json()
        self.assertIn(url, r["body"]["content"])

    def test_is_online_meeting_cannot_go_back_to_false(self):
        ev = self.create()
        self.assertEqual(self.g("PATCH", "me/events/" + ev["id"], {"isOnlineMeeting": False}).status, 400)


class Occurrences(SimCase):
    def series(self):
        m = self.g("POST", "me/events", event("weekly", recurrence=WEEKLY), headers={"Prefer": 'IdType="ImmutableId"'}).json()
        occ = self.g("GET", "me/events/%s/instances?%s" % (m["id"], WINDOW), headers={"Prefer": 'IdType="ImmutableId"'}).json()["value"]
        return m, occ

    def test_series_master_create_and_instances(self):
        m, occ = self.series()
        self.assertEqual(m["type"], "seriesMaster")
        self.assertEqual(m["recurrence"]["pattern"]["type"], "weekly")
        self.assertEqual(len(occ), 4)
        self.assertTrue(all(o["type"] == "occurrence" and o["seriesMasterId"] == m["id"] for o in occ))

    def test_occurrence_edit_creates_an_exception(self):
        m, occ = self.series()
        r = self.g("PATCH", "me/events/" + occ[1]["id"], {"subject": "special"}, headers={"Prefer": 'IdType="ImmutableId"'})
        self.assertEqual(r.status, 200)
        ex = r.json()
        self.assertEqual((ex["type"], ex["subject"], ex["id"]), ("exception", "special", occ[1]["id"]))
        truth = self.sim.ctl("GET", "users/%s/truth" % self.uid)
        self.assertEqual(sorted(e["type"] for e in truth["events"]), ["exception", "seriesMaster"])

    def test_occurrence_moved_past_its_neighbour_is_rejected(self):
        m, occ = self.series()
        r = self.g("PATCH", "me/events/" + occ[1]["id"], {"start": {"dateTime": "2025-03-18T09:00:00", "timeZone": "UTC"},
                                                           "end": {"dateTime": "2025-03-18T10:00:00", "timeZone": "UTC"}})
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["error"]["code"], "ErrorOccurrenceCrossingBoundary")
        r = self.g("PATCH", "me/events/" + occ[1]["id"], {"start": {"dateTime": "2025-03-12T09:00:00", "timeZone": "UTC"},
                                                           "end": {"dateTime": "2025-03-12T10:00:00", "timeZone": "UTC"}})
        self.assertEqual(r.status, 200)

    def test_occurrence_delete_cancels_only_that_occurrence(self):
        m, occ = self.series()
        self.assertEqual(self.g("DELETE", "me/events/" + occ[0]["id"]).status, 204)
        self.assertEqual(self.g("GET", "me/events/" + occ[0]["id"]).status, 404)
        left = self.g("GET", "me/events/%s/instances?%s" % (m["id"], WINDOW), headers={"Prefer": 'IdType="ImmutableId"'}).json()["value"]
        self.assertEqual([o["id"] for o in left], [o["id"] for o in occ[1:]])

    def test_occurrence_if_match_uses_the_occurrence_changekey(self):
        m, occ = self.series()
        r = self.g("PATCH", "me/events/" + occ[2]["id"], {"subject": "x"}, headers={"If-Match": occ[2]["@odata.etag"]})
        self.assertEqual(r.status, 200)
        r2 = self.g("PATCH", "me/events/" + occ[2]["id"], {"subject": "y"}, headers={"If-Match": occ[2]["@odata.etag"]})
        self.assertEqual(r2.status, 412)


class Views(SimCase):
    def test_calendar_view_lists_instances_in_order_and_pages(self):
        self.outlook_create(event("series", recurrence=WEEKLY))
        self.outlook_create(event("single", "2025-03-05T09:00:00", "2025-03-05T10:00:00"))
        r = self.g("GET", "me/calendarView?%s&$top=3" % WINDOW).json()
        self.assertEqual([e["subject"] for e in r["value"]], ["series", "single", "series"])
        r2 = self.g("GET", r["@odata.nextLink"]).json()
        self.assertEqual(len(r2["value"]), 2)

    def test_get_event_and_list_events(self):
        ev = self.g("POST", "me/events", event("one")).json()
        self.assertEqual(self.g("GET", "me/events/" + ev["id"]).json()["subject"], "one")
        self.assertEqual(len(self.g("GET", "me/calendar/events").json()["value"]), 1)


class Calendars(SimCase):
    def test_calendar_list_fields(self):
        r = self.g("GET", "me/calendars")
        self.assertEqual(r.status, 200)
        c = r.json()["value"][0]
        for k in ("id", "name", "color", "hexColor", "changeKey", "canEdit", "canShare", "canViewPrivateItems",
                  "isDefaultCalendar", "isRemovable", "owner"):
            self.assertIn(k, c)
        self.assertEqual(c["hexColor"], "")
        self.assertTrue(c["isDefaultCalendar"])
        self.assertEqual(c["owner"], {"name": "Ada Lovelace", "address": "ada@contoso.example"})

    def test_calendar_list_is_paged_by_nextlink(self):
        for i in range(14):
            self.sim.ctl("POST", "users/%s/calendars" % self.uid, {"name": "c%d" % i, "can_edit": i % 2 == 0}, expect=201)
        r = self.g("GET", "users/%s/calendars" % self.uid).json()
        ids = [c["id"] for c in r["value"]]
        self.assertIn("@odata.nextLink", r)
        r2 = self.g("GET", r["@odata.nextLink"]).json()
        ids += [c["id"] for c in r2["value"]]
        self.assertNotIn("@odata.nextLink", r2)
        self.assertEqual(len(set(ids)), 15)
        self.assertFalse([c for c in r2["value"] if c["name"] == "c13"][0]["canEdit"])

    def test_calendar_ids_are_stable(self):
        a = [c["id"] for c in self.g("GET", "me/calendars").json()["value"]]
        self.g("POST", "me/events", event())
        b = [c["id"] for c in self.g("GET", "me/calendars").json()["value"]]
        self.assertEqual(a, b)


class Ids(SimCase):
    def test_immutable_id_when_asked(self):
        ev = self.g("POST", "me/events", event(), headers={"Prefer": 'IdType="ImmutableId"'}).json()
        same = self.g("GET", "me/events/" + ev["id"]).json()
        self.assertNotEqual(same["id"], ev["id"])
        self.assertEqual(self.g("GET", "me/events/" + same["id"], headers={"Prefer": 'IdType="ImmutableId"'}).json()["id"], ev["id"])

    def test_default_id_changes_when_event_moves_calendar_immutable_does_not(self):
        other = self.sim.ctl("POST", "users/%s/calendars" % self.uid, {"name": "Team"}, expect=201)
        e = self.outlook_create(event())
        moved = self.outlook_patch(e["id"], {"calendar_id": other["id"]})
        self.assertNotEqual(moved["default_id"], e["default_id"])
        self.assertEqual(moved["immutable_id"], e["immutable_id"])
        self.assertEqual(self.g("GET", "me/events/" + e["default_id"]).status, 404)
        self.assertEqual(self.g("GET", "me/events/" + e["immutable_id"]).status, 200)

    def test_ids_are_case_sensitive(self):
        ev = self.g("POST", "me/events", event()).json()
        self.assertEqual(self.g("GET", "me/events/" + ev["id"].swapcase()).status in (400, 404), True)

    def test_translate_exchange_ids(self):
        ev = self.g("POST", "me/events", event()).json()
        r = self.g("POST", "me/translateExchangeIds", {"inputIds": [ev["id"]], "sourceIdType": "restId",
                                                        "targetIdType": "restImmutableEntryId"})
        self.assertEqual(r.status, 200)
        tid = r.json()["value"][0]["targetId"]
        self.assertEqual(self.g("GET", "me/events/" + tid).json()["id"], ev["id"])
        r = self.g("POST", "me/translateExchangeIds", {"inputIds": ["x"] * 1001, "targetIdType": "restId"})
        self.assertEqual(r.status, 400)


if __name__ == "__main__":
    unittest.main()

"""GRAPH.md section 1 and 2: calendar view delta and the event JSON it returns."""
import re
import unittest

from simtest import SimCase, WINDOW, apply_delta, event

ETAG_RE = re.compile(r'^W/"(.+)"$')
LOCAL_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}$")
OFFSET_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z$")


class DeltaRequest(SimCase):
    def test_first_request_needs_a_window(self):
        r = self.g("GET", "me/calendarView/delta")
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["error"]["code"], "ErrorInvalidParameter")

    def test_top_is_rejected_with_400(self):
        r = self.g("GET", "me/calendarView/delta?%s&$top=5" % WINDOW)
        self.assertEqual(r.status, 400)

    def test_select_filter_orderby_are_not_supported(self):
        for opt in ("$select=subject", "$filter=subject%20eq%20'x'", "$orderby=start/dateTime"):
            r = self.g("GET", "me/calendarView/delta?%s&%s" % (WINDOW, opt))
            self.assertEqual(r.status, 400, opt)

    def test_window_without_offset_is_utc(self):
        self.outlook_create(event(start="2025-03-03T23:30:00", end="2025-03-03T23:45:00"))
        r = self.g("GET", "me/calendarView/delta?startDateTime=2025-03-03T23:00:00&endDateTime=2025-03-04T00:00:00")
        self.assertEqual(len(r.json()["value"]), 1)
        r = self.g("GET", "me/calendarView/delta?startDateTime=2025-03-03T23:00:00%2B01:00&endDateTime=2025-03-04T00:00:00%2B01:00")
        self.assertEqual(len(r.json()["value"]), 0)

    def test_events_overlapping_the_window_are_returned(self):
        self.outlook_create(event("inside", "2025-03-03T09:00:00", "2025-03-03T10:00:00"))
        self.outlook_create(event("straddles start", "2025-02-28T23:00:00", "2025-03-01T01:00:00"))
        self.outlook_create(event("before", "2025-02-01T09:00:00", "2025-02-01T10:00:00"))
        self.outlook_create(event("after", "2025-04-01T00:00:00", "2025-04-01T01:00:00"))
        items, _, _ = self.delta_all(path="me/calendarView/delta?startDateTime=2025-03-01T00:00:00Z&endDateTime=2025-04-01T00:00:00Z")
        self.assertEqual(sorted(i["subject"] for i in items), ["inside", "straddles start"])

    def test_pages_carry_nextlink_with_skiptoken_and_last_has_deltalink(self):
        for i in range(7):
            self.outlook_create(event("e%d" % i, "2025-03-%02dT09:00:00" % (i + 1), "2025-03-%02dT10:00:00" % (i + 1)))
        r = self.g("GET", "me/calendarView/delta?" + WINDOW, headers={"Prefer": "odata.maxpagesize=3"})
        d = r.json()
        self.assertIn("@odata.context", d)
        self.assertEqual(len(d["value"]), 3)
        self.assertIn("$skiptoken=", d["@odata.nextLink"])
        self.assertNotIn("@odata.deltaLink", d)
        self.assertEqual(r.header("Preference-Applied"), "odata.maxpagesize=3")
        items, delta, pages = self.delta_all(headers={"Prefer": "odata.maxpagesize=3"})
        self.assertEqual(pages, 3)
        self.assertIn("$deltatoken=", delta)
        self.assertEqual(len({i["id"] for i in items}), 7)

    def test_links_keep_the_window_and_need_no_parameters(self):
        self.outlook_create(event())
        _, delta, _ = self.delta_all()
        self.assertNotIn("startDateTime", delta)
        self.outlook_create(event("later", "2025-05-05T09:00:00", "2025-05-05T10:00:00"))
        self.outlook_create(event("outside", "2027-05-05T09:00:00", "2027-05-05T10:00:00"))
        items, _, _ = self.delta_all(delta)
        self.assertEqual([i["subject"] for i in items], ["later"])

    def test_timezone_preference_is_applied_and_answered(self):
        self.outlook_create(event(start="2025-03-03T09:00:00", end="2025-03-03T10:00:00", tz="W. Europe Standard Time"))
        r = self.g("GET", "me/calendarView/delta?" + WINDOW, headers={"Prefer": 'outlook.timezone="UTC"'})
        self.assertIn('outlook.timezone="UTC"', r.header("Preference-Applied"))
        ev = r.json()["value"][0]
        self.assertEqual(ev["start"], {"dateTime": "2025-03-03T08:00:00.0000000", "timeZone": "UTC"})
        self.assertEqual(ev["originalStartTimeZone"], "W. Europe Standard Time")

    def test_without_timezone_preference_events_come_in_their_own_zone(self):
        self.outlook_create(event(start="2025-07-01T09:00:00", end="2025-07-01T10:00:00", tz="Pacific Standard Time"))
        ev = self.g("GET", "me/calendarView/delta?" + WINDOW).json()["value"][0]
        self.assertEqual(ev["start"], {"dateTime": "2025-07-01T09:00:00.0000000", "timeZone": "Pacific Standard Time"})

    def test_body_content_type_preference(self):
        self.outlook_create(event(body={"contentType": "html", "content": "<html><body><p>Hello <b>you</b></p></body></html>"}))
        ev = self.g("GET", "me/calendarView/delta?" + WINDOW).json()["value"][0]
        self.assertEqual(ev["body"]["contentType"], "html")
        r = self.g("GET", "me/calendarView/delta?" + WINDOW, headers={"Prefer": 'outlook.body-content-type="text"'})
        ev = r.json()["value"][0]
        self.assertEqual(ev["body"], {"contentType": "text", "content": "Hello you"})
        self.assertIn('outlook.body-content-type="text"', r.header("Preference-Applied"))

    def test_delta_links_work_with_either_id_type(self):
        created = self.outlook_create(event())
        r = self.g("GET", "me/calendarView/delta?" + WINDOW, headers={"Prefer": 'IdType="ImmutableId"'})
        d = r.json()
        self.assertEqual(d["value"][0]["id"], created["immutable_id"])
        self.outlook_patch(created["id"], {"subject": "renamed"})
        d2 = self.g("GET", d["@odata.deltaLink"]).json()
        self.assertEqual(d2["value"][0]["id"], created["default_id"])
        self.assertNotEqual(created["default_id"], created["immutable_id"])

    def test_per_calendar_delta_only_sees_that_calendar(self):
        other = self.sim.ctl("POST", "users/%s/calendars" % self.uid, {"name": "Team"}, expect=201)
        self.outlook_create(event("primary"))
        self.outlook_create(dict(event("team"), calendar_id=other["id"]))
        items, _, _ = self.delta_all(path="users/%s/calendars/%s/calendarView/delta?%s" % (self.uid, other["id"], WINDOW))
        self.assertEqual([i["subject"] for i in items], ["team"])
        items, _, _ = self.delta_all(path="users/%s/calendarView/delta?%s" % (self.uid, WINDOW))
        self.assertEqual([i["subject"] for i in items], ["primary"])


class DeltaChanges(SimCase):
    def test_deleted_event_comes_as_removed(self):
        e = self.outlook_create(event())
        _, delta, _ = self.delta_all()
        self.outlook_delete(e["id"])
        items, _, _ = self.delta_all(delta)
        self.assertEqual(items, [{"@odata.type": "#microsoft.graph.event", "id": e["immutable_id"],
                                  "@removed": {"reason": "deleted"}}])

    def test_event_that_leaves_the_window_comes_as_removed(self):
        e = self.outlook_create(event())
        _, delta, _ = self.delta_all()
        self.outlook_patch(e["id"], {"start": {"dateTime": "2030-01-01T09:00:00", "timeZone": "UTC"},
                                     "end": {"dateTime": "2030-01-01T10:00:00", "timeZone": "UTC"}})
        items, _, _ = self.delta_all(delta)
        self.assertEqual([(i["id"], i.get("@removed")) for i in items], [(e["immutable_id"], {"reason": "deleted"})])

    def test_changed_event_comes_whole_with_new_changekey(self):
        e = self.outlook_create(event(categories=["Blue"]))
        items, delta, _ = self.delta_all()
        first = items[0]
        self.outlook_patch(e["id"], {"subject": "renamed"})
        items, _, _ = self.delta_all(delta)
        self.assertEqual(len(items), 1)
        ev = items[0]
        self.assertEqual(ev["subject"], "renamed")
        self.assertEqual(ev["categories"], ["Blue"])
        self.assertNotEqual(ev["changeKey"], first["changeKey"])
        self.assertEqual(ev["@odata.etag"], 'W/"%s"' % ev["changeKey"])
        self.assertEqual(set(ev) - {"@odata.etag"}, set(first) - {"@odata.etag"})

    def test_unchanged_mailbox_gives_empty_page_with_deltalink(self):
        self.outlook_create(event())
        _, delta, _ = self.delta_all()
        d = self.g("GET", delta).json()
        self.assertEqual(d["value"], [])
        self.assertIn("@odata.deltaLink", d)

    def test_event_json_shape(self):
        self.outlook_create(event(start="2025-03-03T09:00:00", end="2025-03-03T10:00:00", tz="Romance Standard Time",
                                  location={"displayName": "Room 1"}, showAs="tentative", importance="high",
                                  sensitivity="private",
                                  attendees=[{"type": "required", "status": {"response": "accepted", "time": "2025-01-01T00:00:00Z"},
                                              "emailAddress": {"name": "Bob", "address": "bob@contoso.example"}}]))
        ev = self.g("GET", "me/calendarView/delta?" + WINDOW).json()["value"][0]
        for k in ("id", "iCalUId", "changeKey", "createdDateTime", "lastModifiedDateTime", "subject", "bodyPreview",
                  "body", "start", "end", "isAllDay", "location", "locations", "attendees", "organizer", "showAs",
                  "sensitivity", "importance", "categories", "recurrence", "type", "isCancelled", "isOrganizer",
                  "isReminderOn", "reminderMinutesBeforeStart", "responseStatus", "webLink", "onlineMeeting",
                  "transactionId", "seriesMasterId"):
            self.assertIn(k, ev)
        self.assertRegex(ev["start"]["dateTime"], LOCAL_RE)
        self.assertRegex(ev["createdDateTime"], OFFSET_RE)
        self.assertRegex(ev["lastModifiedDateTime"], OFFSET_RE)
        self.assertEqual(ETAG_RE.match(ev["@odata.etag"]).group(1), ev["changeKey"])
        self.assertEqual(ev["type"], "singleInstance")
        self.assertEqual(ev["locations"][0]["displayName"], "Room 1")
        self.assertEqual(ev["responseStatus"], {"response": "organizer", "time": "0001-01-01T00:00:00Z"})
        self.assertEqual(ev["organizer"]["emailAddress"]["address"], "ada@contoso.example")
        self.assertIsNone(ev["transactionId"])

    def test_unknown_fields_set_in_outlook_are_passed_through(self):
        self.outlook_create(event(**{"futureField": {"x": 1}}))
        ev = self.g("GET", "me/calendarView/delta?" + WINDOW).json()["value"][0]
        self.assertEqual(ev["futureField"], {"x": 1})

    def test_all_day_event_stays_on_its_date_in_utc_rendering(self):
        self.outlook_create(event("holiday", "2025-03-03T00:00:00", "2025-03-04T00:00:00", tz="Pacific Standard Time",
                                  isAllDay=True))
        ev = self.g("GET", "me/calendarView/delta?" + WINDOW, headers={"Prefer": 'outlook.timezone="UTC"'}).json()["value"][0]
        self.assertTrue(ev["isAllDay"])
        self.assertEqual(ev["start"]["dateTime"], "2025-03-03T00:00:00.0000000")
        self.assertEqual(ev["end"]["dateTime"], "2025-03-04T00:00:00.0000000")

    def test_custom_zone_names_are_passed_through(self):
        self.outlook_create(event(tz="tzone://Microsoft/Custom"))
        self.outlook_create(event("b", tz="Customized Time Zone"))
        items, _, _ = self.delta_all(headers={"Prefer": 'IdType="ImmutableId"'})
        zones = sorted(i["start"]["timeZone"] for i in self.g("GET", "me/calendarView/delta?" + WINDOW).json()["value"])
        self.assertEqual(zones, ["Customized Time Zone", "tzone://Microsoft/Custom"])
        self.assertEqual(len(items), 2)

    def test_raw_members_replace_the_rendering_until_patched_away(self):
        bad_start = {"dateTime": "2025-03-03T09:00:00.0000000", "timeZone": "Mars Standard Time"}
        ev = self.outlook_create(event("odd", _sim_raw={"start": bad_start, "type": "futureType"}))
        items, delta, _ = self.delta_all()
        self.assertEqual(items[0]["start"], bad_start)
        self.assertEqual(items[0]["type"], "futureType")
        self.assertNotIn("_sim_raw", items[0])
        # a Graph client cannot set it; a later Outlook change can take it away
        r = self.g("PATCH", "me/events/" + ev["immutable_id"], {"_sim_raw": {"subject": "x"}})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["type"], "futureType")
        self.assertEqual(r.json()["subject"], "odd")
        self.outlook_patch(ev["immutable_id"], {"_sim_raw": None, "subject": "fixed"})
        items, _, _ = self.delta_all(delta)
        self.assertEqual(len(items), 1)
        self.assertEqual(items[0]["type"], "singleInstance")
        self.assertEqual(items[0]["start"]["timeZone"], "UTC")
        self.assertEqual(items[0]["subject"], "fixed")


class DeltaSeries(SimCase):
    WEEKLY = {"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"], "firstDayOfWeek": "sunday"},
              "range": {"type": "numbered", "startDate": "2025-03-03", "numberOfOccurrences": 4}}

    def test_series_expanded_into_occurrences_master_not_returned(self):
        self.sim.ctl("POST", "config", {"full_occurrences": True}, expect=200)
        m = self.outlook_create(event("weekly", recurrence=self.WEEKLY))
        items, _, _ = self.delta_all()
        self.assertEqual([i["type"] for i in items], ["occurrence"] * 4)
        self.assertTrue(all(i["seriesMasterId"] == m["immutable_id"] for i in items))
        self.assertEqual([i["originalStart"] for i in items],
                         ["2025-03-03T09:00:00Z", "2025-03-10T09:00:00Z", "2025-03-17T09:00:00Z", "2025-03-24T09:00:00Z"])
        self.assertEqual(len({i["iCalUId"] for i in items}), 4)

    def test_occurrence_edit_gives_exception_in_next_round(self):
        m = self.outlook_create(event("weekly", recurrence=self.WEEKLY))
        items, delta, _ = self.delta_all()
        second = items[1]
        self.outlook_patch(second["id"], {"subject": "moved", "start": {"dateTime": "2025-03-11T09:00:00", "timeZone": "UTC"},
                                          "end": {"dateTime": "2025-03-11T10:00:00", "timeZone": "UTC"}})
        items, _, _ = self.delta_all(delta)
        self.assertEqual(len(items), 1)
        self.assertEqual(items[0]["id"], second["id"])
        self.assertEqual(items[0]["type"], "exception")
        self.assertEqual(items[0]["originalStart"], "2025-03-10T09:00:00Z")
        self.assertEqual(items[0]["start"]["dateTime"], "2025-03-11T09:00:00.0000000")

    def test_cancelled_occurrence_comes_as_removed_on_request(self):
        self.sim.ctl("POST", "config", {"full_occurrences": True, "removed_for_cancelled": True}, expect=200)
        self.outlook_create(event("weekly", recurrence=self.WEEKLY))
        items, delta, _ = self.delta_all()
        self.outlook_delete(items[2]["id"])
        got, _, _ = self.delta_all(delta)
        removed = [i for i in got if "@removed" in i]
        self.assertEqual(removed, [{"@odata.type": "#microsoft.graph.event", "id": items[2]["id"], "@removed": {"reason": "deleted"}}])

    def test_occurrences_are_stubs_by_default(self):
        m = self.outlook_create(event("weekly", recurrence=self.WEEKLY))
        items, _, _ = self.delta_all()
        self.assertEqual([i["type"] for i in items], ["occurrence"] * 4)
        for i in items:
            self.assertEqual(sorted(i), sorted(["@odata.type", "@odata.etag", "id", "seriesMasterId", "type", "start", "end"]))
            self.assertEqual(i["seriesMasterId"], m["immutable_id"])
        self.assertEqual([i["start"]["dateTime"] for i in items],
                         ["2025-03-%sT09:00:00.0000000" % d for d in ("03", "10", "17", "24")])
        # the full occurrence and the master are one GET away
        full = self.g("GET", "me/events/" + items[0]["id"]).json()
        self.assertEqual((full["subject"], full["type"]), ("weekly", "occurrence"))
        self.assertEqual('W/"%s"' % full["changeKey"], items[0]["@odata.etag"])
        master = self.g("GET", "me/events/" + m["immutable_id"]).json()
        self.assertEqual((master["type"], master["subject"]), ("seriesMaster", "weekly"))
        self.assertEqual(master["recurrence"]["pattern"]["type"], "weekly")

    def test_exceptions_come_in_full_among_stubs(self):
        self.outlook_create(event("weekly", recurrence=self.WEEKLY))
        items, delta, _ = self.delta_all()
        self.outlook_patch(items[1]["id"], {"subject": "moved"})
        got, _, _ = self.delta_all(delta)
        self.assertEqual([(i["type"], i.get("subject")) for i in got], [("exception", "moved")])

    def test_cancelled_occurrence_gets_no_removed_but_the_series_comes_again(self):
        self.outlook_create(event("weekly", recurrence=self.WEEKLY))
        items, delta, _ = self.delta_all()
        self.outlook_delete(items[2]["id"])
        got, _, _ = self.delta_all(delta)
        self.assertFalse([i for i in got if "@removed" in i])
        # the master changed (its changeKey), so its plain occurrences' etags did too
        self.assertEqual(sorted(i["id"] for i in got), sorted(i["id"] for i in items if i["id"] != items[2]["id"]))
        # the instances of the master no longer list it
        inst = self.g("GET", "me/events/%s/instances?startDateTime=2025-03-01T00:00:00Z&endDateTime=2025-04-01T00:00:00Z"
                      % items[0]["seriesMasterId"]).json()["value"]
        self.assertNotIn(items[2]["id"], [i["id"] for i in inst])

    def test_master_subject_edit_sends_every_stub_again(self):
        m = self.outlook_create(event("weekly", recurrence=self.WEEKLY))
        items, delta, _ = self.delta_all()
        self.outlook_patch(m["id"], {"subject": "renamed"})
        got, _, _ = self.delta_all(delta)
        self.assertEqual(sorted(i["id"] for i in got), sorted(i["id"] for i in items))
        self.assertTrue(all(i["@odata.etag"] != j["@odata.etag"] for i, j in zip(sorted(got, key=lambda x: x["id"]),
                                                                             sorted(items, key=lambda x: x["id"]))))

    def test_shortened_series_removes_its_tail(self):
        m = self.outlook_create(event("weekly", recurrence=self.WEEKLY))
        items, delta, _ = self.delta_all()
        rec = {"pattern": self.WEEKLY["pattern"], "range": dict(self.WEEKLY["range"], numberOfOccurrences=2)}
        self.outlook_patch(m["id"], {"recurrence": rec})
        got, _, _ = self.delta_all(delta)
        removed = sorted(i["id"] for i in got if "@removed" in i)
        self.assertEqual(removed, sorted(i["id"] for i in items[2:]))

    def test_series_larger_than_a_page_spans_pages(self):
        rec = {"pattern": {"type": "daily", "interval": 1}, "range": {"type": "noEnd", "startDate": "2025-03-01"}}
        self.outlook_create(event("daily", "2025-03-01T09:00:00", "2025-03-01T09:30:00", recurrence=rec))
        items, _, pages = self.delta_all(path="me/calendarView/delta?startDateTime=2025-03-01T00:00:00Z&endDateTime=2025-04-01T00:00:00Z",
                                         headers={"Prefer": "odata.maxpagesize=10"})
        self.assertEqual(len(items), 31)
        self.assertEqual(len({i["id"] for i in items}), 31)
        self.assertEqual(pages, 4)


class DeltaVariants(SimCase):
    def seed(self, n=5):
        return [self.outlook_create(event("e%d" % i, "2025-03-%02dT09:00:00" % (i + 1), "2025-03-%02dT10:00:00" % (i + 1)))
                for i in range(n)]

    def test_expired_token_gives_410_sync_state_not_found(self):
        self.seed(1)
        _, delta, _ = self.delta_all()
        self.sim.ctl("POST", "delta/expire", {"upn": "ada@contoso.example"}, expect=200)
        r = self.g("GET", delta)
        self.assertEqual(r.status, 410)
        self.assertEqual(r.json()["error"]["code"], "SyncStateNotFound")
        self.assertIn("request-id", r.json()["error"]["innerError"])

    def test_gone_variants(self):
        self.seed(1)
        for style, code in (("syncStateNotFound", "syncStateNotFound"), ("resyncRequired", "resyncRequired"),
                            ("location", "SyncStateNotFound")):
            self.sim.ctl("POST", "config", {"delta_gone_style": style}, expect=200)
            _, delta, _ = self.delta_all()
            self.sim.ctl("POST", "delta/expire", {"upn": "ada@contoso.example"}, expect=200)
            r = self.g("GET", delta)
            self.assertEqual(r.status, 410, style)
            self.assertEqual(r.json()["error"]["code"], code)
            if style == "location":
                loc = r.header("Location")
                self.assertIn("startDateTime=2025-01-01T00:00:00", loc)
                items, _, _ = self.delta_all(loc)
                self.assertEqual(len(items), 1)

    def test_stale_nextlink_gives_410(self):
        self.seed(4)
        d = self.g("GET", "me/calendarView/delta?" + WINDOW, headers={"Prefer": "odata.maxpagesize=2"}).json()
        self.sim.ctl("POST", "delta/expire", {"upn": "ada@contoso.example"}, expect=200)
        self.assertEqual(self.g("GET", d["@odata.nextLink"]).status, 410)

    def test_forged_token_gives_410(self):
        self.assertEqual(self.g("GET", "me/calendarView/delta?$deltatoken=AAAAnotatoken").status, 410)

    def test_overshoot_pages_larger_than_maxpagesize(self):
        self.sim.ctl("POST", "config", {"overshoot_pagesize": True}, expect=200)
        rec = {"pattern": {"type": "daily", "interval": 1}, "range": {"type": "numbered", "startDate": "2025-03-01", "numberOfOccurrences": 12}}
        self.outlook_create(event("daily", "2025-03-01T09:00:00", "2025-03-01T09:30:00", recurrence=rec))
        d = self.g("GET", "me/calendarView/delta?" + WINDOW, headers={"Prefer": "odata.maxpagesize=5"}).json()
        self.assertEqual(len(d["value"]), 12)

    def test_empty_pages_carry_nextlink(self):
        self.sim.ctl("POST", "config", {"empty_pages": True}, expect=200)
        self.seed(2)
        d = self.g("GET", "me/calendarView/delta?" + WINDOW).json()
        self.assertEqual(d["value"], [])
        self.assertIn("@odata.nextLink", d)
        items, _, _ = self.delta_all()
        self.assertEqual(len(items), 2)

    def test_duplicates_within_a_round(self):
        self.sim.ctl("POST", "config", {"duplicates_in_round": True}, expect=200)
        self.seed(3)
        items, _, _ = self.delta_all()
        ids = [i["id"] for i in items]
        self.assertGreater(len(ids), len(set(ids)))
        self.assertEqual(len(apply_delta({}, items)), 3)

    def test_duplicates_across_pages(self):
        # "pages": every page after a round's first carries the round's first item again
        self.sim.ctl("POST", "config", {"duplicates_in_round": "pages"}, expect=200)
        self.seed(5)
        d = self.g("GET", "me/calendarView/delta?" + WINDOW,
                   headers={"Prefer": 'IdType="ImmutableId", odata.maxpagesize=2'}).json()
        first = d["value"][0]["id"]
        self.assertEqual(len(d["value"]), 2)
        items, delta, pages = self.delta_all(d["@odata.nextLink"], headers={"Prefer": 'IdType="ImmutableId", odata.maxpagesize=2'})
        self.assertEqual(pages, 2)
        self.assertEqual([i["id"] for i in items].count(first), 2)   # pages 2 and 3
        self.assertEqual(len(apply_delta({}, d["value"] + items)), 5)
        # the next round's first page is a first page again: nothing repeated
        self.outlook_patch(first, {"subject": "changed"})
        items, _, _ = self.delta_all(delta)
        self.assertEqual([i["id"] for i in items], [first])

    def test_replay_across_rounds(self):
        self.sim.ctl("POST", "config", {"replay_across_rounds": True}, expect=200)
        e = self.seed(2)
        _, delta, _ = self.delta_all()
        self.outlook_patch(e[0]["id"], {"subject": "x"})
        got1, delta, _ = self.delta_all(delta)
        got2, delta, _ = self.delta_all(delta)
        got3, _, _ = self.delta_all(delta)
        self.assertEqual([i["subject"] for i in got1], ["x"])
        self.assertEqual([i["subject"] for i in got2], ["x"])
        self.assertEqual(got3, [])

    def test_changes_during_a_round_are_not_lost(self):
        evs = self.seed(6)
        d = self.g("GET", "me/calendarView/delta?" + WINDOW,
                   headers={"Prefer": 'IdType="ImmutableId", odata.maxpagesize=2'}).json()
        state = apply_delta({}, d["value"])
        self.outlook_delete(evs[5]["id"])
        self.outlook_patch(evs[0]["id"], {"subject": "changed mid-round"})
        self.outlook_create(event("new mid-round", "2025-06-01T09:00:00", "2025-06-01T10:00:00"))
        items, delta, _ = self.delta_all(d["@odata.nextLink"])
        apply_delta(state, items)
        items, _, _ = self.delta_all(delta)
        apply_delta(state, items)
        truth = self.sim.ctl("GET", "users/%s/truth" % self.uid, expand=1, start="2025-01-01T00:00:00Z",
                             end="2026-01-01T00:00:00Z", tz="UTC")
        self.assertEqual(state, {i["id"]: i for i in truth["instances"]})


if __name__ == "__main__":
    unittest.main()

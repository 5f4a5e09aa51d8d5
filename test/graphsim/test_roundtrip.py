"""Round trip: scripted Outlook edits, then a delta client following the links
ends with exactly the ground truth, under every [?] variant of GRAPH.md section 1."""
import unittest

from simtest import SimCase, apply_delta, event

START, END = "2025-01-01T00:00:00Z", "2025-07-01T00:00:00Z"
PATH = "me/calendarView/delta?startDateTime=%s&endDateTime=%s" % (START, END)
HDR = {"Prefer": 'IdType="ImmutableId", outlook.timezone="UTC", odata.maxpagesize=7'}

WEEKLY = {"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["tuesday", "thursday"]},
          "range": {"type": "endDate", "startDate": "2025-02-04", "endDate": "2025-04-30"}}
MONTHLY = {"pattern": {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["friday"], "index": "last"},
           "range": {"type": "noEnd", "startDate": "2025-01-01"}}


class RoundTrip(SimCase):
    def script(self, step):
        """Outlook-side edits; step 0 builds the mailbox, later steps change it."""
        if step == 0:
            self.singles = [self.outlook_create(event("s%d" % i, "2025-02-%02dT%02d:00:00" % (i + 1, 8 + i % 8),
                                                      "2025-02-%02dT%02d:30:00" % (i + 1, 8 + i % 8),
                                                      tz=["UTC", "W. Europe Standard Time", "Pacific Standard Time"][i % 3]))
                            for i in range(20)]
            self.weekly = self.outlook_create(event("weekly", "2025-02-04T10:00:00", "2025-02-04T11:00:00",
                                                    tz="Romance Standard Time", recurrence=WEEKLY))
            self.monthly = self.outlook_create(event("monthly", "2025-01-31T16:00:00", "2025-01-31T17:00:00",
                                                     tz="America/New_York", recurrence=MONTHLY))
            self.allday = self.outlook_create(event("offsite", "2025-03-10T00:00:00", "2025-03-12T00:00:00",
                                                    tz="Pacific Standard Time", isAllDay=True))
        elif step == 1:
            self.outlook_patch(self.singles[0]["id"], {"subject": "renamed"})
            self.outlook_delete(self.singles[1]["id"])
            self.outlook_patch(self.singles[2]["id"], {"start": {"dateTime": "2026-01-01T09:00:00", "timeZone": "UTC"},
                                                       "end": {"dateTime": "2026-01-01T10:00:00", "timeZone": "UTC"}})
            occ = self.occurrences(self.weekly)
            self.outlook_patch(occ[1], {"subject": "special", "start": {"dateTime": "2025-02-06T14:00:00", "timeZone": "Romance Standard Time"},
                                        "end": {"dateTime": "2025-02-06T15:00:00", "timeZone": "Romance Standard Time"}})
            self.outlook_delete(occ[3])
            self.outlook_create(event("late", "2025-06-30T23:30:00", "2025-07-01T00:30:00"))
        elif step == 2:
            self.outlook_patch(self.monthly["id"], {"subject": "monthly (moved)", "start": {"dateTime": "2025-01-31T17:00:00", "timeZone": "America/New_York"},
                                                    "end": {"dateTime": "2025-01-31T18:00:00", "timeZone": "America/New_York"}})
            self.outlook_patch(self.weekly["id"], {"recurrence": dict(WEEKLY, range=dict(WEEKLY["range"], endDate="2025-03-15"))})
            self.outlook_patch(self.allday["id"], {"isAllDay": True, "start": {"dateTime": "2025-03-11T00:00:00", "timeZone": "Pacific Standard Time"},
                                                   "end": {"dateTime": "2025-03-12T00:00:00", "timeZone": "Pacific Standard Time"}})
            self.outlook_patch(self.singles[2]["id"], {"start": {"dateTime": "2025-05-01T09:00:00", "timeZone": "UTC"},
                                                       "end": {"dateTime": "2025-05-01T10:00:00", "timeZone": "UTC"}})
            self.outlook_create(event("single to series", "2025-04-01T09:00:00", "2025-04-01T09:15:00",
                                      recurrence={"pattern": {"type": "daily", "interval": 3},
                                                  "range": {"type": "numbered", "startDate": "2025-04-01", "numberOfOccurrences": 5}}))
            self.outlook_patch(self.singles[3]["id"], {"recurrence": {"pattern": {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 4},
                                                                      "range": {"type": "noEnd", "startDate": "2025-02-04"}}})

    def occurrences(self, master):
        truth = self.sim.ctl("GET", "users/%s/truth" % self.uid, expand=1, start=START, end=END)
        return [i["id"] for i in truth["instances"] if i.get("seriesMasterId") == master["immutable_id"]]

    def truth(self):
        t = self.sim.ctl("GET", "users/%s/truth" % self.uid, expand=1, start=START, end=END, tz="UTC")
        return {i["id"]: i for i in t["instances"]}

    def run_client(self, config, edit_mid_round=False):
        # the delta engine's diff against the whole truth: occurrences in full, cancellations as @removed
        config = dict({"full_occurrences": True, "removed_for_cancelled": True}, **config)
        self.sim.ctl("POST", "config", config, expect=200)
        state = {}
        self.script(0)
        items, delta, _ = self.delta_all(path=PATH, headers=HDR)
        apply_delta(state, items)
        self.assertEqual(state, self.truth())
        for step in (1, 2):
            if edit_mid_round:
                r = self.g("GET", delta, headers=HDR).json()
                apply_delta(state, r["value"])
                self.script(step)
                link = r.get("@odata.nextLink") or r["@odata.deltaLink"]
                items, delta, _ = self.delta_all(link, headers=HDR)
                apply_delta(state, items)
                items, delta, _ = self.delta_all(delta, headers=HDR)
            else:
                self.script(step)
                items, delta, _ = self.delta_all(delta, headers=HDR)
            apply_delta(state, items)
            self.assertEqual(sorted(state), sorted(self.truth()), "step %d" % step)
            self.assertEqual(state, self.truth(), "step %d" % step)

    def test_delta_client_ends_with_ground_truth(self):
        self.run_client({})

    def test_with_edits_in_the_middle_of_a_round(self):
        self.run_client({}, edit_mid_round=True)

    def test_with_overshoot_duplicates_replays_and_empty_pages(self):
        self.run_client({"overshoot_pagesize": True, "duplicates_in_round": True, "replay_across_rounds": True,
                         "empty_pages": True})

    def test_with_all_variants_and_mid_round_edits(self):
        self.run_client({"duplicates_in_round": True, "replay_across_rounds": True, "empty_pages": True},
                        edit_mid_round=True)


if __name__ == "__main__":
    unittest.main()

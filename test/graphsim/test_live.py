"""GRAPH.md section 11: what the live service does that the reference pages don't say
(issue 22 behaviours 1, 2, 4, 5 and 10)."""
import threading
import time
import unittest

from simtest import SimCase, event


class DuplicateTransactionId(SimCase):
    """Behaviour 1: a repeated transactionId is answered 400 ErrorDuplicateTransactionId."""

    def test_repeated_transaction_id_is_400_by_default(self):
        body = event("once", transactionId="6f1c5d2e-0000-4000-8000-0000000000aa")
        self.assertEqual(self.g("POST", "me/events", body).status, 201)
        r = self.g("POST", "me/events", body)
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["error"]["code"], "ErrorDuplicateTransactionId")
        self.assertIn("TransactionId specified in the request has already been used", r.json()["error"]["message"])
        self.assertEqual(len(self.sim.ctl("GET", "users/%s/truth" % self.uid)["events"]), 1)

    def test_repeated_transaction_id_inside_a_batch_is_400_too(self):
        body = event("once", transactionId="tx-batch")
        self.assertEqual(self.g("POST", "me/events", body).status, 201)
        r = self.g("POST", "$batch", {"requests": [{"id": "1", "method": "POST", "url": "/me/events",
                                                    "headers": {"Content-Type": "application/json"}, "body": body}]})
        inner = r.json()["responses"][0]
        self.assertEqual((inner["status"], inner["body"]["error"]["code"]), (400, "ErrorDuplicateTransactionId"))


class NotEveryNotFoundIsGone(SimCase):
    """Behaviour 2: MailboxNotEnabledForRESTAPI is a 404 that does not mean 'deleted'."""

    def test_disabled_mailbox_answers_404_mailbox_not_enabled_on_writes(self):
        ev = self.g("POST", "me/events", event("kept")).json()
        self.sim.ctl("POST", "users/%s/mailbox" % self.uid, {"enabled": False}, expect=200)
        for method, body in (("PATCH", {"subject": "x"}), ("DELETE", None)):
            r = self.g(method, "me/events/" + ev["id"], body)
            self.assertEqual(r.status, 404)
            self.assertEqual(r.json()["error"]["code"], "MailboxNotEnabledForRESTAPI")
        self.sim.ctl("POST", "users/%s/mailbox" % self.uid, {"enabled": True}, expect=200)
        self.assertEqual(self.g("GET", "me/events/" + ev["id"]).json()["subject"], "kept")

    def test_status_fault_can_carry_its_own_code(self):
        ev = self.g("POST", "me/events", event("kept")).json()
        self.sim.ctl("POST", "faults", {"route": "/events/", "method": "PATCH", "kind": "404",
                                        "code": "MailboxNotEnabledForRESTAPI"}, expect=201)
        r = self.g("PATCH", "me/events/" + ev["id"], {"subject": "x"})
        self.assertEqual((r.status, r.json()["error"]["code"]), (404, "MailboxNotEnabledForRESTAPI"))
        self.assertIn("inactive", r.json()["error"]["message"])
        self.assertEqual(self.g("PATCH", "me/events/" + ev["id"], {"subject": "y"}).status, 200)


class BatchConcurrency(SimCase):
    """Behaviour 4: inner requests of $batch count toward the mailbox's 4 concurrent requests."""

    def creates(self, prefix, n, url="/me/events"):
        return [{"id": str(i), "method": "POST", "url": url, "headers": {"Content-Type": "application/json"},
                 "body": event("%s %d" % (prefix, i), transactionId="%s-%d" % (prefix, i))} for i in range(n)]

    def own(self, method, path, body=None):
        """A request on its own connection (the shared one is not for threads)."""
        c = self.sim.connect()
        try:
            return self.sim.req(method, "/v1.0/" + path, body, token=self.token, conn=c)
        finally:
            c.close()

    def run_parallel(self, bodies):
        results = [None] * len(bodies)

        def call(i):
            results[i] = self.own("POST", "$batch", {"requests": bodies[i]})

        ts = [threading.Thread(target=call, args=(i,)) for i in range(len(bodies))]
        for t in ts:
            t.start()
            time.sleep(0.05)
        for t in ts:
            t.join()
        return results

    def test_one_batch_of_20_for_one_mailbox_is_never_throttled(self):
        self.sim.ctl("POST", "config", {"batch_wave_ms": 20}, expect=200)
        r = self.g("POST", "$batch", {"requests": self.creates("one", 20)})
        self.assertEqual(sorted({x["status"] for x in r.json()["responses"]}), [201])

    def test_parallel_batches_for_one_mailbox_draw_429_mailbox_concurrency(self):
        self.sim.ctl("POST", "config", {"batch_wave_ms": 150}, expect=200)
        res = self.run_parallel([self.creates("a", 8), self.creates("b", 8)])
        first = [x["status"] for x in res[0].json()["responses"]]
        second = res[1].json()["responses"]
        self.assertEqual(sorted(set(first)), [201])
        self.assertEqual({x["status"] for x in second}, {429})
        self.assertTrue(all(x["body"]["error"]["message"].endswith("MailboxConcurrency limit.") for x in second))
        self.assertTrue(all(float(x["headers"]["Retry-After"]) >= 1 for x in second))
        # none of the throttled ones ran (throttled_inner_executes is 0 by default)
        self.assertEqual(len(self.sim.ctl("GET", "users/%s/truth" % self.uid)["events"]), 8)
        self.assertEqual(self.sim.ctl("GET", "stats")["inflight"], 0)

    def test_batches_for_different_mailboxes_do_not_share_slots(self):
        self.sim.ctl("POST", "config", {"batch_wave_ms": 150}, expect=200)
        bob = self.add_user("bob@contoso.example")
        app = self.issue(tenant="contoso.example")
        self.token = app
        res = self.run_parallel([self.creates("a", 8, "/users/%s/events" % self.uid),
                                 self.creates("b", 8, "/users/%s/events" % bob["id"])])
        for r in res:
            self.assertEqual({x["status"] for x in r.json()["responses"]}, {201})

    def test_outer_requests_in_flight_leave_fewer_slots_per_wave(self):
        self.sim.ctl("POST", "faults", {"route": "calendars$", "kind": "slow", "delay_ms": 800, "count": 2},
                     expect=201)
        outer = []

        def slow():
            outer.append(self.own("GET", "me/calendars").status)

        ts = [threading.Thread(target=slow) for _ in range(2)]
        for t in ts:
            t.start()
        time.sleep(0.3)
        r = self.g("POST", "$batch", {"requests": self.creates("w", 8)})
        for t in ts:
            t.join()
        st = {x["id"]: x["status"] for x in r.json()["responses"]}
        # two slots taken: in each wave of 4, the first 2 run and the last 2 are throttled
        self.assertEqual([st[str(i)] for i in range(8)], [201, 201, 429, 429, 201, 201, 429, 429])
        self.assertEqual(outer, [200, 200])

    def test_a_throttled_inner_request_may_still_have_run(self):
        self.sim.ctl("POST", "config", {"batch_wave_ms": 150, "throttled_inner_executes": 1.0}, expect=200)
        res = self.run_parallel([self.creates("a", 4), self.creates("b", 4)])
        self.assertEqual({x["status"] for x in res[1].json()["responses"]}, {429})
        subjects = sorted(e["subject"] for e in self.sim.ctl("GET", "users/%s/truth" % self.uid)["events"])
        self.assertEqual(subjects, ["a %d" % i for i in range(4)] + ["b %d" % i for i in range(4)])
        self.assertEqual(self.sim.ctl("GET", "stats")["throttled_ran"], 4)
        # so the resend meets the transactionId rules
        r = self.g("POST", "me/events", self.creates("b", 1)[0]["body"])
        self.assertEqual((r.status, r.json()["error"]["code"]), (400, "ErrorDuplicateTransactionId"))


class ThrottledButRan(SimCase):
    def test_status_fault_after_inside_a_batch_applies_then_answers_the_fault(self):
        self.sim.ctl("POST", "faults", {"route": "/events$", "method": "POST", "kind": "429", "after": True,
                                        "code": "ApplicationThrottled", "count": 1}, expect=201)
        body = event("ran", transactionId="tx-ran")
        r = self.g("POST", "$batch", {"requests": [{"id": "1", "method": "POST", "url": "/me/events",
                                                    "headers": {"Content-Type": "application/json"}, "body": body}]})
        inner = r.json()["responses"][0]
        self.assertEqual((inner["status"], inner["body"]["error"]["code"]), (429, "ApplicationThrottled"))
        self.assertIn("MailboxConcurrency", inner["body"]["error"]["message"])
        self.assertEqual([e["subject"] for e in self.sim.ctl("GET", "users/%s/truth" % self.uid)["events"]], ["ran"])


class ChangeKeyMovesByItself(SimCase):
    """Behaviour 5: Exchange may rewrite a new event's changeKey with no change of content."""

    def test_change_key_bump_after_create(self):
        self.sim.ctl("POST", "config", {"changekey_bump": 1.0}, expect=200)
        made = self.g("POST", "me/events", event("bumped")).json()
        now = self.g("GET", "me/events/" + made["id"]).json()
        self.assertNotEqual(now["changeKey"], made["changeKey"])
        for k in ("subject", "body", "start", "end", "isAllDay", "showAs", "location"):
            self.assertEqual(now[k], made[k], k)
        r = self.g("PATCH", "me/events/" + made["id"], {"subject": "late"},
                   headers={"If-Match": made["@odata.etag"]})
        self.assertEqual((r.status, r.json()["error"]["code"]), (412, "ErrorIrresolvableConflict"))
        r = self.g("PATCH", "me/events/" + made["id"], {"subject": "late"}, headers={"If-Match": now["@odata.etag"]})
        self.assertEqual(r.status, 200)
        self.assertEqual(self.sim.ctl("GET", "stats")["changekey_bumps"], 1)

    def test_control_route_bumps_an_existing_event(self):
        made = self.g("POST", "me/events", event("later")).json()
        b = self.sim.ctl("POST", "users/%s/events/%s/bump_change_key" % (self.uid, made["id"]), expect=200)
        self.assertNotEqual(b["changeKey"], made["changeKey"])
        self.assertEqual(b["subject"], "later")
        self.assertEqual(self.g("GET", "me/events/" + made["id"]).json()["changeKey"], b["changeKey"])

    def test_no_bump_by_default_and_not_for_outlook_edits(self):
        made = self.g("POST", "me/events", event("steady")).json()
        self.assertEqual(self.g("GET", "me/events/" + made["id"]).json()["changeKey"], made["changeKey"])
        self.sim.ctl("POST", "config", {"changekey_bump": 1.0}, expect=200)
        o = self.outlook_create(event("outlook"))
        self.assertEqual(self.g("GET", "me/events/" + o["immutable_id"]).json()["changeKey"], o["changeKey"])

    def test_bump_shows_in_delta_as_an_update(self):
        items, link, _ = self.delta_all()
        self.sim.ctl("POST", "config", {"changekey_bump": 1.0}, expect=200)
        made = self.g("POST", "me/events", event("in delta", start="2025-03-04T09:00:00",
                                                 end="2025-03-04T10:00:00")).json()
        items, _, _ = self.delta_all(url=link)
        mine = [i for i in items if i.get("subject") == "in delta"]
        self.assertEqual(len(mine), 1)
        self.assertNotEqual(mine[0]["changeKey"], made["changeKey"])
        self.assertEqual(mine[0]["subject"], "in delta")


class AppOnlyPermissions(SimCase):
    """Behaviour 10: application permissions per tenant, ApplicationAccessPolicy per mailbox."""

    def setUp(self):
        super().setUp()
        self.app = self.issue(tenant="contoso.example")

    def test_without_user_read_all_the_user_object_is_403_but_calendars_answer(self):
        self.sim.ctl("POST", "app_permissions", {"tenant": "contoso.example", "roles": ["Calendars.ReadWrite"]},
                     expect=200)
        r = self.g("GET", "users/" + self.uid, token=self.app)
        self.assertEqual((r.status, r.json()["error"]["code"]), (403, "Authorization_RequestDenied"))
        self.assertEqual(self.g("GET", "users/%s/calendars" % self.uid, token=self.app).status, 200)
        self.assertEqual(self.g("POST", "users/%s/events" % self.uid, event("app"), token=self.app).status, 201)
        # delegated tokens are not application permissions
        self.assertEqual(self.g("GET", "me").status, 200)
        self.sim.ctl("POST", "app_permissions", {"tenant": "contoso.example", "roles": None}, expect=200)
        self.assertEqual(self.g("GET", "users/" + self.uid, token=self.app).status, 200)

    def test_calendars_read_only_role_refuses_writes(self):
        self.sim.ctl("POST", "app_permissions",
                     {"tenant": "contoso.example", "roles": ["Calendars.Read", "User.Read.All"]}, expect=200)
        self.assertEqual(self.g("GET", "users/%s/calendars" % self.uid, token=self.app).status, 200)
        r = self.g("POST", "users/%s/events" % self.uid, event("app"), token=self.app)
        self.assertEqual((r.status, r.json()["error"]["code"]), (403, "ErrorAccessDenied"))

    def test_application_access_policy_shuts_out_one_mailbox(self):
        bob = self.add_user("bob@contoso.example")
        u = self.sim.ctl("POST", "users/%s/app_access" % self.uid, {"allowed": False}, expect=200)
        self.assertFalse(u["app_access"])
        for path in ("users/%s/calendars" % self.uid, "users/%s/events" % self.uid,
                     "users/%s/calendarView/delta?startDateTime=2025-03-01T00:00:00Z&endDateTime=2025-04-01T00:00:00Z"
                     % self.uid):
            r = self.g("GET", path, token=self.app)
            self.assertEqual((r.status, r.json()["error"]["code"]), (403, "ErrorAccessDenied"), path)
        # the directory is not Exchange: the user object still answers
        self.assertEqual(self.g("GET", "users/" + self.uid, token=self.app).status, 200)
        self.assertEqual(self.g("GET", "users/%s/calendars" % bob["id"], token=self.app).status, 200)
        self.assertEqual(self.g("GET", "me/calendars").status, 200)      # the user's own delegated access
        self.sim.ctl("POST", "users/%s/app_access" % self.uid, {"allowed": True}, expect=200)
        self.assertEqual(self.g("GET", "users/%s/calendars" % self.uid, token=self.app).status, 200)


if __name__ == "__main__":
    unittest.main()

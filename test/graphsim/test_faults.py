"""GRAPH.md sections 5 and 6: $batch, throttling, and the fault injector itself."""
import http.client
import json
import socket
import ssl
import threading
import time
import unittest

from simtest import Sim, SimCase, WINDOW, event


class Batch(SimCase):
    def batch(self, reqs):
        return self.g("POST", "$batch", {"requests": reqs})

    def test_batch_answers_each_request_outer_200_even_when_inner_fail(self):
        r = self.batch([{"id": "1", "method": "POST", "url": "/me/events", "headers": {"Content-Type": "application/json"},
                         "body": event("b1")},
                        {"id": "2", "method": "GET", "url": "/me/events/AAkALgAA0000000000000000000000AAA="}])
        self.assertEqual(r.status, 200)
        res = {x["id"]: x for x in r.json()["responses"]}
        self.assertEqual(res["1"]["status"], 201)
        self.assertEqual(res["1"]["body"]["subject"], "b1")
        self.assertEqual(res["2"]["status"], 404)
        self.assertEqual(res["2"]["body"]["error"]["code"], "ErrorItemNotFound")

    def test_depends_on_runs_in_order(self):
        r = self.batch([{"id": "2", "method": "GET", "url": "/me/events", "dependsOn": ["1"]},
                        {"id": "1", "method": "POST", "url": "/me/events", "headers": {"Content-Type": "application/json"},
                         "body": event("first")}])
        res = {x["id"]: x for x in r.json()["responses"]}
        self.assertEqual(res["1"]["status"], 201)
        self.assertEqual([e["subject"] for e in res["2"]["body"]["value"]], ["first"])

    def test_more_than_20_requests_is_400(self):
        reqs = [{"id": str(i), "method": "GET", "url": "/me"} for i in range(21)]
        self.assertEqual(self.batch(reqs).status, 400)
        self.assertEqual(self.batch(reqs[:20]).status, 200)

    def test_duplicate_ids_is_400_for_the_whole_batch(self):
        r = self.batch([{"id": "1", "method": "GET", "url": "/me"}, {"id": "1", "method": "GET", "url": "/me"}])
        self.assertEqual(r.status, 400)

    def test_failed_dependency_gives_424(self):
        r = self.batch([{"id": "a", "method": "DELETE", "url": "/me/events/AAkALgAA0000000000000000000000AAA="},
                        {"id": "b", "method": "GET", "url": "/me", "dependsOn": ["a"]}])
        res = {x["id"]: x["status"] for x in r.json()["responses"]}
        self.assertEqual(res, {"a": 404, "b": 424})

    def test_fault_on_the_batch_route_refuses_the_whole_batch(self):
        self.sim.ctl("POST", "faults", {"route": r"\$batch$", "method": "POST", "kind": "400", "count": 1}, expect=201)
        r = self.batch([{"id": "1", "method": "POST", "url": "/me/events", "headers": {"Content-Type": "application/json"},
                         "body": event("never made")}])
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["error"]["code"], "ErrorInvalidParameter")
        self.assertNotIn("responses", r.json())
        self.assertEqual([e["subject"] for e in self.g("GET", "me/events").json()["value"]], [])

    def test_batch_contains_refuses_only_a_batch_holding_that_request(self):
        good = self.outlook_create(event("good"))
        bad = self.outlook_create(event("bad"))
        self.sim.ctl("POST", "faults", {"route": r"\$batch$", "method": "POST", "kind": "400",
                                        "batch_contains": "/events/" + bad["id"] + "$", "count": 10}, expect=201)
        patch = lambda rid, eid, subj: {"id": rid, "method": "PATCH", "url": "/me/events/" + eid,
                                        "headers": {"Content-Type": "application/json"}, "body": {"subject": subj}}
        r = self.batch([patch("1", good["id"], "good 2"), patch("2", bad["id"], "bad 2")])
        self.assertEqual(r.status, 400, "a batch holding the bad request is refused as a whole")
        self.assertEqual(self.g("GET", "me/events/" + good["id"]).json()["subject"], "good",
                         "nothing in a refused batch is applied")
        r = self.batch([patch("1", good["id"], "good 3")])
        self.assertEqual(r.status, 200, "a batch without it is answered")
        self.assertEqual(r.json()["responses"][0]["status"], 200)
        self.assertEqual(self.g("PATCH", "me/events/" + bad["id"], {"subject": "bad 3"}).status, 200,
                         "the request alone is not refused by this fault")
        faults = self.sim.ctl("GET", "faults", expect=200)["value"]
        self.assertEqual([(f["batch_contains"], f["hits"]) for f in faults], [("/events/" + bad["id"] + "$", 1)])

    def test_inner_429_carries_its_own_retry_after(self):
        self.sim.ctl("POST", "faults", {"route": "/me/events$", "kind": "429", "retry_after": "2.128", "count": 1}, expect=201)
        r = self.batch([{"id": "1", "method": "GET", "url": "/me/events"}, {"id": "2", "method": "GET", "url": "/me"}])
        self.assertEqual(r.status, 200)
        res = {x["id"]: x for x in r.json()["responses"]}
        self.assertEqual(res["1"]["status"], 429)
        self.assertEqual(res["1"]["headers"]["Retry-After"], "2.128")
        self.assertEqual(res["2"]["status"], 200)


class Throttling(SimCase):
    def test_rate_limit_per_app_and_mailbox_gives_429_with_retry_after(self):
        self.sim.ctl("POST", "config", {"rate_limit": {"requests": 3, "seconds": 60}}, expect=200)
        st = [self.g("GET", "me/calendars").status for _ in range(4)]
        self.assertEqual(st, [200, 200, 200, 429])
        r = self.g("GET", "me/calendars")
        self.assertEqual(r.json()["error"]["code"], "ApplicationThrottled")
        self.assertGreaterEqual(float(r.header("Retry-After")), 1)
        bob = self.add_user("bob@contoso.example")
        self.assertEqual(self.g("GET", "me/calendars", token=self.issue("bob@contoso.example")).status, 200)

    def test_more_than_4_concurrent_requests_per_mailbox_get_429(self):
        self.sim.ctl("POST", "faults", {"route": "calendars$", "kind": "slow", "delay_ms": 600, "probability": 1.0}, expect=201)
        results = []

        def call():
            c = self.sim.connect()
            c.request("GET", "/v1.0/me/calendars", headers={"Authorization": "Bearer " + self.token})
            r = c.getresponse()
            r.read()
            results.append((r.status, r.getheader("Retry-After")))
            c.close()

        ts = [threading.Thread(target=call) for _ in range(6)]
        for t in ts:
            t.start()
            time.sleep(0.03)
        for t in ts:
            t.join()
        statuses = sorted(s for s, _ in results)
        self.assertEqual(statuses, [200, 200, 200, 200, 429, 429])
        self.assertTrue(all(ra for s, ra in results if s == 429))


class Faults(SimCase):
    def test_injected_429_carries_fractional_retry_after(self):
        self.sim.ctl("POST", "faults", {"route": "calendarView/delta", "kind": "429", "retry_after": "2.128"}, expect=201)
        r = self.g("GET", "me/calendarView/delta?" + WINDOW)
        self.assertEqual(r.status, 429)
        self.assertEqual(r.header("Retry-After"), "2.128")
        self.assertEqual(r.json()["error"]["code"], "TooManyRequests")
        self.assertEqual(self.g("GET", "me/calendarView/delta?" + WINDOW).status, 200)

    def test_503_and_504(self):
        self.sim.ctl("POST", "faults", {"route": "/me$", "kind": "503", "retry_after": "3"}, expect=201)
        self.sim.ctl("POST", "faults", {"route": "/me$", "kind": "504"}, expect=201)
        r = self.g("GET", "me")
        self.assertEqual((r.status, r.header("Retry-After"), r.json()["error"]["code"]), (503, "3", "serviceNotAvailable"))
        self.assertEqual(self.g("GET", "me").status, 504)
        self.assertEqual(self.g("GET", "me").status, 200)

    def test_410_on_next_delta(self):
        self.outlook_create(event())
        d = self.g("GET", "me/calendarView/delta?" + WINDOW).json()
        self.sim.ctl("POST", "faults", {"route": "calendarView/delta", "kind": "410"}, expect=201)
        r = self.g("GET", d["@odata.deltaLink"])
        self.assertEqual(r.status, 410)
        self.assertEqual(r.json()["error"]["code"], "SyncStateNotFound")

    def test_dropped_connection_really_drops(self):
        self.sim.ctl("POST", "faults", {"route": "/me$", "kind": "drop"}, expect=201)
        c = self.sim.connect()
        c.request("GET", "/v1.0/me", headers={"Authorization": "Bearer " + self.token})
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionResetError, ssl.SSLError,
                                http.client.IncompleteRead, BrokenPipeError)):
            c.getresponse().read()
        c.close()
        self.assertEqual(self.g("GET", "me").status, 200)

    def test_drop_after_apply_loses_the_answer_but_not_the_write(self):
        self.sim.ctl("POST", "faults", {"route": "/me/events$", "method": "POST", "kind": "drop", "after": True}, expect=201)
        c = self.sim.connect()
        c.request("POST", "/v1.0/me/events", body=json.dumps(event("applied")),
                  headers={"Authorization": "Bearer " + self.token, "Content-Type": "application/json"})
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionResetError, ssl.SSLError)):
            c.getresponse().read()
        c.close()
        self.assertEqual([e["subject"] for e in self.sim.ctl("GET", "users/%s/truth" % self.uid)["events"]], ["applied"])

    def test_truncated_body_is_truncated(self):
        for i in range(5):
            self.outlook_create(event("e%d" % i))
        self.sim.ctl("POST", "faults", {"route": "calendarView/delta", "kind": "truncated"}, expect=201)
        c = self.sim.connect()
        c.request("GET", "/v1.0/me/calendarView/delta?" + WINDOW, headers={"Authorization": "Bearer " + self.token})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        with self.assertRaises((http.client.IncompleteRead, ConnectionResetError, ssl.SSLError)):
            r.read()
        c.close()

    def test_malformed_body_is_not_json(self):
        self.sim.ctl("POST", "faults", {"route": "/me$", "kind": "malformed"}, expect=201)
        r = self.g("GET", "me")
        self.assertEqual(r.status, 200)
        with self.assertRaises(ValueError):
            json.loads(r.body)

    def test_slow_response_is_delayed(self):
        self.sim.ctl("POST", "faults", {"route": "/me$", "kind": "slow", "delay_ms": 300}, expect=201)
        t0 = time.time()
        self.assertEqual(self.g("GET", "me").status, 200)
        self.assertGreaterEqual(time.time() - t0, 0.3)

    def test_pause_holds_the_answer_after_applying_the_request(self):
        self.sim.ctl("POST", "faults", {"route": "/me/events$", "method": "POST", "kind": "pause"}, expect=201)
        out = {}

        def post():
            c = self.sim.connect()
            c.request("POST", "/v1.0/me/events", body=json.dumps(event("paused")),
                      headers={"Authorization": "Bearer " + self.token, "Content-Type": "application/json"})
            r = c.getresponse()
            out["status"] = r.status
            r.read()
            c.close()

        t = threading.Thread(target=post)
        t.start()
        for _ in range(100):
            if self.sim.ctl("GET", "stats")["paused"] == 1:
                break
            time.sleep(0.02)
        self.assertEqual(self.sim.ctl("GET", "stats")["paused"], 1)
        self.assertEqual(len(self.sim.ctl("GET", "users/%s/truth" % self.uid)["events"]), 1)
        self.assertNotIn("status", out)
        self.sim.ctl("POST", "release", {}, expect=200)
        t.join(5)
        self.assertEqual(out["status"], 201)

    def test_transient_412_without_precondition(self):
        ev = self.g("POST", "me/events", event()).json()
        self.sim.ctl("POST", "faults", {"route": "/me/events/", "method": "PATCH", "kind": "412"}, expect=201)
        r = self.g("PATCH", "me/events/" + ev["id"], {"subject": "x"})
        self.assertEqual((r.status, r.json()["error"]["code"]), (412, "ErrorIrresolvableConflict"))
        self.assertEqual(self.g("PATCH", "me/events/" + ev["id"], {"subject": "x"}).status, 200)

    def test_fault_count_and_method_filter(self):
        self.sim.ctl("POST", "faults", {"route": "/me$", "method": "GET", "kind": "500", "count": 2}, expect=201)
        self.assertEqual([self.g("GET", "me").status for _ in range(3)], [500, 500, 200])

    def test_faults_on_the_token_endpoint_use_identity_error_bodies(self):
        self.sim.ctl("POST", "faults", {"route": "/oauth2/v2.0/token$", "kind": "503"}, expect=201)
        r = self.sim.req("POST", "/common/oauth2/v2.0/token", form={"grant_type": "refresh_token"})
        self.assertEqual(r.status, 503)
        self.assertEqual(r.json()["error"], "temporarily_unavailable")

    def test_clear_faults(self):
        self.sim.ctl("POST", "faults", {"route": "/me$", "kind": "500", "probability": 1.0}, expect=201)
        self.assertEqual(self.g("GET", "me").status, 500)
        self.sim.ctl("DELETE", "faults", expect=200)
        self.assertEqual(self.g("GET", "me").status, 200)


class Determinism(unittest.TestCase):
    def run_once(self, first=True):
        sim = Sim.start("--seed", "42")
        try:
            sim.ctl("POST", "tenants", {"tenant": "contoso.example"}, expect=201)
            u = sim.ctl("POST", "users", {"tenant": "contoso.example", "upn": "a@contoso.example"}, expect=201)
            tok = sim.ctl("POST", "tokens/issue", {"upn": "a@contoso.example"}, expect=200)["access_token"]
            sim.ctl("POST", "faults", {"route": "/me$", "kind": "503", "probability": 0.5}, expect=201)
            statuses = [sim.req("GET", "/v1.0/me", token=tok).status for _ in range(16 if first else 3)]
            e = sim.ctl("POST", "users/%s/events" % u["id"], event(), expect=201)
            return u["id"], u["calendars"][0]["id"], e["id"], statuses
        finally:
            sim.stop()

    def test_same_seed_gives_same_ids_and_fault_pattern(self):
        a, b = self.run_once(), self.run_once()
        self.assertEqual(a, b)
        c = self.run_once(first=False)
        self.assertEqual(a[:3], c[:3], "entity ids do not depend on how many other requests came first")
        self.assertIn(503, a[3])
        self.assertIn(200, a[3])


if __name__ == "__main__":
    unittest.main()

"""GRAPH.md section 8: subscriptions, the validation handshake and change notifications."""
import datetime as dt
import http.server
import json
import threading
import time
import unittest
import urllib.parse

from simtest import SimCase, event


class Receiver(http.server.ThreadingHTTPServer):
    """A webhook endpoint: answers validation, records notifications."""
    daemon_threads = True

    def __init__(self, answer_validation=True):
        self.answer = answer_validation
        self.got = []
        self.validations = []
        http.server.ThreadingHTTPServer.__init__(self, ("127.0.0.1", 0), ReceiverHandler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/hook" % self.server_address[1]


class ReceiverHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(self.path).query))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if "validationToken" in q:
            self.server.validations.append(q["validationToken"])
            out = q["validationToken"].encode() if self.server.answer else b"nope"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            return
        self.server.got.append(json.loads(body))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


def expiry(minutes=60):
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


class HookCase(SimCase):
    """A simulator and a webhook receiver."""

    def setUp(self):
        SimCase.setUp(self)
        self.rx = Receiver()

    def tearDown(self):
        self.rx.shutdown()
        self.rx.server_close()

    def subscribe(self, **kw):
        body = {"changeType": "created,updated,deleted", "notificationUrl": self.rx.url,
                "lifecycleNotificationUrl": self.rx.url, "resource": "users/%s/events" % self.uid,
                "expirationDateTime": expiry(), "clientState": "secret-state"}
        body.update(kw)
        return self.g("POST", "subscriptions", body)

    def wait_for(self, pred, timeout=5):
        end = time.time() + timeout
        while time.time() < end:
            if pred():
                return True
            time.sleep(0.02)
        return False


class Subscriptions(HookCase):
    def test_create_validates_the_notification_url_then_201(self):
        r = self.subscribe()
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(len(self.rx.validations), 2)
        self.assertTrue(self.rx.validations[0].startswith("Validation: "))
        s = r.json()
        self.assertEqual(s["clientState"], "secret-state")
        self.assertEqual(s["resource"], "users/%s/events" % self.uid)

    def test_failed_validation_gives_400(self):
        self.rx.answer = False
        r = self.subscribe()
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["error"]["code"], "ValidationError")

    def test_notifications_on_outlook_changes_carry_client_state(self):
        self.assertEqual(self.subscribe().status, 201)
        e = self.outlook_create(event())
        self.outlook_patch(e["id"], {"subject": "x"})
        self.outlook_delete(e["id"])
        self.assertTrue(self.wait_for(lambda: len(self.rx.got) >= 3))
        items = [n["value"][0] for n in self.rx.got]
        self.assertEqual(sorted(i["changeType"] for i in items), ["created", "deleted", "updated"])
        for i in items:
            self.assertEqual(i["clientState"], "secret-state")
            self.assertEqual(i["tenantId"], self.tenant_id)
            self.assertEqual(i["resourceData"]["id"], e["default_id"])
            for k in ("subscriptionId", "subscriptionExpirationDateTime", "resource"):
                self.assertIn(k, i)

    def test_change_type_filter(self):
        self.assertEqual(self.subscribe(changeType="deleted").status, 201)
        e = self.outlook_create(event())
        self.outlook_delete(e["id"])
        self.assertTrue(self.wait_for(lambda: len(self.rx.got) >= 1))
        time.sleep(0.1)
        self.assertEqual([n["value"][0]["changeType"] for n in self.rx.got], ["deleted"])

    def test_renew_and_delete(self):
        s = self.subscribe().json()
        r = self.g("PATCH", "subscriptions/" + s["id"], {"expirationDateTime": expiry(120)})
        self.assertEqual(r.status, 200)
        self.assertNotEqual(r.json()["expirationDateTime"], s["expirationDateTime"])
        self.assertEqual(self.g("DELETE", "subscriptions/" + s["id"]).status, 204)
        self.assertEqual(self.g("GET", "subscriptions/" + s["id"]).status, 404)

    def test_expiry_beyond_the_maximum_is_rejected(self):
        self.assertEqual(self.subscribe(expirationDateTime=expiry(4231 + 5)).status, 400)

    def test_client_state_longer_than_128_is_rejected(self):
        self.assertEqual(self.subscribe(clientState="x" * 129).status, 400)

    def test_lifecycle_notification(self):
        s = self.subscribe().json()
        self.sim.ctl("POST", "subscriptions/%s/lifecycle" % s["id"], {"event": "reauthorizationRequired"}, expect=202)
        self.assertTrue(self.wait_for(lambda: self.rx.got))
        item = self.rx.got[0]["value"][0]
        self.assertEqual(item["lifecycleEvent"], "reauthorizationRequired")
        self.assertEqual(item["clientState"], "secret-state")

    def test_validation_can_be_disabled(self):
        self.sim.ctl("POST", "config", {"validate_subscriptions": False}, expect=200)
        r = self.subscribe(notificationUrl="http://127.0.0.1:9/nothing-listens")
        self.assertEqual(r.status, 201)


class PerCalendar(HookCase):
    """GRAPH.md section 11 (contrib 51, docs 6595): users/{id}/events reports the
    default calendar only; other calendars need users/{id}/calendars/{cid}/events."""

    def setUp(self):
        HookCase.setUp(self)
        self.other = self.sim.ctl("POST", "users/%s/calendars" % self.uid, {"name": "Other", "can_edit": True},
                                  expect=201)["id"]

    def created_in(self, cal):
        e = self.outlook_create(dict(event(), calendar_id=cal))
        return e

    def test_events_subscription_reports_the_default_calendar_only(self):
        self.assertEqual(self.subscribe().status, 201)
        self.created_in(self.other)
        e = self.created_in(self.cal_id)
        self.assertTrue(self.wait_for(lambda: len(self.rx.got) >= 1))
        time.sleep(0.2)
        self.assertEqual(len(self.rx.got), 1)
        self.assertEqual(self.rx.got[0]["value"][0]["resourceData"]["id"], e["default_id"])

    def test_calendar_subscription_reports_that_calendar_only(self):
        s = self.subscribe(resource="users/%s/calendars/%s/events" % (self.uid, self.other)).json()
        self.created_in(self.cal_id)
        e = self.created_in(self.other)
        self.assertTrue(self.wait_for(lambda: len(self.rx.got) >= 1))
        time.sleep(0.2)
        self.assertEqual(len(self.rx.got), 1)
        item = self.rx.got[0]["value"][0]
        self.assertEqual(item["subscriptionId"], s["id"])
        self.assertEqual(item["resourceData"]["id"], e["default_id"])

    def test_a_move_is_a_deletion_in_one_calendar_and_a_creation_in_the_other(self):
        a = self.subscribe(resource="users/%s/calendars/%s/events" % (self.uid, self.cal_id)).json()
        b = self.subscribe(resource="users/%s/calendars/%s/events" % (self.uid, self.other)).json()
        e = self.created_in(self.cal_id)
        self.assertTrue(self.wait_for(lambda: len(self.rx.got) >= 1))
        self.outlook_patch(e["id"], {"calendar_id": self.other})
        self.assertTrue(self.wait_for(lambda: len(self.rx.got) >= 3))
        time.sleep(0.2)
        got = sorted((n["value"][0]["subscriptionId"], n["value"][0]["changeType"]) for n in self.rx.got[1:])
        self.assertEqual(got, sorted([(a["id"], "deleted"), (b["id"], "created")]))

    def test_unknown_calendar_is_404(self):
        r = self.subscribe(resource="users/%s/calendars/AAMkNoSuchCalendar=/events" % self.uid)
        self.assertEqual(r.status, 404)


if __name__ == "__main__":
    unittest.main()

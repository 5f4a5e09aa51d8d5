"""The simulator as a process: command line, TLS, keep-alive, state file, request log."""
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

from simtest import CLIENT_ID, HERE, SECRET, Sim, SimCase, certs, event


class Process(unittest.TestCase):
    def test_prints_one_listening_line_and_stops_on_sigterm(self):
        sim = Sim.start()
        self.assertRegex(sim.url, r"^https://127\.0\.0\.1:\d+$")
        t0 = time.time()
        sim.proc.send_signal(signal.SIGTERM)
        self.assertEqual(sim.proc.wait(10), 0)
        self.assertLess(time.time() - t0, 5)
        self.assertEqual(sim.proc.stdout.read(), "")
        sim.stop()

    def test_plain_http_without_certificate(self):
        sim = Sim.start(tls=False)
        try:
            self.assertTrue(sim.url.startswith("http://127.0.0.1:"))
            self.assertEqual(sim.req("GET", "/_sim/stats").status, 200)
        finally:
            sim.stop()

    def test_binds_loopback_only(self):
        sim = Sim.start(tls=False)
        try:
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.2", sim.port), timeout=2).close()
        finally:
            sim.stop()

    def test_latency_option_delays_graph_answers(self):
        sim = Sim.start("--latency-ms", "150")
        try:
            t0 = time.time()
            sim.req("GET", "/v1.0/me")
            self.assertGreaterEqual(time.time() - t0, 0.15)
        finally:
            sim.stop()

    def test_state_file_survives_restart_and_old_delta_tokens_resync(self):
        d = tempfile.mkdtemp()
        path = os.path.join(d, "state.json")
        sim = Sim.start("--state", path)
        try:
            sim.ctl("POST", "tenants", {"tenant": "contoso.example"}, expect=201)
            u = sim.ctl("POST", "users", {"tenant": "contoso.example", "upn": "a@contoso.example"}, expect=201)
            sim.ctl("POST", "users/%s/events" % u["id"], event("kept"), expect=201)
            tok = sim.ctl("POST", "tokens/issue", {"upn": "a@contoso.example"}, expect=200)["access_token"]
            delta = sim.req("GET", "/v1.0/me/calendarView/delta?startDateTime=2025-01-01&endDateTime=2026-01-01",
                            token=tok).json()["@odata.deltaLink"]
        finally:
            sim.stop()
        self.assertTrue(os.path.exists(path))
        sim = Sim.start("--state", path)
        try:
            truth = sim.ctl("GET", "users/a@contoso.example/truth", expect=200)
            self.assertEqual([e["subject"] for e in truth["events"]], ["kept"])
            self.assertEqual(sim.req("GET", "/v1.0/me", token=tok).status, 200)
            self.assertEqual(sim.req("GET", delta, token=tok).status, 410)
        finally:
            sim.stop()


class Tls(unittest.TestCase):
    def handshake(self, cert, cafile):
        c = certs()
        sim = Sim.start("--tls-cert", os.path.join(c, cert + ".crt"), "--tls-key", os.path.join(c, cert + ".key"), tls=False)
        try:
            ctx = ssl.create_default_context(cafile=os.path.join(c, cafile))
            port = int(sim.url.rsplit(":", 1)[1])
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
            try:
                conn.request("GET", "/_sim/stats")
                return conn.getresponse().status
            finally:
                conn.close()
        finally:
            sim.stop()

    def test_server_certificate_verifies_against_ca(self):
        self.assertEqual(self.handshake("server", "ca.crt"), 200)

    def test_other_ca_fails_verification(self):
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.handshake("server", "other-ca.crt")

    def test_wrong_host_certificate_fails_verification(self):
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.handshake("wronghost", "ca.crt")

    def test_self_signed_certificate_fails_verification(self):
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.handshake("selfsigned", "ca.crt")


class KeepAliveAndLog(SimCase):
    def test_requests_share_one_keep_alive_connection(self):
        c = self.sim.connect()
        socks = set()
        for _ in range(5):
            c.request("GET", "/v1.0/me", headers={"Authorization": "Bearer " + self.token})
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            self.assertIsNotNone(r.getheader("Content-Length"))
            socks.add(id(c.sock))
        self.assertEqual(len(socks), 1)
        c.close()

    def test_request_log_records_requests_without_secrets(self):
        self.sim.ctl("DELETE", "log", expect=200)
        self.g("GET", "me/calendarView/delta?startDateTime=2025-01-01&endDateTime=2025-02-01",
               headers={"Prefer": 'outlook.timezone="UTC"', "If-Match": 'W/"x"'})
        self.sim.req("POST", "/common/oauth2/v2.0/token", form={"client_id": CLIENT_ID, "client_secret": SECRET,
                                                                "grant_type": "refresh_token", "refresh_token": "rt-value"})
        log = self.sim.ctl("GET", "log", expect=200)["value"]
        g = [e for e in log if e["path"] == "/v1.0/me/calendarView/delta"][0]
        self.assertEqual(g["method"], "GET")
        self.assertEqual(g["query"], "startDateTime=2025-01-01&endDateTime=2025-02-01")
        self.assertEqual(g["status"], 200)
        self.assertEqual(g["headers"]["Prefer"], 'outlook.timezone="UTC"')
        self.assertNotIn(self.token, str(log))
        self.assertNotIn(SECRET, str(log))
        self.assertNotIn("rt-value", str(log))
        t = [e for e in log if e["path"].endswith("/token")][0]
        self.assertIn("grant_type=refresh_token", t["body"])
        self.assertEqual(t["status"], 400)

    def test_stats_count_requests(self):
        self.g("GET", "me")
        s = self.sim.ctl("GET", "stats", expect=200)
        self.assertGreaterEqual(s["graph"], 1)
        self.assertEqual(s["mailboxes"], 1)


if __name__ == "__main__":
    unittest.main()

"""Test harness for graphsim: starts the simulator over TLS and speaks raw HTTP.

One simulator process serves the whole test run (each test resets it); tests
that need their own command-line options start another with Sim.start().
Certificates come from ./mkcert into a temporary directory, and every
connection verifies them against ca.crt, as the real client does.
"""
import atexit
import base64
import hashlib
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
_certs = None
_shared = None


def certs():
    global _certs
    if _certs is None:
        d = tempfile.mkdtemp(prefix="graphsim-certs-")
        subprocess.run([os.path.join(HERE, "mkcert"), d], check=True)
        _certs = d
        atexit.register(shutil.rmtree, d, True)
    return _certs


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)


class Sim:
    def __init__(self, proc, url):
        self.proc = proc
        self.url = url
        p = urllib.parse.urlparse(url)
        self.host, self.port = p.hostname, p.port
        self.tls = p.scheme == "https"
        self.ctx = ssl.create_default_context(cafile=os.path.join(certs(), "ca.crt")) if self.tls else None
        self.conn = None

    @classmethod
    def start(cls, *extra, tls=True):
        args = [sys.executable, os.path.join(HERE, "graphsim.py"), "--port", "0"]
        if tls:
            c = certs()
            args += ["--tls-cert", os.path.join(c, "server.crt"), "--tls-key", os.path.join(c, "server.key")]
        args += list(extra)
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        if not line.startswith("graphsim listening on "):
            proc.kill()
            raise RuntimeError("simulator did not start: %r %s" % (line, proc.stderr.read()))
        return cls(proc, line.split()[-1])

    def stop(self):
        if self.conn:
            self.conn.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()

    def connect(self, timeout=10):
        if self.tls:
            return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def req(self, method, path, body=None, headers=None, token=None, form=None, conn=None):
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        if form is not None:
            body = urllib.parse.urlencode(form)
            h.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        if path.startswith("http"):
            path = path[len(self.url):]
        own = conn is None
        for attempt in (0, 1):
            c = conn or self.conn
            if c is None:
                c = self.conn = self.connect()
            try:
                c.request(method, path, body=body, headers=h)
                r = c.getresponse()
                data = r.read()
                return Response(r.status, r.getheaders(), data)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not own or attempt:
                    raise
                c.close()
                self.conn = None

    def ctl(self, method, path, body=None, expect=None, **q):
        if q:
            path += "?" + urllib.parse.urlencode(q)
        r = self.req(method, "/_sim/" + path, body)
        if expect is not None and r.status != expect:
            raise AssertionError("%s %s -> %d %s" % (method, path, r.status, r.body[:500]))
        return r.json() if r.body else None


def shared():
    global _shared
    if _shared is None or _shared.proc.poll() is not None:
        _shared = Sim.start()
        atexit.register(_shared.stop)
    return _shared


CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SECRET = "s3cr3t~value"
REDIRECT = "https://flowagent.example/m365/callback"
WINDOW = "startDateTime=2025-01-01T00:00:00Z&endDateTime=2026-01-01T00:00:00Z"
UTC = {"Prefer": 'outlook.timezone="UTC"'}


def pkce_pair(verifier="v" * 50):
    ch = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, ch


class SimCase(unittest.TestCase):
    """Each test starts from an empty simulator with one tenant, app and user."""

    def setUp(self):
        self.sim = shared()
        self.sim.ctl("POST", "reset", expect=200)
        t = self.sim.ctl("POST", "tenants", {"tenant": "contoso.example"}, expect=201)
        self.tenant_id = t["id"]
        self.sim.ctl("POST", "apps", {"client_id": CLIENT_ID, "client_secret": SECRET, "redirect_uris": [REDIRECT]},
                     expect=201)
        self.user = self.add_user("ada@contoso.example", "Ada Lovelace")
        self.uid = self.user["id"]
        self.cal_id = self.user["calendars"][0]["id"]
        self.token = self.issue("ada@contoso.example")

    def add_user(self, upn, name=None, tenant="contoso.example"):
        return self.sim.ctl("POST", "users", {"tenant": tenant, "upn": upn, "display_name": name or upn}, expect=201)

    def issue(self, upn=None, tenant=None, scope=None):
        body = {"client_id": CLIENT_ID}
        if upn:
            body["upn"] = upn
        else:
            body["tenant"] = tenant
        if scope:
            body["scope"] = scope
        return self.sim.ctl("POST", "tokens/issue", body, expect=200)["access_token"]

    def g(self, method, path, body=None, headers=None, token=None):
        if not path.startswith("http"):
            path = "/v1.0/" + path.lstrip("/")
        return self.sim.req(method, path, body, headers, token=token or self.token)

    def outlook_create(self, ev, uid=None, expect=201):
        return self.sim.ctl("POST", "users/%s/events" % (uid or self.uid), ev, expect=expect)

    def outlook_patch(self, eid, patch, uid=None, expect=200):
        return self.sim.ctl("PATCH", "users/%s/events/%s" % (uid or self.uid, eid), patch, expect=expect)

    def outlook_delete(self, eid, uid=None, expect=204):
        return self.sim.ctl("DELETE", "users/%s/events/%s" % (uid or self.uid, eid), expect=expect)

    def delta_all(self, url=None, headers=None, path="me/calendarView/delta?" + WINDOW):
        """Follow nextLinks to the deltaLink. -> (items, deltaLink, pages)."""
        items, pages = [], 0
        url = url or "/v1.0/" + path
        h = {"Prefer": 'IdType="ImmutableId", outlook.timezone="UTC", odata.maxpagesize=50'}
        h.update(headers or {})
        while True:
            r = self.sim.req("GET", url, headers=h, token=self.token)
            self.assertEqual(r.status, 200, r.body[:300])
            d = r.json()
            pages += 1
            items.extend(d["value"])
            if "@odata.nextLink" in d:
                url = d["@odata.nextLink"]
                continue
            return items, d["@odata.deltaLink"], pages


def event(subject="Meeting", start="2025-03-03T09:00:00", end="2025-03-03T10:00:00", tz="UTC", **kw):
    ev = {"subject": subject, "start": {"dateTime": start, "timeZone": tz}, "end": {"dateTime": end, "timeZone": tz}}
    ev.update(kw)
    return ev


def apply_delta(state, items):
    """What a correct client does with a delta page: upsert or remove by id."""
    for it in items:
        if "@removed" in it:
            state.pop(it["id"], None)
        else:
            state[it["id"]] = it
    return state

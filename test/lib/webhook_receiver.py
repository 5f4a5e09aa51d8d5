#!/usr/bin/env python3
"""webhook_receiver.py - FlowAgent's webhook handler, as small as it can be.

An HTTPS server for Graph change and lifecycle notifications that does what
FlowAgent's web server does: every POST is handed to
m365sync.handle_notification over one persistent database session (a psql
coprocess, as the role the app uses), and the function's answer decides the
HTTP answer:

  POST ...?validationToken=T   -> handle_notification(NULL, T); 200 text/plain T
  POST with a JSON body        -> handle_notification(body);      202
  SQLSTATE 42501 -> 403, 22P02/22023 -> 400, anything else -> 500

One JSON line per request goes to --log (kind, SQLSTATE, milliseconds,
subscription ids and lifecycle events; never a clientState or a body).
Prints "receiver listening on https://127.0.0.1:PORT" once ready.

Test tool only (Python stdlib), used by test/t/060_notifications.pl and
test/bench/notify.
"""
import argparse
import http.server
import json
import os
import secrets
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

SENTINEL = "@@m365sync-receiver-done@@"


class Session:
    """One psql process fed statement by statement; errors come back with their SQLSTATE."""

    def __init__(self, psql, dbname, role):
        cmd = [psql, "-X", "-q", "-A", "-t", "-v", "VERBOSITY=verbose", "-d", dbname]
        if role:
            cmd += ["-U", role]
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lock = threading.Lock()

    @staticmethod
    def quote(s):
        tag = "$q%s$" % secrets.token_hex(6)
        while tag in s:
            tag = "$q%s$" % secrets.token_hex(6)
        return tag + s + tag

    def call(self, body, token):
        sql = "SELECT m365sync.handle_notification(%s, %s);\n\\echo %s\n" % (
            "NULL" if body is None else self.quote(body),
            "NULL" if token is None else self.quote(token), SENTINEL)
        with self.lock:
            self.p.stdin.write(sql)
            self.p.stdin.flush()
            out = []
            while True:
                line = self.p.stdout.readline()
                if line == "":
                    raise RuntimeError("psql ended")
                if line.rstrip("\n") == SENTINEL:
                    break
                out.append(line.rstrip("\n"))
        for line in out:
            if line.startswith("ERROR:") or line.startswith("psql:") and "ERROR:" in line:
                code = line.split("ERROR:", 1)[1].strip()[:5]
                return None, code
        return "\n".join(out), ""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, status, body=b"", ctype="text/plain; charset=utf-8"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        t0 = time.monotonic()
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(self.path).query))
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        token = q.get("validationToken")
        entry = {"path": urllib.parse.urlparse(self.path).path,
                 "kind": "validation" if token is not None else "notification"}
        if token is None:
            try:
                items = json.loads(raw).get("value") or []
                entry["subscriptions"] = [i.get("subscriptionId") for i in items if isinstance(i, dict)]
                entry["lifecycle"] = [i.get("lifecycleEvent") for i in items
                                      if isinstance(i, dict) and i.get("lifecycleEvent")]
            except (ValueError, AttributeError):
                pass
        result, code = self.server.session.call(None if token is not None else raw.decode("utf-8", "replace"),
                                                token)
        entry["sqlstate"] = code
        entry["ms"] = round((time.monotonic() - t0) * 1000, 2)
        entry["at"] = time.time()
        self.server.record(entry)
        if code == "":
            if token is not None:
                self.answer(200, result.encode())
            else:
                self.answer(202)
        elif code == "42501":
            self.answer(403)
        elif code in ("22P02", "22023"):
            self.answer(400)
        else:
            self.answer(500)


class Receiver(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port, session, log):
        http.server.ThreadingHTTPServer.__init__(self, ("127.0.0.1", port), Handler)
        self.session = session
        self.log = open(log, "a") if log else None
        self.log_lock = threading.Lock()

    def record(self, entry):
        if self.log:
            with self.log_lock:
                self.log.write(json.dumps(entry) + "\n")
                self.log.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--dbname", required=True, help="connection string or database name for psql")
    ap.add_argument("--role", default="", help="database role (FlowAgent's app role)")
    ap.add_argument("--psql", default="psql")
    ap.add_argument("--log")
    args = ap.parse_args()
    session = Session(args.psql, args.dbname, args.role)
    srv = Receiver(args.port, session, args.log)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    sys.stdout.write("receiver listening on https://127.0.0.1:%d\n" % srv.server_address[1])
    sys.stdout.flush()
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

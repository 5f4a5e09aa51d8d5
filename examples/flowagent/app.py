#!/usr/bin/env python3
"""app: the FlowAgent example's entry point: routes, and two listeners.

  http://localhost:PORT        the pages a browser uses (a local example: plain
                               HTTP on 127.0.0.1; the OAuth redirect URI is
                               http://localhost:PORT/m365/callback, which
                               m365sync.configure accepts for localhost only)
  https://127.0.0.1:HOOK_PORT  the webhook endpoints only (notification_url
                               and lifecycle_url must be https), with a
                               certificate the Graph service trusts

Python 3 standard library plus psycopg 3 (Debian's python3-psycopg). One
file per page or concern: page_*.py, webhooks.py, db.py, web.py.
    python3 app.py --db 'host=/path/to/socket port=5432 dbname=flowagent' \
        --port 8080 --hook-port 8443 --cert server.crt --key server.key
examples/flowagent/run starts it with everything around it.
"""
import argparse
import http.server
import json
import os
import ssl
import threading
import sys
import traceback

import db as DB
import page_admin
import page_callback
import page_conflicts
import page_event
import page_settings
import page_signin
import page_week
import webhooks
from web import Request, Response, Sessions, page, redirect

HERE = os.path.dirname(os.path.abspath(__file__))


def home(req):
    return redirect("/calendar" if req.user else "/signin")


def stylesheet(req):
    with open(os.path.join(HERE, "style.css"), "rb") as f:
        return Response(200, f.read(), ctype="text/css; charset=utf-8")


PAGES = {
    ("GET", "/"): home,
    ("GET", "/style.css"): stylesheet,
    ("GET", "/signin"): page_signin.show,
    ("POST", "/signin"): page_signin.submit,
    ("POST", "/signout"): page_signin.signout,
    ("GET", "/admin"): page_admin.show,
    ("POST", "/admin/consent"): page_admin.start_consent,
    ("GET", "/settings"): page_settings.show,
    ("POST", "/settings/connect"): page_settings.connect,
    ("POST", "/settings/disconnect"): page_settings.disconnect,
    ("GET", "/m365/callback"): page_callback.callback,
    ("GET", "/calendar"): page_week.show,
    ("GET", "/event"): page_event.show,
    ("GET", "/event/new"): page_event.show_new,
    ("POST", "/event/save"): page_event.save,
    ("GET", "/conflicts"): page_conflicts.show,
    ("POST", "/conflicts/resolve"): page_conflicts.resolve,
}
WEBHOOKS = {
    ("POST", "/m365/notify"): webhooks.notify,
    ("POST", "/m365/lifecycle"): webhooks.notify,
}


class App:
    def __init__(self, db, users):
        self.db = db
        self.users = users
        self.sessions = Sessions()
        self.org_consent = {}      # tenant -> last admin consent outcome (FlowAgent's own record)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FlowAgent-example"
    sys_version = ""

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self.serve("GET")

    def do_POST(self):
        self.serve("POST")

    def serve(self, method):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        app, routes = self.server.app, self.server.routes
        req = None
        try:
            req = Request(method, self.path, self.headers, body, app)
            handler = routes.get((method, req.path))
            resp = handler(req) if handler else page(req, "Not found", "<h1>Not found</h1>", status=404)
        except Exception:
            # Never a stack trace on a page: it goes to the server's log only.
            traceback.print_exc(file=sys.stderr)
            resp = Response(500, "<!DOCTYPE html><title>FlowAgent</title><h1>Something went wrong</h1>"
                                 "<p>FlowAgent could not finish this request. <a href=\"/\">Start again</a></p>")
        self.send_response(resp.status)
        for k, v in resp.headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(resp.body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "same-origin")
        self.end_headers()
        self.wfile.write(resp.body)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr, app, routes):
        http.server.ThreadingHTTPServer.__init__(self, addr, Handler)
        self.app, self.routes = app, routes


def main():
    ap = argparse.ArgumentParser(description="FlowAgent: a reference integration of m365sync")
    ap.add_argument("--db", required=True, help="libpq connection string without user (host, port, dbname)")
    ap.add_argument("--app-role", default="flowagent_web", help="login role that is a member of m365sync_app")
    ap.add_argument("--admin-role", default="flowagent_admin", help="login role that is a member of m365sync_admin")
    ap.add_argument("--users", default=os.path.join(HERE, "users.json"))
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--hook-port", type=int, default=0)
    ap.add_argument("--cert", help="certificate for the webhook listener")
    ap.add_argument("--key")
    args = ap.parse_args()
    with open(args.users) as f:
        users = {u["id"]: u for u in json.load(f)}
    app = App(DB.Db(args.db, args.app_role, args.admin_role), users)

    pages = Server(("127.0.0.1", args.port), app, PAGES)
    print("flowagent listening on http://localhost:%d" % pages.server_address[1], flush=True)
    if args.cert:
        hooks = Server(("127.0.0.1", args.hook_port), app, WEBHOOKS)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(args.cert, args.key)
        hooks.socket = ctx.wrap_socket(hooks.socket, server_side=True)
        threading.Thread(target=hooks.serve_forever, daemon=True).start()
        print("flowagent webhooks on https://127.0.0.1:%d/m365/notify" % hooks.server_address[1], flush=True)
    try:
        pages.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

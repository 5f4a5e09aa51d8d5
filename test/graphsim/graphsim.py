#!/usr/bin/env python3
"""graphsim: a stand-in for Microsoft Graph (calendars) and the identity platform.

Every m365sync test runs against this process, so it honours the facts of
shared/GRAPH.md: delta rounds with tokens that bake in the window, recurring
series, time zones, writes with change keys and transaction ids, $batch,
throttling, OAuth 2.0 with PKCE and rotating refresh tokens, and change
notifications.  A control API under /_sim/ (JSON, no auth) sets up tenants,
users and events, edits events as Outlook would, injects faults and exposes
the request log and the ground truth.

Python 3 standard library only.  Binds 127.0.0.1 only.  One lock guards all
state; it is never held while sleeping, pausing or making outbound HTTP calls.
It must not be exposed to anything but local tests.

This file is the HTTP layer (request handling, faults, TLS, main); the
routes live in simidentity, simgraph and simcontrol, the state in simstate,
notifications in simnotify, the mailbox store in simstore.
"""
import argparse
import base64
import http.server
import json
import os
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import simauth as A  # noqa: E402
import simnotify as N  # noqa: E402
import simtime as T  # noqa: E402
from simcommon import (JSON_CT, STATUS_FAULTS, Ctx, Resp, graph_error, jbytes, ok_json, qparse,  # noqa: E402
                       redact_body, redact_headers)
from simcontrol import control  # noqa: E402
from simgraph import MAILBOX_CONCURRENCY, authenticate, batch, gone, graph_call, throttle_exit  # noqa: E402
from simidentity import aad_response, identity  # noqa: E402
from simstate import State, load_state, save_state  # noqa: E402
from simstore import GraphError  # noqa: E402


STATE = None
REASONS = http.server.BaseHTTPRequestHandler.responses



def fault_error(f):
    """A status fault's Graph error: the kind's usual code, or the fault's own code and message."""
    code, msg = STATUS_FAULTS[int(f["kind"])]
    if f.get("code"):
        code, msg = f["code"], f.get("message") or FAULT_MESSAGES.get(f["code"], msg)
    return code, msg


# messages of codes a status fault may carry instead of its kind's usual one
FAULT_MESSAGES = {
    "MailboxNotEnabledForRESTAPI": "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
    "ApplicationThrottled": "Application is over its MailboxConcurrency limit.",
    "ErrorDuplicateTransactionId": "The TransactionId specified in the request has already been used to create "
                                   "a different event.",
}


def batch_contains(body, rx):
    """True when body is a $batch with an inner request whose URL matches rx
    (a fault that refuses a whole $batch because of one request in it, as
    Graph refuses a batch whose payload it cannot accept as a whole)."""
    try:
        reqs = json.loads(body or b"{}").get("requests")
    except (ValueError, AttributeError):
        return False
    return isinstance(reqs, list) and any(isinstance(r, dict) and rx.search(str(r.get("url", ""))) for r in reqs)

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "graphsim"
    sys_version = ""
    timeout = 300

    def log_message(self, *a):
        pass

    def do_GET(self):
        self.serve("GET")

    def do_POST(self):
        self.serve("POST")

    def do_PATCH(self):
        self.serve("PATCH")

    def do_DELETE(self):
        self.serve("DELETE")

    def do_PUT(self):
        self.serve("PUT")

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def write(self, resp, close=False, truncate=False):
        body = resp.body if resp.body is not None else b""
        lines = ["HTTP/1.1 %d %s" % (resp.status, REASONS.get(resp.status, ("Unknown",))[0]),
                 "Date: " + self.date_time_string()]
        has_len = False
        for k, v in resp.headers:
            if k.lower() == "content-length":
                has_len = True
                if resp.status != 302:
                    continue
            lines.append("%s: %s" % (k, v))
        if not (has_len and resp.status == 302):
            lines.append("Content-Length: %d" % len(body))
        if close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if truncate:
            self.wfile.write(head + body[:max(1, len(body) // 2)])
            self.abort()
            return
        self.wfile.write(head + body)
        if close:
            self.close_connection = True

    def abort(self):
        """Drop the connection hard (RST, no TLS close_notify)."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            raw = socket.socket(fileno=os.dup(self.connection.fileno()))
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.close()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True

    def serve(self, method):
        st = STATE
        t0 = time.time()
        path, _, qs = self.path.partition("?")
        try:
            body = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        if path.startswith("/_sim/"):
            with st.lock:
                st.stats["control"] += 1
                try:
                    status, obj = control(st, method, path, qparse(qs), body)
                except GraphError as ex:
                    status, obj = ex.status, {"error": {"code": ex.code, "message": ex.message}}
                except (KeyError, TypeError, ValueError, AttributeError) as ex:
                    status, obj = 400, {"error": "bad control request: %r" % (ex,)}
                except Exception as ex:
                    traceback.print_exc(file=sys.stderr)
                    status, obj = 500, {"error": "graphsim failed: %r" % (ex,)}
            self.write(Resp(status, b"" if obj is None else jbytes(obj), [("Content-Type", JSON_CT)]))
            return
        ctx = Ctx()
        ctx.base = "%s://%s" % (st.scheme, self.headers.get("Host") or "127.0.0.1:%d" % st.port)
        hdrs = self.headers
        ctx.client_req_id = hdrs.get("client-request-id") or None
        fault = None
        with st.lock:
            ctx.req_id = st.guid()
            if ctx.client_req_id is None:
                ctx.client_req_id = ctx.req_id
            fault = self.match_fault(st, method, path, body)
        is_identity = "/oauth2/" in path or path.endswith("/adminconsent")
        resp = None
        if fault is not None and not fault["after"]:
            resp = self.pre_fault(st, ctx, fault, path, qs, is_identity)
            if resp == "dropped":
                self.log_entry(st, method, path, qs, body, None, t0, fault)
                return
        if resp is None:
            resp = self.process(st, ctx, method, path, qs, body, is_identity)
        if resp.fault is not None and resp.fault[0] == "validate":
            resp = self.finish_subscription(st, ctx, resp.fault[1])
        try:
            if st.latency:
                time.sleep(st.latency)
            if resp.pause:
                time.sleep(resp.pause)      # a $batch's waves of inner requests, its slots held
            if fault is not None and fault["after"]:
                k = fault["kind"]
                if k == "pause":
                    ev = threading.Event()
                    with st.lock:
                        st.paused.append(ev)
                    ev.wait()
                elif k == "drop":
                    self.log_entry(st, method, path, qs, body, None, t0, fault)
                    self.abort()
                    return
                elif k.isdigit():
                    resp = self.pre_fault(st, ctx, fault, path, qs, is_identity)
            if fault is not None and fault["kind"] == "slow":
                time.sleep((fault["delay_ms"] or 2000) / 1000.0)
            truncate = False
            if fault is not None and fault["kind"] == "malformed":
                resp.body = (resp.body or b'{"value":[]}')[:max(1, len(resp.body) // 2)] + b'<!-- bad gateway -->'
            if fault is not None and fault["kind"] == "truncated":
                truncate = True
            resp.headers.append(("request-id", ctx.req_id))
            resp.headers.append(("client-request-id", ctx.client_req_id))
            self.log_entry(st, method, path, qs, body, resp.status, t0, fault)
            if ctx.held:
                # the request is over before its answer goes out: a client that sends the next
                # request on receipt must find the slot free
                with st.lock:
                    throttle_exit(st, ctx)
            self.write(resp, truncate=truncate)
        finally:
            if ctx.held:
                with st.lock:
                    throttle_exit(st, ctx)

    def match_fault(self, st, method, path, body=None):
        for f in st.faults:
            if f["method"] and f["method"] != method:
                continue
            if not f["re"].search(path):
                continue
            if f["batch_re"] is not None and not batch_contains(body, f["batch_re"]):
                continue
            if f["count"] is not None:
                if f["count"] <= 0:
                    continue
                f["count"] -= 1
            elif f["probability"] is not None and st.fault_rng.random() >= float(f["probability"]):
                continue
            f["hits"] += 1
            st.stats["faults"] += 1
            return f
        return None

    def pre_fault(self, st, ctx, f, path, qs, is_identity):
        k = f["kind"]
        if k == "drop":
            self.abort()
            return "dropped"
        if not k.isdigit():
            return None
        status = int(k)
        hdrs = []
        if f["retry_after"] is not None:
            hdrs.append(("Retry-After", str(f["retry_after"])))
        elif status == 429:
            hdrs.append(("Retry-After", "1"))
        if is_identity:
            err = A.AuthError("temporarily_unavailable" if status >= 429 else "invalid_request", 50196, status=status)
            with st.lock:
                r = aad_response(st, err)
            r.headers.extend(hdrs)
            return r
        if status == 410:
            with st.lock:
                q = qparse(qs)
                tok = q.get("$skiptoken") or q.get("$deltatoken")
                f_ = st.store.unpack(tok) if tok else None
                segs = [s for s in path.split("/") if s][1:]
                bp = "/".join(segs[:-2]) if len(segs) >= 2 else None
                if f_ and len(f_) == 11:
                    return gone(st, ctx, bp, f_[4], f_[5])
                return gone(st, ctx)
        code, msg = fault_error(f)
        return graph_error(ctx, status, code, msg, hdrs)

    def process(self, st, ctx, method, path, qs, body, is_identity):
        q = qparse(qs)
        if is_identity:
            segs = [s for s in path.split("/") if s]
            with st.lock:
                st.stats["identity"] += 1
                try:
                    if len(segs) == 4 and segs[1:3] == ["oauth2", "v2.0"]:
                        form = qparse(body.decode("utf-8", "replace")) if body else {}
                        lh = {k.lower(): v for k, v in self.headers.items()}
                        return identity(st, method, segs[0], segs[3], q, form, lh)
                    if len(segs) == 3 and segs[1:] == ["v2.0", "adminconsent"]:
                        return identity(st, method, segs[0], "adminconsent", q, {}, {})
                except Exception:
                    traceback.print_exc(file=sys.stderr)
                    return aad_response(st, A.AuthError("temporarily_unavailable", 50196, status=500))
            return Resp(404, b"", [("Content-Type", "text/html")])
        if not path.startswith("/v1.0/"):
            return graph_error(ctx, 400, "BadRequest", "Invalid version.")
        with st.lock:
            st.stats["graph"] += 1
            try:
                if path.rstrip("/").lower() == "/v1.0/$batch":
                    if method != "POST":
                        raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
                    ctx.token = authenticate(st, ctx, self.headers_lower())
                    return batch(st, ctx, self.headers, body, self)
                return graph_call(st, ctx, method, path, q, HeaderView(self.headers), body)
            except GraphError as ex:
                return graph_error(ctx, ex.status, ex.code, ex.message, ex.headers)
            except Exception:
                # a simulator bug: answer like Graph's generalException and show the traceback
                traceback.print_exc(file=sys.stderr)
                return graph_error(ctx, 500, "generalException", "An unexpected error occurred in graphsim.")

    def headers_lower(self):
        return HeaderView(self.headers)

    def inner(self, st, ctx, rid, r, outer_headers, throttled=False):
        """One request of a $batch, under the lock; throttled: beyond the mailbox's free slots."""
        method = str(r.get("method", "GET")).upper()
        url = str(r.get("url", ""))
        if not url.startswith("/"):
            url = "/" + url
        path, _, qs = url.partition("?")
        path = "/v1.0" + path
        hdrs = {k.lower(): str(v) for k, v in (r.get("headers") or {}).items()}
        for k in ("authorization", "prefer", "client-request-id"):
            if k not in hdrs and outer_headers.get(k):
                hdrs[k] = outer_headers.get(k)
        body = r.get("body")
        bb = jbytes(body) if body is not None and not isinstance(body, str) else (body or "").encode()
        ictx = Ctx()
        ictx.base, ictx.req_id, ictx.client_req_id = ctx.base, st.guid(), ctx.client_req_id
        ictx.in_batch = True
        fault = None if throttled else self.match_fault(st, method, path)
        resp = None
        if throttled:
            st.stats["throttled"] += 1
            if st.fault_rng.random() < float(st.cfg["throttled_inner_executes"]):
                # a throttled inner request may still have run (GRAPH.md §11)
                st.stats["throttled_ran"] += 1
                try:
                    graph_call(st, ictx, method, path, qparse(qs), DictHeaders(hdrs), bb)
                except GraphError:
                    pass
            code, msg = MAILBOX_CONCURRENCY
            resp = graph_error(ictx, 429, code, msg, [("Retry-After", str(st.cfg["concurrency_retry_after"]))])
        elif fault is not None and fault["kind"].isdigit():
            k = int(fault["kind"])
            if fault["after"]:
                # applied, then answered with the fault (a throttled request that still ran)
                try:
                    graph_call(st, ictx, method, path, qparse(qs), DictHeaders(hdrs), bb)
                except GraphError:
                    pass
            code, msg = fault_error(fault)
            resp = graph_error(ictx, k, code, msg,
                               [("Retry-After", str(fault["retry_after"] or "1"))] if k in (429, 503) else [])
        if resp is None:
            try:
                resp = graph_call(st, ictx, method, path, qparse(qs), DictHeaders(hdrs), bb)
                if resp.fault is not None:
                    resp = graph_error(ictx, 400, "BadRequest", "Subscriptions cannot be created inside $batch.")
            except GraphError as ex:
                resp = graph_error(ictx, ex.status, ex.code, ex.message, ex.headers)
            finally:
                throttle_exit(st, ictx)
        out = {"id": rid, "status": resp.status, "headers": {k: v for k, v in resp.headers}}
        if resp.body:
            try:
                out["body"] = json.loads(resp.body)
            except ValueError:
                out["body"] = base64.b64encode(resp.body).decode()
        return out

    def finish_subscription(self, st, ctx, sub):
        ok = True
        if st.cfg["validate_subscriptions"]:
            ok = N.validate_url(st, sub["notificationUrl"])
            if ok and sub["lifecycleNotificationUrl"]:
                ok = N.validate_url(st, sub["lifecycleNotificationUrl"])
        with st.lock:
            if not ok:
                return graph_error(ctx, 400, "ValidationError",
                                   "Subscription validation request failed. Notification endpoint must respond "
                                   "with 200 OK to validation request.")
            st.subs[sub["id"]] = sub
            d = {"@odata.context": "%s/v1.0/$metadata#subscriptions/$entity" % ctx.base}
            d.update(N.sub_json(st, sub))
            return ok_json(d, 201)

    def log_entry(self, st, method, path, qs, body, status, t0, fault):
        with st.lock:
            st.stats["requests"] += 1
            bs = st.stats["by_status"]
            bs[status] = bs.get(status, 0) + 1
            if not st.cfg["log"]:
                return
            st.log_seq += 1
            st.log.append({"seq": st.log_seq, "method": method, "path": path, "query": qs,
                           "headers": redact_headers(dict(self.headers.items())),
                           "body": redact_body(path, body, self.headers.get("Content-Type")),
                           "status": status, "time": T.fmt_offset(t0), "fault": fault["kind"] if fault else None,
                           "duration_ms": round((time.time() - t0) * 1000, 3)})
            lim = int(st.cfg["log_limit"])
            if len(st.log) > lim:
                del st.log[:len(st.log) - lim]


class HeaderView:
    """Case-insensitive header access with get_all, over http.client headers."""
    __slots__ = ("h",)

    def __init__(self, h):
        self.h = h

    def get(self, k, d=None):
        return self.h.get(k, d)

    def get_all(self, k):
        return self.h.get_all(k) or []

    def __contains__(self, k):
        return k in self.h

    def __getitem__(self, k):
        return self.h[k]


class DictHeaders(HeaderView):
    def get(self, k, d=None):
        return self.h.get(k.lower(), d)

    def get_all(self, k):
        v = self.h.get(k.lower())
        return [v] if v is not None else []

    def __contains__(self, k):
        return k.lower() in self.h


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    ssl_ctx = None

    def finish_request(self, request, client_address):
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        if self.ssl_ctx is not None:
            request.settimeout(30)
            try:
                request = self.ssl_ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                try:
                    request.close()
                except OSError:
                    pass
                return
        try:
            self.RequestHandlerClass(request, client_address, self)
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
            pass
        finally:
            try:
                request.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        pass


def main(argv=None):
    global STATE
    ap = argparse.ArgumentParser(description="Microsoft Graph calendar + identity simulator")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--state")
    ap.add_argument("--notify-ca-file", help="CA bundle for https notification URLs")
    args = ap.parse_args(argv)
    scheme = "https" if args.tls_cert else "http"
    STATE = State(args.seed, scheme, args.latency_ms)
    if args.notify_ca_file:
        N.NOTIFY_SSL.load_verify_locations(args.notify_ca_file)
    if args.state and os.path.exists(args.state):
        load_state(STATE, args.state)
    srv = Server(("127.0.0.1", args.port), Handler)
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(args.tls_cert, args.tls_key or args.tls_cert)
        srv.ssl_ctx = ctx
    STATE.port = srv.server_address[1]
    N.NOTIFIER.start()

    def on_term(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    sys.stdout.write("graphsim listening on %s://127.0.0.1:%d\n" % (scheme, STATE.port))
    sys.stdout.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    except SystemExit:
        pass
    finally:
        if args.state:
            try:
                save_state(STATE, args.state)
            except Exception as ex:  # losing the state file must not hide the exit
                sys.stderr.write("graphsim: could not save state: %s\n" % ex)
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

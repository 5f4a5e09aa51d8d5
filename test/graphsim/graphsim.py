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
"""
import argparse
import base64
import http.server
import json
import os
import queue
import random
import re
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import simauth as A  # noqa: E402
import simstore as S  # noqa: E402
import simtime as T  # noqa: E402
from simstore import GraphError  # noqa: E402

GRAPH_CT = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
JSON_CT = "application/json; charset=utf-8"

DEFAULT_CONFIG = {
    "txid_duplicate": "existing",        # or "409"
    "delta_gone_style": "SyncStateNotFound",   # syncStateNotFound | resyncRequired | location
    "delta_gone_status": 410,
    "overshoot_pagesize": False,
    "duplicates_in_round": False,
    "replay_across_rounds": False,
    "empty_pages": False,
    "concurrency_limit": 4,
    "concurrency_retry_after": "1",
    "rate_limit": {"requests": 10000, "seconds": 600},
    "access_token_lifetime": 3599,
    "refresh_token_lifetime": 90 * 86400,
    "code_lifetime": 600,
    "default_page_size": 10,
    "max_page_size": 1000,
    "validate_subscriptions": True,
    "validation_timeout": 5,
    "notification_timeout": 3,
    "subscription_max_minutes": 4230,
    "invalid_client_status": 400,
    "mailbox_not_enabled_status": 404,
    "batch_shuffle": True,
    "log": True,
    "log_limit": 20000,
}

STATUS_FAULTS = {
    400: ("ErrorInvalidParameter", "The request is invalid."),
    401: ("InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
    403: ("ErrorAccessDenied", S.ACCESS_DENIED),
    404: ("ErrorItemNotFound", S.NOT_FOUND),
    409: ("ErrorIrresolvableConflict", "Conflict."),
    410: ("SyncStateNotFound", "The sync state generation is not found; it may have expired. Please restart the sync."),
    412: ("ErrorIrresolvableConflict", "The send or update operation could not be performed because the change "
                                       "key passed in the request does not match the current change key for the item."),
    423: ("ErrorMailboxStoreUnavailable", "The mailbox database is temporarily unavailable."),
    429: ("TooManyRequests", "Too many requests. Please retry after the time given in the Retry-After header."),
    500: ("generalException", "An unexpected error occurred."),
    502: ("BadGateway", "Bad gateway."),
    503: ("serviceNotAvailable", "The service is temporarily unavailable. Please retry later."),
    504: ("GatewayTimeout", "The gateway did not receive a timely response from the upstream server."),
}


class Resp:
    __slots__ = ("status", "headers", "body", "fault", "pause")

    def __init__(self, status, body=b"", headers=None):
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else []
        self.fault = None
        self.pause = None


class Ctx:
    """Per outer request: identity, request id, throttle slots to release."""
    __slots__ = ("token", "req_id", "client_req_id", "held", "base", "prefer")

    def __init__(self):
        self.token = None
        self.held = []


# --------------------------------------------------------------------- state
class State:
    def __init__(self, seed, scheme, latency_ms):
        self.lock = threading.Lock()
        self.seed = seed
        self.scheme = scheme
        self.latency = latency_ms / 1000.0
        self.port = 0
        self.reset()

    def reset(self):
        self.rng = random.Random(self.seed)              # tokens, codes, request and trace ids
        self.id_rng = random.Random(self.seed + 2)       # tenants, users, calendars, events, subscriptions
        self.fault_rng = random.Random(self.seed + 1)
        self.cfg = json.loads(json.dumps(DEFAULT_CONFIG))
        self.store = S.Store(self.id_rng, self.cfg, self._on_change)
        self.tenants = {}          # guid -> {"id","tenant","consent"}
        self.tenant_by_name = {}
        self.apps = {}             # client_id -> {...}
        self.codes = {}
        self.refresh = {}
        self.access = {}
        self.authorize_as = {"upn": None, "decline": False, "admin_consent_error": "permission_denied"}
        self.faults = []
        self.fault_seq = 0
        self.paused = []
        self.log = []
        self.log_seq = 0
        self.stats = {"requests": 0, "by_status": {}, "graph": 0, "identity": 0, "control": 0, "faults": 0,
                      "throttled": 0, "delta_pages": 0, "notifications_sent": 0, "notifications_failed": 0}
        self.inflight = {}
        self.rate = {}
        self.subs = {}
        self.deliveries = []
        self.clock = 0.0

    def now(self):
        return time.time() + self.clock

    def guid(self):
        return A.new_guid(self.rng)

    def entity_guid(self):
        return A.new_guid(self.id_rng)

    # ---------------------------------------------------------------- lookup
    def tenant(self, ref):
        if ref is None:
            return None
        t = self.tenants.get(ref)
        return t if t is not None else self.tenant_by_name.get(ref.lower())

    def add_tenant(self, name, tid=None):
        t = self.tenant(name) or (self.tenants.get(tid) if tid else None)
        if t is not None:
            return t
        t = {"id": tid or self.entity_guid(), "tenant": name, "consent": None}
        self.tenants[t["id"]] = t
        self.tenant_by_name[name.lower()] = t
        return t

    # ---------------------------------------------------------------- notifications
    def _on_change(self, m, v, change):
        if not self.subs:
            return
        now = self.now()
        for sub in list(self.subs.values()):
            if sub["mbx"] != m.id or sub["expires"] < now:
                continue
            if sub["cal"] is not None and sub["cal"] != v.cal:
                continue
            if change not in sub["changeTypes"]:
                continue
            eid = S.imm_id(v.core) if sub["imm"] else S.def_id(v.core, v.gen)
            item = {
                "subscriptionId": sub["id"],
                "subscriptionExpirationDateTime": T.fmt_offset(sub["expires"], 7)[:-1] + "+00:00",
                "changeType": change,
                "resource": "Users/%s/Events/%s" % (m.id, eid),
                "resourceData": {"@odata.type": "#Microsoft.Graph.Event",
                                 "@odata.id": "Users/%s/Events/%s" % (m.id, eid),
                                 "@odata.etag": 'W/"%s"' % S.change_key(v.core, v.ck), "id": eid},
                "clientState": sub["clientState"],
                "tenantId": m.tenant,
            }
            NOTIFIER.put((sub["notificationUrl"], {"value": [item]}, self.cfg["notification_timeout"]))


STATE = None


class Notifier(threading.Thread):
    """Sends change and lifecycle notifications; never touches state under its lock for long."""

    def __init__(self):
        threading.Thread.__init__(self, daemon=True)
        self.q = queue.Queue()

    def put(self, item):
        self.q.put(item)

    def run(self):
        while True:
            url, payload, timeout = self.q.get()
            body = json.dumps(payload).encode()
            status, err = None, None
            try:
                req = urllib.request.Request(url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
                with urlopen(req, timeout) as r:
                    status = r.status
            except urllib.error.HTTPError as ex:
                status = ex.code
            except Exception as ex:  # a dead receiver must not stop the simulator
                err = type(ex).__name__
            st = STATE
            with st.lock:
                ok = status is not None and 200 <= status < 300
                st.stats["notifications_sent" if ok else "notifications_failed"] += 1
                st.deliveries.append({"url": url, "body": payload, "status": status, "error": err,
                                      "time": T.fmt_offset(st.now())})
                del st.deliveries[:-1000]


NOTIFIER = Notifier()
NOTIFY_SSL = ssl.create_default_context()


def urlopen(req, timeout):
    """Outbound webhook calls: never through an environment proxy (targets are local test servers)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=NOTIFY_SSL))
    return opener.open(req, timeout=timeout)


# --------------------------------------------------------------------- helpers
def jbytes(obj):
    return S.dumps(obj).encode()


def graph_error(ctx, status, code, message, headers=None):
    body = {"error": {"code": code, "message": message,
                      "innerError": {"date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
                                     "request-id": ctx.req_id, "client-request-id": ctx.client_req_id}}}
    r = Resp(status, jbytes(body), [("Content-Type", GRAPH_CT)] + list(headers or []))
    return r


def parse_prefer(values):
    out = {}
    for raw in values:
        for part in raw.split(","):
            part = part.strip()
            if not part:
                continue
            k, _, v = part.partition("=")
            out[k.strip().lower()] = v.strip().strip('"')
    return out


def variant_of(prefer):
    """(immutable ids, time zone or None, text body) and the Preference-Applied entries."""
    applied = []
    tz = prefer.get("outlook.timezone")
    if tz is not None:
        try:
            T.zone(tz)
            applied.append('outlook.timezone="%s"' % tz)
        except T.BadZone:
            tz = None
    text = prefer.get("outlook.body-content-type", "").lower() == "text"
    if "outlook.body-content-type" in prefer:
        applied.append('outlook.body-content-type="%s"' % ("text" if text else "html"))
    imm = prefer.get("idtype", "").lower() == "immutableid"
    return (imm, tz, text), applied


def qparse(qs):
    out = {}
    for k, v in urllib.parse.parse_qsl(qs, keep_blank_values=True):
        out[k] = v
    return out


def utc_stamp(t):
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))


def redact_headers(hdrs):
    out = {}
    for k, v in hdrs.items():
        if k.lower() == "authorization":
            scheme, _, cred = v.partition(" ")
            v = "%s [redacted:%s]" % (scheme, A.fingerprint(cred))
        out[k] = v
    return out


SECRET_FIELDS = {"client_secret", "refresh_token", "code", "code_verifier", "client_assertion", "password",
                 "access_token"}


def redact_body(path, body, ctype):
    if not body:
        return ""
    try:
        text = body.decode("utf-8", "replace")
    except Exception:
        return ""
    if "oauth2" in path or "x-www-form-urlencoded" in (ctype or ""):
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True)
        return urllib.parse.urlencode([(k, "[redacted:%s]" % A.fingerprint(v) if k in SECRET_FIELDS else v)
                                       for k, v in pairs], safe="[]:")
    if len(text) > 65536:
        text = text[:65536]
    return text


# --------------------------------------------------------------------- identity endpoints
def aad_response(st, err, corr=None):
    body = A.aad_body(err, st.guid(), corr or st.guid(), utc_stamp(st.now()))
    status = err.status
    if err.error == "invalid_client":
        status = st.cfg["invalid_client_status"]
    return Resp(status, jbytes(body), [("Content-Type", JSON_CT), ("Cache-Control", "no-store, no-cache"),
                                       ("Pragma", "no-cache")])


def error_page(status, err):
    html = ("<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>"
            "<div id=\"error\">%s</div></body></html>" % str(err).replace("<", "&lt;"))
    return Resp(status, html.encode(), [("Content-Type", "text/html; charset=utf-8")])


def identity(st, method, tenant_ref, action, q, form, headers):
    if action == "authorize":
        return authorize(st, tenant_ref, q)
    if action == "adminconsent":
        return admin_consent(st, tenant_ref, q)
    if action == "token":
        if method != "POST":
            return aad_response(st, A.AuthError("invalid_request", 900144, param="grant_type"))
        try:
            return token(st, tenant_ref, form, headers)
        except A.AuthError as err:
            return aad_response(st, err, headers.get("client-request-id"))
    return Resp(404, b"", [("Content-Type", "text/html")])


def _path_tenant(st, ref, allow_common=True):
    if ref.lower() in ("common", "organizations"):
        if not allow_common:
            raise A.AuthError("invalid_request", 50059)
        return None
    t = st.tenant(ref)
    if t is None:
        raise A.AuthError("invalid_request", 90002, tenant=ref)
    return t


def authorize(st, tenant_ref, q):
    app = st.apps.get(q.get("client_id", ""))
    if app is None:
        return error_page(400, A.AuthError("unauthorized_client", 700016, client=q.get("client_id", ""),
                                           tenant=tenant_ref))
    redirect = q.get("redirect_uri", "")
    if redirect not in app["redirect_uris"]:
        return error_page(400, A.AuthError("invalid_request", 50011, redirect=redirect, client=app["client_id"]))
    try:
        t = _path_tenant(st, tenant_ref)
    except A.AuthError as err:
        return error_page(400, err)
    state = q.get("state")
    mode = q.get("response_mode", "query")

    def fail(err):
        return Resp(302, b"", [("Location", A.redirect_url(redirect, [
            ("error", err.error), ("error_description", str(err)), ("state", state)], mode)),
            ("Content-Length", "0")])

    if q.get("response_type") != "code":
        return fail(A.AuthError("unsupported_response_type", 700054))
    if not q.get("scope"):
        return fail(A.AuthError("invalid_request", 900144, param="scope"))
    scopes, offline, badscope = A.normalize_scopes(q["scope"])
    if scopes is None:
        return fail(A.AuthError("invalid_scope", 70011, scope=badscope))
    ch = q.get("code_challenge")
    meth = q.get("code_challenge_method", "plain" if ch else None)
    if ch is not None and meth not in ("S256", "plain"):
        return fail(A.AuthError("invalid_request", 900144, param="code_challenge_method"))
    upn = q.get("login_hint") or st.authorize_as.get("upn")
    m = st.store.find_mailbox(upn) if upn else None
    if m is None:
        return fail(A.AuthError("interaction_required", 50058))
    ut = st.tenants[m.tenant]
    if t is not None and t["id"] != ut["id"]:
        return fail(A.AuthError("invalid_request", 50020, user=m.upn, tenant=tenant_ref))
    if st.authorize_as.get("decline"):
        return fail(A.AuthError("access_denied", 65004))
    if ut["consent"] is False:
        return fail(A.AuthError("consent_required", 65001, client=app["client_id"]))
    code = A.opaque(st.rng, "1.AXcAsim", 120)
    st.codes[code] = {"client": app["client_id"], "redirect": redirect, "scopes": scopes, "offline": offline,
                      "challenge": ch, "method": meth, "user": m.id, "tenant": ut["id"], "issued": st.now(),
                      "used": False}
    return Resp(302, b"", [("Location", A.redirect_url(redirect, [("code", code), ("state", state),
                                                                   ("session_state", st.guid())], mode))])


def admin_consent(st, tenant_ref, q):
    app = st.apps.get(q.get("client_id", ""))
    if app is None:
        return error_page(400, A.AuthError("unauthorized_client", 700016, client=q.get("client_id", ""),
                                           tenant=tenant_ref))
    redirect = q.get("redirect_uri", "")
    if redirect not in app["redirect_uris"]:
        return error_page(400, A.AuthError("invalid_request", 50011, redirect=redirect, client=app["client_id"]))
    try:
        t = _path_tenant(st, tenant_ref, allow_common=False)
    except A.AuthError as err:
        return error_page(400, err)
    state = q.get("state")
    if st.authorize_as.get("decline"):
        e = st.authorize_as.get("admin_consent_error") or "permission_denied"
        err = A.AuthError(e, 65004)
        return Resp(302, b"", [("Location", A.redirect_url(redirect, [
            ("error", e), ("error_description", str(err)), ("state", state)]))])
    t["consent"] = True
    return Resp(302, b"", [("Location", A.redirect_url(redirect, [
        ("admin_consent", "True"), ("tenant", t["id"]), ("scope", q.get("scope", "")), ("state", state)]))])


def _client_auth(st, form, headers):
    cid, secret = form.get("client_id"), form.get("client_secret")
    auth = headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            raw = base64.b64decode(auth[6:].strip()).decode()
            u, _, p = raw.partition(":")
            cid, secret = urllib.parse.unquote(u), urllib.parse.unquote(p)
        except Exception:
            raise A.AuthError("invalid_client", 7000215, client="?")
    app = st.apps.get(cid or "")
    if app is None:
        raise A.AuthError("unauthorized_client", 700016, client=cid or "", tenant="common")
    if not secret:
        raise A.AuthError("invalid_client", 7000218)
    if secret != app["client_secret"]:
        raise A.AuthError("invalid_client", 7000215, client=cid)
    return app


def _issue(st, app, tenant_id, user_id, scopes, offline, app_only=False):
    now = st.now()
    life = int(st.cfg["access_token_lifetime"])
    claims = {"aud": "https://graph.microsoft.com", "iss": "https://sts.windows.net/%s/" % tenant_id,
              "iat": int(now), "nbf": int(now), "exp": int(now + life), "tid": tenant_id,
              "appid": app["client_id"], "uti": A.b64url(bytes(st.rng.getrandbits(8) for _ in range(12)))}
    if app_only:
        claims["roles"] = ["Calendars.ReadWrite", "User.Read.All"]
    else:
        claims["oid"] = user_id
        claims["scp"] = " ".join(scopes)
    at = A.fake_jwt(st.rng, claims)
    st.access[at] = {"user": user_id, "tenant": tenant_id, "client": app["client_id"], "exp": now + life,
                     "app_only": app_only, "scopes": {s.lower() for s in scopes}}
    out = {"token_type": "Bearer", "scope": " ".join(scopes), "expires_in": life, "ext_expires_in": life,
           "access_token": at}
    if offline and not app_only:
        rt = A.opaque(st.rng, "1.AXcAsimRT", 160)
        st.refresh[rt] = {"user": user_id, "tenant": tenant_id, "client": app["client_id"], "scopes": scopes,
                          "issued": now, "state": "ok", "revoked_code": None}
        out["refresh_token"] = rt
    return out


def token(st, tenant_ref, form, headers):
    grant = form.get("grant_type")
    if not grant:
        raise A.AuthError("invalid_request", 900144, param="grant_type")
    t = _path_tenant(st, tenant_ref, allow_common=(grant != "client_credentials"))
    app = _client_auth(st, form, headers)
    now = st.now()
    if grant == "authorization_code":
        code = form.get("code")
        if not code:
            raise A.AuthError("invalid_request", 900144, param="code")
        rec = st.codes.get(code)
        if rec is None:
            raise A.AuthError("invalid_grant", 9002313)
        if rec["used"]:
            raise A.AuthError("invalid_grant", 54005)
        if now - rec["issued"] > st.cfg["code_lifetime"]:
            raise A.AuthError("invalid_grant", 70008)
        if rec["client"] != app["client_id"]:
            raise A.AuthError("invalid_grant", 70000)
        if form.get("redirect_uri") != rec["redirect"]:
            raise A.AuthError("invalid_grant", 50011, redirect=form.get("redirect_uri", ""), client=app["client_id"])
        if t is not None and t["id"] != rec["tenant"]:
            raise A.AuthError("invalid_grant", 50020, user=rec["user"], tenant=tenant_ref)
        if rec["challenge"] is not None and not form.get("code_verifier"):
            raise A.AuthError("invalid_request", 900144, param="code_verifier")
        if not A.pkce_ok(rec["challenge"], rec["method"], form.get("code_verifier")):
            raise A.AuthError("invalid_grant", 50148)
        rec["used"] = True
        if st.tenants[rec["tenant"]]["consent"] is False:
            raise A.AuthError("invalid_grant", 65001, suberror="consent_required", client=app["client_id"])
        return Resp(200, jbytes(_issue(st, app, rec["tenant"], rec["user"], rec["scopes"], rec["offline"])),
                    [("Content-Type", JSON_CT), ("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache")])
    if grant == "refresh_token":
        rt = form.get("refresh_token")
        if not rt:
            raise A.AuthError("invalid_request", 900144, param="refresh_token")
        rec = st.refresh.get(rt)
        if rec is None:
            raise A.AuthError("invalid_grant", 9002313)
        if rec["client"] != app["client_id"]:
            raise A.AuthError("invalid_grant", 70000)
        if rec["state"] == "revoked":
            code = rec["revoked_code"] or 70008
            err = "interaction_required" if code in (50076,) else "invalid_grant"
            raise A.AuthError(err, code, resource=A.GRAPH_APP_ID)
        if rec["state"] == "rotated":
            raise A.AuthError("invalid_grant", 70008)
        if now - rec["issued"] > st.cfg["refresh_token_lifetime"]:
            raise A.AuthError("invalid_grant", 700082, issued=utc_stamp(rec["issued"]))
        if st.tenants[rec["tenant"]]["consent"] is False:
            raise A.AuthError("invalid_grant", 65001, suberror="consent_required", client=app["client_id"])
        scopes = rec["scopes"]
        if form.get("scope"):
            req, _, bads = A.normalize_scopes(form["scope"])
            if req is None:
                raise A.AuthError("invalid_scope", 70011, scope=bads)
        rec["state"] = "rotated"
        return Resp(200, jbytes(_issue(st, app, rec["tenant"], rec["user"], scopes, True)),
                    [("Content-Type", JSON_CT), ("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache")])
    if grant == "client_credentials":
        scope = form.get("scope", "")
        if not scope:
            raise A.AuthError("invalid_scope", 90014)
        if not scope.strip().endswith("/.default") or len(scope.split()) != 1:
            raise A.AuthError("invalid_scope", 1002012, scope=scope)
        res = scope.strip()[:-len("/.default")].rstrip("/")
        if res.lower() not in (A.GRAPH_RESOURCE, A.GRAPH_APP_ID, "graph.microsoft.com"):
            raise A.AuthError("invalid_scope", 70011, scope=scope)
        if t["consent"] is not True:
            raise A.AuthError("invalid_grant", 65001, suberror="consent_required", client=app["client_id"])
        out = _issue(st, app, t["id"], None, ["https://graph.microsoft.com/.default"], False, app_only=True)
        return Resp(200, jbytes(out), [("Content-Type", JSON_CT), ("Cache-Control", "no-store, no-cache"),
                                       ("Pragma", "no-cache")])
    raise A.AuthError("unsupported_grant_type", 70003, grant=grant)


# --------------------------------------------------------------------- graph
class Who:
    __slots__ = ("m", "path")


def authenticate(st, ctx, headers):
    auth = headers.get("authorization")
    hdr = [("WWW-Authenticate", 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
                                'oauth2/authorize", client_id="%s"' % A.GRAPH_APP_ID)]
    if not auth:
        raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.", hdr)
    scheme, _, tok = auth.partition(" ")
    if scheme.lower() != "bearer" or not tok.strip():
        raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.", hdr)
    rec = st.access.get(tok.strip())
    if rec is None:
        raise GraphError(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed, there are no dots (.).", hdr)
    if rec["exp"] <= st.now():
        raise GraphError(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.", hdr)
    if st.tenants[rec["tenant"]]["consent"] is False:
        raise GraphError(403, "ErrorAccessDenied", S.ACCESS_DENIED)
    return rec


def resolve_who(st, tok, segs):
    """segs start with 'me' or 'users/{ref}' -> (mailbox, number of segments consumed, path prefix)."""
    if not segs:
        raise GraphError(400, "BadRequest", "Invalid request.")
    head = segs[0].lower()
    if head == "me":
        if tok["app_only"]:
            raise GraphError(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
        m = st.store.mailboxes.get(tok["user"])
        n, prefix = 1, "me"
    elif head == "users" and len(segs) > 1:
        m = st.store.find_mailbox(segs[1])
        n, prefix = 2, "users/" + segs[1]
        if m is None or m.tenant != tok["tenant"]:
            if len(segs) == 2:
                raise GraphError(404, "Request_ResourceNotFound",
                                 "Resource '%s' does not exist or one of its queried reference-property objects "
                                 "are not present." % segs[1])
            raise GraphError(404, "ErrorItemNotFound", S.NOT_FOUND)
        if not tok["app_only"] and m.id != tok["user"]:
            raise GraphError(403, "ErrorAccessDenied", S.ACCESS_DENIED)
    else:
        raise GraphError(400, "BadRequest", "Resource not found for the segment '%s'." % segs[0])
    if m is None:
        raise GraphError(404, "ErrorItemNotFound", S.NOT_FOUND)
    return m, n, prefix


def throttle_enter(st, ctx, tok, m):
    key = (tok["client"], m.id)
    n = st.inflight.get(key, 0)
    if n >= int(st.cfg["concurrency_limit"]):
        st.stats["throttled"] += 1
        raise GraphError(429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.",
                         [("Retry-After", str(st.cfg["concurrency_retry_after"]))])
    rl = st.cfg["rate_limit"]
    now = st.now()
    w = st.rate.get(key)
    if w is None or now - w[0] >= rl["seconds"]:
        w = st.rate[key] = [now, 0]
    if w[1] >= rl["requests"]:
        st.stats["throttled"] += 1
        wait = max(1, int(w[0] + rl["seconds"] - now + 0.999))
        raise GraphError(429, "ApplicationThrottled", "Application is over its MailboxRequestRate limit.",
                         [("Retry-After", str(wait))])
    w[1] += 1
    st.inflight[key] = n + 1
    ctx.held.append(key)


def throttle_exit(st, ctx):
    for key in ctx.held:
        n = st.inflight.get(key, 1) - 1
        if n <= 0:
            st.inflight.pop(key, None)
        else:
            st.inflight[key] = n
    ctx.held = []


def needs_calendar_scope(tok, write):
    if tok["app_only"]:
        return
    sc = tok["scopes"]
    if "calendars.readwrite" in sc or "calendars.readwrite.shared" in sc:
        return
    if not write and ("calendars.read" in sc or "calendars.read.shared" in sc):
        return
    raise GraphError(403, "ErrorAccessDenied", S.ACCESS_DENIED)


def ok_json(obj, status=200, extra=None):
    return Resp(status, jbytes(obj), [("Content-Type", GRAPH_CT)] + (extra or []))


def entity_bytes(ctx, context_path, raw, status=200, extra=None):
    ctxs = S.dumps("%s/v1.0/$metadata#%s/$entity" % (ctx.base, context_path))
    body = b'{"@odata.context":' + ctxs.encode() + b"," + raw[1:]
    return Resp(status, body, [("Content-Type", GRAPH_CT)] + (extra or []))


def user_json(st, m):
    return {"businessPhones": [], "displayName": m.name, "givenName": m.name.split(" ")[0], "jobTitle": None,
            "mail": m.upn, "mobilePhone": None, "officeLocation": None, "preferredLanguage": "en-US",
            "surname": m.name.split(" ")[-1], "userPrincipalName": m.upn, "id": m.id}


def get_cal(m, cid):
    c = m.cals.get(cid)
    if c is None:
        raise GraphError(404, "ErrorItemNotFound", S.NOT_FOUND)
    return c


def window(q):
    s, e = q.get("startDateTime") or q.get("startdatetime"), q.get("endDateTime") or q.get("enddatetime")
    if not s or not e:
        raise GraphError(400, "ErrorInvalidParameter",
                         "This request requires a time window specified by the query string parameters "
                         "StartDateTime and EndDateTime.")
    try:
        ws, we = T.parse_instant(s), T.parse_instant(e)
    except ValueError:
        raise GraphError(400, "ErrorInvalidParameter", "The parameter 'startDateTime' or 'endDateTime' is not a valid DateTime.")
    if we <= ws:
        raise GraphError(400, "ErrorInvalidParameter", "The end of the time window must be after its start.")
    return ws, we


def gone(st, ctx, base_path=None, ws=None, we=None):
    style = st.cfg["delta_gone_style"]
    status = int(st.cfg["delta_gone_status"])
    hdrs = []
    if style == "syncStateNotFound":
        code, msg = "syncStateNotFound", "The sync state is not found or has expired."
    elif style == "resyncRequired":
        code, msg = "resyncRequired", "The delta token is no longer valid; the application must restart the sync."
    else:
        code, msg = "SyncStateNotFound", ("The sync state generation is not found; it may have expired. "
                                          "Please restart the sync.")
    if style == "location" and base_path is not None and ws is not None:
        loc = "%s/v1.0/%s/calendarView/delta?startDateTime=%s&endDateTime=%s" % (
            ctx.base, base_path, T.fmt_offset(ws / 1000.0, 7), T.fmt_offset(we / 1000.0, 7))
        hdrs.append(("Location", loc))
    return graph_error(ctx, status, code, msg, hdrs)


def delta(st, ctx, m, cal, base_path, q, prefer):
    for bad in ("$top", "$select", "$filter", "$expand", "$orderby", "$search", "$skip", "$count"):
        if bad in q:
            raise GraphError(400, "ErrorInvalidParameter" if bad != "$top" else "ErrorInvalidUrlQuery",
                             "The query parameter '%s' is not supported with change tracking over the "
                             "'CalendarView' resource." % bad)
    variant, applied = variant_of(prefer)
    size = st.cfg["default_page_size"]
    if "odata.maxpagesize" in prefer:
        try:
            size = max(1, min(int(prefer["odata.maxpagesize"]), int(st.cfg["max_page_size"])))
            applied.append("odata.maxpagesize=%d" % size)
        except ValueError:
            pass
    store = st.store
    tok = q.get("$skiptoken") or q.get("$deltatoken")
    empty = store.F_EMPTY if st.cfg["empty_pages"] else 0
    if tok is not None:
        f = store.unpack(tok)
        if f is None or len(f) != 11:
            return gone(st, ctx)
        kind, midx, epoch, cidx, ws_ms, we_ms, Sq, U, cursor, sub, flags = f
        if midx != m.idx or cidx != cal.idx:
            return gone(st, ctx)
        if epoch != m.epoch or ("$skiptoken" in q) != (kind == 1):
            return gone(st, ctx, base_path, ws_ms, we_ms)
        if kind == 0:
            U, cursor, sub = m.seq, Sq, 0
            flags = (flags & store.F_REPLAY) | empty
    else:
        ws, we = window(q)
        ws_ms, we_ms = int(ws * 1000), int(we * 1000)
        Sq, U, cursor, sub, flags = 0, m.seq, 0, 0, empty
    items, nxt = store.delta_page(m, cal.idx, ws_ms / 1000.0, we_ms / 1000.0, Sq, U, cursor, sub, flags,
                                  variant, size)
    st.stats["delta_pages"] += 1
    link_base = "%s/v1.0/%s/calendarView/delta?" % (ctx.base, base_path)
    if nxt is not None:
        fl, Sq2, U2, cur2, sub2 = nxt
        t = store.pack((1, m.idx, m.epoch, cal.idx, ws_ms, we_ms, Sq2, U2, cur2, sub2, fl))
        link = b'"@odata.nextLink":' + S.dumps(link_base + "$skiptoken=" + t).encode()
    else:
        if st.cfg["replay_across_rounds"] and not flags & store.F_REPLAY and Sq != 0:
            t = store.pack((0, m.idx, m.epoch, cal.idx, ws_ms, we_ms, Sq, 0, 0, 0, store.F_REPLAY))
        else:
            t = store.pack((0, m.idx, m.epoch, cal.idx, ws_ms, we_ms, U, 0, 0, 0, 0))
        link = b'"@odata.deltaLink":' + S.dumps(link_base + "$deltatoken=" + t).encode()
    body = b"".join((b'{"@odata.context":', S.dumps("%s/v1.0/$metadata#Collection(event)" % ctx.base).encode(),
                     b",", link, b',"value":[', b",".join(items), b"]}"))
    hdrs = [("Content-Type", GRAPH_CT)]
    if applied:
        hdrs.append(("Preference-Applied", ", ".join(applied)))
    return Resp(200, body, hdrs)


def paged(st, ctx, items_bytes, q, link_base, context, prefer_applied=None):
    try:
        top = int(q.get("$top", st.cfg["default_page_size"]))
        skip = int(q.get("$skip", 0))
    except ValueError:
        raise GraphError(400, "ErrorInvalidUrlQuery", "The value of $top or $skip is not valid.")
    if top < 1 or skip < 0:
        raise GraphError(400, "ErrorInvalidUrlQuery", "The value of $top or $skip is not valid.")
    page = items_bytes[skip:skip + top]
    parts = [b'{"@odata.context":', S.dumps("%s/v1.0/$metadata#%s" % (ctx.base, context)).encode(),
             b',"value":[', b",".join(page), b"]"]
    if skip + top < len(items_bytes):
        extra = [(k, v) for k, v in q.items() if k not in ("$skip", "$top")]
        extra += [("$top", str(top)), ("$skip", str(skip + top))]
        parts.append(b',"@odata.nextLink":' + S.dumps(link_base + "?" + urllib.parse.urlencode(extra)).encode())
    parts.append(b"}")
    hdrs = [("Content-Type", GRAPH_CT)]
    if prefer_applied:
        hdrs.append(("Preference-Applied", ", ".join(prefer_applied)))
    return Resp(200, b"".join(parts), hdrs)


def graph_call(st, ctx, method, path, q, headers, body_bytes):
    """One Graph request (outer or inside $batch), under the state lock."""
    segs = [urllib.parse.unquote(s) for s in path.split("/") if s]
    # segs[0] == "v1.0"
    segs = segs[1:]
    if not segs:
        raise GraphError(400, "BadRequest", "Invalid request.")
    tok = authenticate(st, ctx, headers)
    ctx.token = tok
    prefer = parse_prefer(headers.get_all("prefer"))
    low0 = segs[0].lower()
    if low0 == "subscriptions":
        return subscriptions(st, ctx, tok, method, segs, body_bytes, prefer)
    m, n, prefix = resolve_who(st, tok, segs)
    if not m.enabled:
        raise GraphError(int(st.cfg["mailbox_not_enabled_status"]), "MailboxNotEnabledForRESTAPI",
                         "The mailbox is either inactive, soft-deleted, or is hosted on-premise.")
    rest = segs[n:]
    lrest = [s.lower() for s in rest]
    throttle_enter(st, ctx, tok, m)
    if not rest:
        if method != "GET":
            raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
        d = {"@odata.context": "%s/v1.0/$metadata#users/$entity" % ctx.base}
        d.update(user_json(st, m))
        return ok_json(d)
    cal = None
    # calendar addressing
    if lrest[0] == "calendars":
        if len(rest) == 1:
            if method != "GET":
                raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
            needs_calendar_scope(tok, False)
            items = [jbytes(c.to_json()) for c in m.cal_list]
            return paged(st, ctx, items, q, "%s/v1.0/%s/calendars" % (ctx.base, prefix),
                         "users('%s')/calendars" % m.id)
        cal = get_cal(m, rest[1])
        cal_path = prefix + "/calendars/" + rest[1]
        rest, lrest = rest[2:], lrest[2:]
    elif lrest[0] == "calendar":
        cal = m.default_cal()
        cal_path = prefix + "/calendar"
        rest, lrest = rest[1:], lrest[1:]
    else:
        cal_path = prefix
    needs_calendar_scope(tok, method != "GET")
    if cal is not None and not rest:
        if method != "GET":
            raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
        d = {"@odata.context": "%s/v1.0/$metadata#users('%s')/calendars/$entity" % (ctx.base, m.id)}
        d.update(cal.to_json())
        return ok_json(d)
    if lrest == ["calendarview", "delta"] and method == "GET":
        return delta(st, ctx, m, cal or m.default_cal(), cal_path, q, prefer)
    variant, applied = variant_of(prefer)
    store = st.store
    if lrest == ["calendarview"] and method == "GET":
        ws, we = window(q)
        c = cal or m.default_cal()
        lst = []
        for v in m.items.values():
            for s_, iid, b in store.instance_list(m, v, c.idx, ws, we, variant):
                lst.append((s_, iid, b))
        lst.sort(key=lambda x: (x[0], x[1]))
        return paged(st, ctx, [b for _, _, b in lst], q, "%s/v1.0/%s/calendarView" % (ctx.base, cal_path),
                     "Collection(event)", applied)
    if lrest == ["translateexchangeids"] and method == "POST":
        return translate_ids(st, m, body_bytes)
    if not lrest or lrest[0] != "events":
        raise GraphError(400, "BadRequest", "Resource not found for the segment '%s'." % (rest[0] if rest else ""))
    now = st.now()
    if len(rest) == 1:
        if method == "GET":
            lst = [store.render(m, v, variant) for v in m.items.values()
                   if not v.deleted and (cal is None or v.cal == cal.idx)]
            return paged(st, ctx, lst, q, "%s/v1.0/%s/events" % (ctx.base, cal_path),
                         "users('%s')/events" % m.id, applied)
        if method == "POST":
            body = parse_json(body_bytes)
            v, created = store.create(m, cal or m.default_cal(), body, now, txdup=st.cfg["txid_duplicate"])
            return entity_bytes(ctx, "users('%s')/events" % m.id, store.render(m, v, variant), 201,
                                ([("Preference-Applied", ", ".join(applied))] if applied else []) +
                                [("Location", "%s/v1.0/users('%s')/events('%s')" % (ctx.base, m.id, store.id_of(v, variant[0])))])
        raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
    eid = rest[1]
    if len(rest) == 3 and lrest[2] == "instances" and method == "GET":
        v, key = store.lookup(m, eid, cal)
        if key is not None or not v.is_series():
            raise GraphError(400, "ErrorInvalidParameter", "The item is not a recurring series master.")
        ws, we = window(q)
        lst = [b for _, _, b in store.instance_list(m, v, v.cal, ws, we, variant)]
        return paged(st, ctx, lst, q, "%s/v1.0/%s/events/%s/instances" % (ctx.base, cal_path, eid),
                     "Collection(event)", applied)
    if len(rest) != 2:
        raise GraphError(400, "BadRequest", "Resource not found for the segment '%s'." % rest[-1])
    pa = [("Preference-Applied", ", ".join(applied))] if applied else []
    if method == "GET":
        v, key = store.lookup(m, eid, cal)
        return entity_bytes(ctx, "users('%s')/events" % m.id, store.render(m, v, variant, key), 200, pa)
    if method == "PATCH":
        body = parse_json(body_bytes)
        v, key = store.update(m, eid, body, now, headers.get("if-match"), cal=cal)
        return entity_bytes(ctx, "users('%s')/events" % m.id, store.render(m, v, variant, key), 200, pa)
    if method == "DELETE":
        store.delete(m, eid, now, headers.get("if-match"), cal=cal)
        return Resp(204, b"")
    raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")


def parse_json(b):
    if not b:
        raise GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
    try:
        return json.loads(b)
    except ValueError:
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload. Please ensure Content-Type "
                                            "header is set and payload is of valid JSON format.")


def translate_ids(st, m, body_bytes):
    body = parse_json(body_bytes)
    ids = body.get("inputIds") or []
    if not isinstance(ids, list) or len(ids) > 1000:
        raise GraphError(400, "ErrorInvalidParameter", "inputIds must hold at most 1000 ids.")
    target = (body.get("targetIdType") or "").lower()
    if target not in ("restid", "restimmutableentryid"):
        raise GraphError(400, "ErrorInvalidParameter", "targetIdType is not supported by the simulator.")
    out = []
    for i in ids:
        p = S.parse_event_id(i) if isinstance(i, str) else None
        if p is None or p[0] not in m.items:
            continue
        v = m.items[p[0]]
        base = S.imm_id(v.core) if target == "restimmutableentryid" else S.def_id(v.core, v.gen)
        out.append({"sourceId": i, "targetId": S.occ_id(base, p[2]) if p[2] else base})
    return ok_json({"@odata.context": "%s/v1.0/$metadata#Collection(microsoft.graph.convertIdResult)" % "", "value": out})


# --------------------------------------------------------------------- subscriptions
SUB_RE = re.compile(r"^/?(me|users/([^/]+))(/calendars/([^/]+)|/calendar)?/events/?$", re.I)


def sub_json(st, sub):
    return {"id": sub["id"], "resource": sub["resource"], "applicationId": sub["client"],
            "changeType": sub["changeType"], "clientState": sub["clientState"],
            "notificationUrl": sub["notificationUrl"], "lifecycleNotificationUrl": sub["lifecycleNotificationUrl"],
            "expirationDateTime": T.fmt_offset(sub["expires"], 7)[:-1] + "+00:00",
            "creatorId": sub["creator"], "latestSupportedTlsVersion": "v1_2",
            "notificationQueryOptions": None, "includeResourceData": False, "encryptionCertificate": None,
            "encryptionCertificateId": None, "notificationUrlAppId": None}


def _url_allowed(url):
    p = urllib.parse.urlparse(url or "")
    if p.scheme == "https":
        return True
    return p.scheme == "http" and p.hostname in ("127.0.0.1", "localhost")


def _expiry(st, val):
    try:
        exp = T.parse_instant(val)
    except (ValueError, AttributeError, TypeError):
        raise GraphError(400, "InvalidRequest", "expirationDateTime is not a valid DateTime.")
    now = st.now()
    if exp <= now:
        raise GraphError(400, "InvalidRequest", "Subscription expiration can only be in the future.")
    mx = float(st.cfg["subscription_max_minutes"])
    if exp > now + mx * 60 + 60:
        raise GraphError(400, "InvalidRequest", "Subscription expiration can only be %d minutes in the future." % mx)
    return exp


def subscriptions(st, ctx, tok, method, segs, body_bytes, prefer):
    if len(segs) == 1:
        if method == "GET":
            return ok_json({"@odata.context": "%s/v1.0/$metadata#subscriptions" % ctx.base,
                            "value": [sub_json(st, s) for s in st.subs.values() if s["client"] == tok["client"]]})
        if method != "POST":
            raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
        body = parse_json(body_bytes)
        res = body.get("resource") or ""
        mm = SUB_RE.match(res)
        if not mm:
            raise GraphError(400, "InvalidRequest", "The resource '%s' is not supported." % res)
        who = ["me"] if mm.group(1).lower() == "me" else ["users", mm.group(2)]
        m, _, _ = resolve_who(st, tok, who)
        cal = None
        if mm.group(4):
            cal = get_cal(m, mm.group(4)).idx
        elif mm.group(3):
            cal = 0
        types = [t.strip() for t in (body.get("changeType") or "").split(",") if t.strip()]
        if not types or any(t not in ("created", "updated", "deleted") for t in types):
            raise GraphError(400, "InvalidRequest", "changeType is invalid.")
        cs = body.get("clientState")
        if cs is not None and (not isinstance(cs, str) or len(cs) > 128):
            raise GraphError(400, "InvalidRequest", "clientState must be at most 128 characters.")
        url = body.get("notificationUrl")
        if not _url_allowed(url):
            raise GraphError(400, "InvalidRequest", "The notificationUrl must use https.")
        life = body.get("lifecycleNotificationUrl")
        if life is not None and not _url_allowed(life):
            raise GraphError(400, "InvalidRequest", "The lifecycleNotificationUrl must use https.")
        exp = _expiry(st, body.get("expirationDateTime"))
        sub = {"id": st.entity_guid(), "resource": res, "changeType": ",".join(types), "changeTypes": set(types),
               "notificationUrl": url, "lifecycleNotificationUrl": life, "clientState": cs, "expires": exp,
               "mbx": m.id, "cal": cal, "client": tok["client"], "creator": tok["user"] or tok["client"],
               "imm": prefer.get("idtype", "").lower() == "immutableid", "tenant": m.tenant}
        # the validation handshake happens outside the lock; see Handler.graph
        r = Resp(201, b"")
        r.fault = ("validate", sub)
        return r
    sid = segs[1]
    sub = st.subs.get(sid)
    if sub is None or sub["client"] != tok["client"]:
        raise GraphError(404, "ResourceNotFound", "The object was not found.")
    if method == "GET":
        return ok_json(dict({"@odata.context": "%s/v1.0/$metadata#subscriptions/$entity" % ctx.base}, **sub_json(st, sub)))
    if method == "PATCH":
        body = parse_json(body_bytes)
        if "expirationDateTime" in body:
            sub["expires"] = _expiry(st, body["expirationDateTime"])
        return ok_json(dict({"@odata.context": "%s/v1.0/$metadata#subscriptions/$entity" % ctx.base}, **sub_json(st, sub)))
    if method == "DELETE":
        del st.subs[sid]
        return Resp(204, b"")
    raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")


def validate_url(st, url):
    tokn = "Validation: Testing client application reachability for subscription Request-Id: " + st.guid()
    sep = "&" if "?" in url else "?"
    full = url + sep + "validationToken=" + urllib.parse.quote(tokn, safe="")
    try:
        req = urllib.request.Request(full, data=b"", method="POST", headers={"Content-Type": "text/plain; charset=utf-8"})
        with urlopen(req, st.cfg["validation_timeout"]) as r:
            body = r.read(4096).decode("utf-8", "replace")
            return r.status == 200 and body == tokn
    except Exception:
        return False


# --------------------------------------------------------------------- batch
def batch(st, ctx, headers, body_bytes, handler):
    body = parse_json(body_bytes)
    reqs = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(reqs, list) or not reqs:
        raise GraphError(400, "BadRequest", "Invalid batch payload format.")
    if len(reqs) > 20:
        raise GraphError(400, "BadRequest", "The number of batch requests exceeds the limit of 20.")
    ids = [str(r.get("id")) for r in reqs if isinstance(r, dict)]
    if len(ids) != len(reqs) or len(set(ids)) != len(ids) or any(i in ("None", "") for i in ids):
        raise GraphError(400, "BadRequest", "Batch request ids must be unique and non-empty.")
    byid = {str(r["id"]): r for r in reqs}
    for r in reqs:
        for d in r.get("dependsOn") or []:
            if str(d) not in byid:
                raise GraphError(400, "BadRequest", "Request dependsOn an id that is not in the batch.")
    done = {}
    order = []

    def run(rid, stack=()):
        if rid in done:
            return done[rid]
        if rid in stack:
            raise GraphError(400, "BadRequest", "Circular dependsOn in batch.")
        r = byid[rid]
        for d in r.get("dependsOn") or []:
            dep = run(str(d), stack + (rid,))
            if dep["status"] >= 400:
                res = {"id": rid, "status": 424, "headers": {"Content-Type": "application/json"},
                       "body": {"error": {"code": "FailedDependency",
                                          "message": "The request could not be performed because a request it "
                                                     "depends on failed."}}}
                done[rid] = res
                order.append(res)
                return res
        res = handler.inner(st, ctx, rid, r, headers)
        done[rid] = res
        order.append(res)
        return res

    for r in reqs:
        run(str(r["id"]))
    if st.cfg["batch_shuffle"]:
        st.fault_rng.shuffle(order)
    return ok_json({"responses": order})


# --------------------------------------------------------------------- control API
def control(st, method, path, q, body_bytes):
    segs = [urllib.parse.unquote(s) for s in path.split("/") if s][1:]
    body = {}
    if body_bytes:
        try:
            body = json.loads(body_bytes)
        except ValueError:
            return 400, {"error": "body is not JSON"}
    key = "/".join(segs[:1])
    store = st.store
    now = st.now()
    if method == "POST" and segs == ["reset"]:
        log = st.cfg.get("log")
        st.reset()
        st.cfg["log"] = log
        return 200, {}
    if segs == ["tenants"]:
        if method == "POST":
            t = st.add_tenant(body["tenant"], body.get("id"))
            return 201, {"id": t["id"], "tenant": t["tenant"], "consent": t["consent"]}
        return 200, {"value": [{"id": t["id"], "tenant": t["tenant"], "consent": t["consent"]} for t in st.tenants.values()]}
    if segs == ["apps"] and method == "POST":
        app = {"client_id": body["client_id"], "client_secret": body["client_secret"],
               "redirect_uris": list(body.get("redirect_uris") or [])}
        st.apps[app["client_id"]] = app
        return 201, {"client_id": app["client_id"], "redirect_uris": app["redirect_uris"]}
    if segs == ["users"] and method == "POST":
        t = st.tenant(body.get("tenant")) or st.add_tenant(body.get("tenant") or body["upn"].split("@")[-1])
        if store.find_mailbox(body["upn"]) is not None:
            return 409, {"error": "user exists"}
        uid = body.get("id") or st.entity_guid()
        m = store.add_mailbox(uid, body["upn"], body.get("display_name") or body["upn"].split("@")[0], t["id"])
        m.enabled = bool(body.get("mailbox_enabled", True))
        return 201, user_ctl(m)
    if segs == ["bulk_users"] and method == "POST":
        t = st.tenant(body["tenant"]) or st.add_tenant(body["tenant"])
        n = int(body.get("count", 1))
        per = int(body.get("events_per_user", 0))
        start = T.parse_instant(body.get("start") or T.fmt_offset(now - 86400 * 7, 0))
        prefix = body.get("prefix", "bulk")
        users = []
        base_i = len(store.by_idx)
        template = body.get("template") or {"subject": "Bulk event", "body": {"contentType": "text", "content": "x"}}
        for i in range(n):
            upn = "%s%06d@%s" % (prefix, base_i + i, t["tenant"])
            m = store.add_mailbox(st.entity_guid(), upn, "Bulk User %d" % (base_i + i), t["id"])
            if per:
                store.bulk_create(m, m.default_cal(), template, per, start, int(body.get("interval_minutes", 90)) * 60,
                                  int(body.get("duration_minutes", 30)) * 60, now)
            users.append({"id": m.id, "upn": upn})
        return 201, {"count": n, "users": users}
    if segs[:1] == ["users"] and len(segs) >= 2:
        m = store.find_mailbox(segs[1])
        if m is None:
            return 404, {"error": "no such user"}
        rest = segs[2:]
        if not rest and method == "GET":
            return 200, user_ctl(m)
        if rest == ["calendars"] and method == "POST":
            c = store.add_calendar(m, body.get("name", "Calendar"), body.get("can_edit", True),
                                   body.get("owner_name"), body.get("owner_address"),
                                   body.get("color", "auto"), body.get("hex_color", ""))
            return 201, cal_ctl(c)
        if rest == ["mailbox"] and method == "POST":
            m.enabled = bool(body.get("enabled", True))
            return 200, user_ctl(m)
        variant = (q.get("idtype", "immutable") != "default", q.get("tz") or None, q.get("body") == "text")
        if rest == ["events", "bulk"] and method == "POST":
            cal = m.cals.get(body.get("calendar_id")) or m.default_cal()
            start = T.parse_instant(body.get("start") or T.fmt_offset(now, 0))
            vs = store.bulk_create(m, cal, body.get("template") or {"subject": "Bulk event"}, int(body["count"]),
                                   start, int(body.get("interval_minutes", 60)) * 60,
                                   int(body.get("duration_minutes", 30)) * 60, now)
            return 201, {"count": len(vs), "first_id": S.imm_id(vs[0].core) if vs else None}
        if rest == ["events"] and method == "POST":
            cid = body.get("calendar_id")
            cal = m.default_cal() if cid is None else m.cals.get(cid)
            if cal is None:
                return 404, {"error": "no such calendar"}
            v, _ = store.create(m, cal, body, now, outlook=True)
            return 201, ctl_event(store, m, v, variant)
        if len(rest) == 2 and rest[0] == "events":
            if method == "PATCH":
                move = None
                if "calendar_id" in body:
                    move = m.cals.get(body["calendar_id"])
                    if move is None:
                        return 404, {"error": "no such calendar"}
                v, k = store.update(m, rest[1], body, now, if_match=body.get("if_match"), outlook=True, move_to=move)
                return 200, ctl_event(store, m, v, variant, k)
            if method == "DELETE":
                store.delete(m, rest[1], now, outlook=True)
                return 204, None
            if method == "GET":
                v, k = store.lookup(m, rest[1])
                return 200, ctl_event(store, m, v, variant, k)
        if rest == ["truth"] and method == "GET":
            cal_idx = m.cals[q["calendar_id"]].idx if q.get("calendar_id") in m.cals else None
            out = {"user": m.id, "seq": m.seq, "events": store.truth(m, variant, cal_idx)}
            if q.get("expand") in ("1", "true"):
                ws, we = T.parse_instant(q["start"]), T.parse_instant(q["end"])
                ci = cal_idx if cal_idx is not None else 0
                out["instances"] = [json.loads(b) for b in store.view(m, ci, ws, we, variant)]
            return 200, out
        return 404, {"error": "unknown control route"}
    if segs == ["authorize_as"] and method == "POST":
        st.authorize_as = {"upn": body.get("upn"), "decline": bool(body.get("decline")),
                           "admin_consent_error": body.get("admin_consent_error", "permission_denied")}
        return 200, st.authorize_as
    if segs == ["tokens", "revoke"] and method == "POST":
        m = store.find_mailbox(body.get("upn")) if body.get("upn") else None
        n = 0
        for rec in st.refresh.values():
            if (m is None or rec["user"] == m.id) and rec["state"] == "ok":
                rec["state"] = "revoked"
                rec["revoked_code"] = int(body.get("aadsts", 70008))
                n += 1
        return 200, {"revoked": n}
    if segs == ["tokens", "expire"] and method == "POST":
        m = store.find_mailbox(body.get("upn")) if body.get("upn") else None
        t = st.tenant(body.get("tenant")) if body.get("tenant") else None
        n = 0
        for rec in st.access.values():
            if (m is None or rec["user"] == m.id) and (t is None or rec["tenant"] == t["id"]):
                rec["exp"] = 0
                n += 1
        return 200, {"expired": n}
    if segs == ["tokens", "issue"] and method == "POST":
        app = st.apps.get(body.get("client_id")) or {"client_id": body.get("client_id") or "graphsim-direct"}
        if body.get("upn"):
            m = store.find_mailbox(body["upn"])
            if m is None:
                return 404, {"error": "no such user"}
            out = _issue(st, app, m.tenant, m.id, (body.get("scope") or "User.Read Calendars.ReadWrite").split(),
                         bool(body.get("offline")))
        else:
            t = st.tenant(body.get("tenant"))
            if t is None:
                return 404, {"error": "no such tenant"}
            out = _issue(st, app, t["id"], None, ["https://graph.microsoft.com/.default"], False, app_only=True)
        return 200, out
    if segs == ["consent"] and method == "POST":
        t = st.tenant(body.get("tenant"))
        if t is None:
            return 404, {"error": "no such tenant"}
        t["consent"] = bool(body.get("granted"))
        return 200, {"id": t["id"], "tenant": t["tenant"], "consent": t["consent"]}
    if segs == ["faults"]:
        if method == "POST":
            kind = str(body.get("kind"))
            if kind not in ("drop", "slow", "malformed", "truncated", "pause") and not (kind.isdigit() and int(kind) in STATUS_FAULTS):
                return 400, {"error": "unknown fault kind"}
            st.fault_seq += 1
            f = {"id": st.fault_seq, "route": body.get("route", ".*"), "re": re.compile(body.get("route", ".*")),
                 "method": (body.get("method") or "").upper() or None, "kind": kind,
                 "count": body.get("count"), "probability": body.get("probability"),
                 "retry_after": body.get("retry_after"), "delay_ms": body.get("delay_ms"),
                 "after": bool(body.get("after", kind == "pause")), "hits": 0}
            if f["count"] is None and f["probability"] is None:
                f["count"] = 1
            st.faults.append(f)
            return 201, fault_json(f)
        if method == "DELETE":
            st.faults = []
            return 200, {}
        return 200, {"value": [fault_json(f) for f in st.faults]}
    if segs == ["release"] and method == "POST":
        n = int(body.get("count", len(st.paused)))
        rel = st.paused[:n]
        del st.paused[:n]
        for ev in rel:
            ev.set()
        return 200, {"released": len(rel)}
    if segs == ["delta", "expire"] and method == "POST":
        ms = [store.find_mailbox(body["upn"])] if body.get("upn") else list(store.mailboxes.values())
        for m in ms:
            if m is not None:
                m.epoch += 1
        return 200, {"expired": len([m for m in ms if m is not None])}
    if segs == ["config"]:
        if method == "POST":
            for k, v in body.items():
                if k not in DEFAULT_CONFIG:
                    return 400, {"error": "unknown config key %s" % k}
                if k == "rate_limit":
                    st.cfg[k] = {"requests": int(v["requests"]), "seconds": float(v["seconds"])}
                    st.rate = {}
                else:
                    st.cfg[k] = v
        return 200, st.cfg
    if segs == ["clock"] and method == "POST":
        st.clock += float(body.get("advance_seconds", 0))
        return 200, {"offset": st.clock}
    if segs == ["log"]:
        if method == "DELETE":
            st.log = []
            return 200, {}
        since = int(q.get("since", 0))
        return 200, {"value": [e for e in st.log if e["seq"] > since]}
    if segs == ["stats"]:
        s = dict(st.stats)
        s["by_status"] = {str(k): v for k, v in st.stats["by_status"].items()}
        s["mailboxes"] = len(store.mailboxes)
        s["events"] = sum(1 for m in store.mailboxes.values() for v in m.items.values() if not v.deleted) \
            if q.get("count_events") in ("1", "true") else None
        s["paused"] = len(st.paused)
        s["inflight"] = sum(st.inflight.values())
        s["subscriptions"] = len(st.subs)
        return 200, s
    if segs == ["subscriptions"]:
        return 200, {"value": [dict(sub_json(st, s), mailbox=s["mbx"]) for s in st.subs.values()]}
    if len(segs) == 3 and segs[0] == "subscriptions" and segs[2] == "lifecycle" and method == "POST":
        sub = st.subs.get(segs[1])
        if sub is None:
            return 404, {"error": "no such subscription"}
        ev = body.get("event", "reauthorizationRequired")
        item = {"subscriptionId": sub["id"], "subscriptionExpirationDateTime": T.fmt_offset(sub["expires"], 7)[:-1] + "+00:00",
                "tenantId": sub["tenant"], "clientState": sub["clientState"], "lifecycleEvent": ev}
        if ev == "subscriptionRemoved":
            st.subs.pop(sub["id"], None)
        if sub["lifecycleNotificationUrl"]:
            NOTIFIER.put((sub["lifecycleNotificationUrl"], {"value": [item]}, st.cfg["notification_timeout"]))
            return 202, {"sent": True}
        return 200, {"sent": False}
    if segs == ["notifications"]:
        if method == "DELETE":
            st.deliveries = []
            return 200, {}
        return 200, {"value": list(st.deliveries)}
    return 404, {"error": "unknown control route %s %s" % (method, path)}


def fault_json(f):
    return {k: f[k] for k in ("id", "route", "method", "kind", "count", "probability", "retry_after", "delay_ms",
                              "after", "hits")}


def user_ctl(m):
    return {"id": m.id, "upn": m.upn, "display_name": m.name, "tenant_id": m.tenant, "mailbox_enabled": m.enabled,
            "calendars": [cal_ctl(c) for c in m.cal_list]}


def cal_ctl(c):
    return {"id": c.id, "name": c.name, "can_edit": c.can_edit, "is_default": c.is_default}


def ctl_event(store, m, v, variant, key=None):
    d = store.render_dict(m, v, variant, key)
    d["calendar_id"] = m.cal_list[v.cal].id
    d["default_id"] = S.def_id(v.core, v.gen) if key is None else S.occ_id(S.def_id(v.core, v.gen), key)
    d["immutable_id"] = S.imm_id(v.core) if key is None else S.occ_id(S.imm_id(v.core), key)
    return d


# --------------------------------------------------------------------- HTTP
REASONS = http.server.BaseHTTPRequestHandler.responses


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
            fault = self.match_fault(st, method, path)
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
            self.write(resp, truncate=truncate)
        finally:
            if ctx.held:
                with st.lock:
                    throttle_exit(st, ctx)

    def match_fault(self, st, method, path):
        for f in st.faults:
            if f["method"] and f["method"] != method:
                continue
            if not f["re"].search(path):
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
        code, msg = STATUS_FAULTS[status]
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
                    authenticate(st, ctx, self.headers_lower())
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

    def inner(self, st, ctx, rid, r, outer_headers):
        """One request of a $batch, under the lock."""
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
        fault = self.match_fault(st, method, path)
        resp = None
        if fault is not None and fault["kind"].isdigit():
            k = int(fault["kind"])
            code, msg = STATUS_FAULTS[k]
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
            ok = validate_url(st, sub["notificationUrl"])
            if ok and sub["lifecycleNotificationUrl"]:
                ok = validate_url(st, sub["lifecycleNotificationUrl"])
        with st.lock:
            if not ok:
                return graph_error(ctx, 400, "ValidationError",
                                   "Subscription validation request failed. Notification endpoint must respond "
                                   "with 200 OK to validation request.")
            st.subs[sub["id"]] = sub
            d = {"@odata.context": "%s/v1.0/$metadata#subscriptions/$entity" % ctx.base}
            d.update(sub_json(st, sub))
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


# --------------------------------------------------------------------- persistence
def save_state(st, path):
    with st.lock:
        out = {"tenants": list(st.tenants.values()), "apps": list(st.apps.values()), "cfg": st.cfg,
               "refresh": st.refresh, "access": {k: dict(v, scopes=sorted(v["scopes"])) for k, v in st.access.items()},
               "mailboxes": []}
        for m in st.store.by_idx:
            mb = {"id": m.id, "upn": m.upn, "name": m.name, "tenant": m.tenant, "enabled": m.enabled,
                  "seq": m.seq, "epoch": m.epoch, "txids": m.txids,
                  "cals": [{"id": c.id, "name": c.name, "can_edit": c.can_edit, "color": c.color,
                            "hex_color": c.hex_color, "owner_name": c.owner_name, "owner_addr": c.owner_addr,
                            "ck": c.ck} for c in m.cal_list], "events": []}
            for v in m.items.values():
                ev = {k: getattr(v, k) for k in ("core", "seq", "ck", "gen", "cal", "deleted", "data", "txid", "sdt",
                                                 "stz", "edt", "etz", "s", "e", "allday", "created", "modified")}
                if v.exc is not None:
                    ev["exc"] = {k: None if x is None else {a: getattr(x, a) for a in S.Exc.__slots__}
                                 for k, x in v.exc.items()}
                mb["events"].append(ev)
            out["mailboxes"].append(mb)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, path)


def load_state(st, path):
    with open(path) as f:
        d = json.load(f)
    st.cfg.update(d.get("cfg") or {})
    for t in d["tenants"]:
        st.tenants[t["id"]] = t
        st.tenant_by_name[t["tenant"].lower()] = t
    for a in d["apps"]:
        st.apps[a["client_id"]] = a
    st.refresh = d.get("refresh") or {}
    st.access = {k: dict(v, scopes=set(v["scopes"])) for k, v in (d.get("access") or {}).items()}
    for mb in d["mailboxes"]:
        m = S.Mailbox()
        m.id, m.upn, m.name, m.tenant, m.enabled = mb["id"], mb["upn"], mb["name"], mb["tenant"], mb["enabled"]
        m.idx = len(st.store.by_idx)
        st.store.by_idx.append(m)
        st.store.mailboxes[m.id] = m
        st.store.by_upn[m.upn.lower()] = m
        m.seq = mb["seq"]
        m.epoch = mb["epoch"] + 1      # version history is not persisted: old delta tokens resync
        m.txids = mb["txids"]
        for c in mb["cals"]:
            cal = S.Calendar()
            cal.id, cal.name, cal.can_edit, cal.color, cal.hex_color = c["id"], c["name"], c["can_edit"], c["color"], c["hex_color"]
            cal.owner_name, cal.owner_addr, cal.ck = c["owner_name"], c["owner_addr"], c["ck"]
            cal.idx = len(m.cal_list)
            cal.is_default = cal.idx == 0
            m.cals[cal.id] = cal
            m.cal_list.append(cal)
        evs = sorted(mb["events"], key=lambda e: e["seq"])
        for ev in evs:
            v = S.Version()
            for k, val in ev.items():
                if k != "exc":
                    setattr(v, k, val)
            v.exc = None
            if "exc" in ev:
                v.exc = {}
                for k, x in ev["exc"].items():
                    if x is None:
                        v.exc[k] = None
                    else:
                        o = S.Exc()
                        for a, val in x.items():
                            setattr(o, a, val)
                        v.exc[k] = o
            v.prev = None
            v.cache = None
            v.span_end = v.e
            v.span_end = st.store._span_end(v) if not v.deleted else v.e
            m.items[v.core] = v
            m.log_seq.append(v.seq)
            m.log_eid.append(v.core)


# --------------------------------------------------------------------- main
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
        NOTIFY_SSL.load_verify_locations(args.notify_ca_file)
    if args.state and os.path.exists(args.state):
        load_state(STATE, args.state)
    srv = Server(("127.0.0.1", args.port), Handler)
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(args.tls_cert, args.tls_key or args.tls_cert)
        srv.ssl_ctx = ctx
    STATE.port = srv.server_address[1]
    NOTIFIER.start()

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

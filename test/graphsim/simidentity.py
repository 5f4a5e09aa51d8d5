"""simidentity: the Microsoft identity platform endpoints — authorize (code
flow with PKCE), admin consent, and token (authorization_code,
refresh_token with rotation, client_credentials), with AAD-shaped errors.
Called under the state lock.
"""
import base64
import urllib.parse

import simauth as A
import simpages as P
from simcommon import JSON_CT, Resp, jbytes, utc_stamp


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
    if action in ("login", "consent") and method == "POST":
        return (login if action == "login" else consent)(st, form)
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


def _pages(st):
    """Sign-in pages are shown when the config asks for them and no account or
    decline is preset with /_sim/authorize_as (the tests' direct path)."""
    return bool(st.cfg.get("sign_in_pages")) and not st.authorize_as.get("upn") and \
        not st.authorize_as.get("decline")


def _redirect(redirect, params, mode="query"):
    return Resp(302, b"", [("Location", A.redirect_url(redirect, params, mode)), ("Content-Length", "0")])


def _authorize_request(st, tenant_ref, q):
    """Validate an authorize request -> (request dict, None) or (None, answer)."""
    app = st.apps.get(q.get("client_id", ""))
    if app is None:
        return None, error_page(400, A.AuthError("unauthorized_client", 700016, client=q.get("client_id", ""),
                                                 tenant=tenant_ref))
    redirect = q.get("redirect_uri", "")
    if redirect not in app["redirect_uris"]:
        return None, error_page(400, A.AuthError("invalid_request", 50011, redirect=redirect,
                                                 client=app["client_id"]))
    try:
        t = _path_tenant(st, tenant_ref)
    except A.AuthError as err:
        return None, error_page(400, err)
    req = {"kind": "authorize", "tenant_ref": tenant_ref, "tenant": t, "app": app, "redirect": redirect,
           "state": q.get("state"), "mode": q.get("response_mode", "query"), "prompt": q.get("prompt")}
    if q.get("response_type") != "code":
        return None, _fail(req, A.AuthError("unsupported_response_type", 700054))
    if not q.get("scope"):
        return None, _fail(req, A.AuthError("invalid_request", 900144, param="scope"))
    scopes, offline, badscope = A.normalize_scopes(q["scope"])
    if scopes is None:
        return None, _fail(req, A.AuthError("invalid_scope", 70011, scope=badscope))
    ch = q.get("code_challenge")
    meth = q.get("code_challenge_method", "plain" if ch else None)
    if ch is not None and meth not in ("S256", "plain"):
        return None, _fail(req, A.AuthError("invalid_request", 900144, param="code_challenge_method"))
    req.update(scopes=scopes, offline=offline, challenge=ch, method=meth)
    return req, None


def _fail(req, err):
    return _redirect(req["redirect"], [("error", err.error), ("error_description", str(err)),
                                       ("state", req["state"])], req["mode"])


def authorize(st, tenant_ref, q):
    req, answer = _authorize_request(st, tenant_ref, q)
    if answer is not None:
        return answer
    pages = _pages(st)
    if pages and not q.get("login_hint") and q.get("prompt") != "none":
        return _pick_account(st, _begin(st, req))
    upn = q.get("login_hint") or st.authorize_as.get("upn")
    m = st.store.find_mailbox(upn) if upn else None
    if m is None:
        return _fail(req, A.AuthError("interaction_required", 50058))
    return _signed_in(st, req, m, pages)


def _signed_in(st, req, m, pages, ctx=None):
    """The user is known: check tenant and consent, then ask for consent
    (pages, when the organisation has not consented for everyone, or
    prompt=consent) or redirect with a code."""
    ut = st.tenants[m.tenant]
    t = req["tenant"]
    if t is not None and t["id"] != ut["id"]:
        return _fail(req, A.AuthError("invalid_request", 50020, user=m.upn, tenant=req["tenant_ref"]))
    if st.authorize_as.get("decline"):
        return _fail(req, A.AuthError("access_denied", 65004))
    if ut["consent"] is False:
        return _fail(req, A.AuthError("consent_required", 65001, client=req["app"]["client_id"]))
    if pages and (ut["consent"] is not True or req["prompt"] == "consent"):
        ctx = ctx or _begin(st, req)
        st.sign_ins[ctx]["user"] = m.id
        return P.consent(req["tenant_ref"], ctx, req["app"].get("name", "FlowAgent"), m.upn, req["scopes"], False)
    return _code(st, req, m, ut)


def _code(st, req, m, ut):
    code = A.opaque(st.rng, "1.AXcAsim", 120)
    st.codes[code] = {"client": req["app"]["client_id"], "redirect": req["redirect"], "scopes": req["scopes"],
                      "offline": req["offline"], "challenge": req["challenge"], "method": req["method"],
                      "user": m.id, "tenant": ut["id"], "issued": st.now(), "used": False}
    return _redirect(req["redirect"], [("code", code), ("state", req["state"]), ("session_state", st.guid())],
                     req["mode"])


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
    req = {"kind": "adminconsent", "tenant_ref": tenant_ref, "tenant": t, "app": app, "redirect": redirect,
           "state": state, "mode": "query", "scope": q.get("scope", "")}
    if _pages(st):
        return _pick_account(st, _begin(st, req))
    if st.authorize_as.get("decline"):
        e = st.authorize_as.get("admin_consent_error") or "permission_denied"
        err = A.AuthError(e, 65004)
        return Resp(302, b"", [("Location", A.redirect_url(redirect, [
            ("error", e), ("error_description", str(err)), ("state", state)]))])
    return _admin_granted(req)


def _admin_granted(req):
    req["tenant"]["consent"] = True
    return Resp(302, b"", [("Location", A.redirect_url(req["redirect"], [
        ("admin_consent", "True"), ("tenant", req["tenant"]["id"]), ("scope", req["scope"]),
        ("state", req["state"])]))])


# ---- the pages' steps: a pending sign-in lives under an opaque ctx --------

SIGN_IN_LIFETIME = 600
SIGN_INS_MAX = 1000


def _begin(st, req):
    now = st.now()
    for k in [k for k, v in st.sign_ins.items() if now - v["created"] > SIGN_IN_LIFETIME]:
        del st.sign_ins[k]
    while len(st.sign_ins) >= SIGN_INS_MAX:
        del st.sign_ins[next(iter(st.sign_ins))]
    ctx = A.opaque(st.rng, "", 32)
    st.sign_ins[ctx] = {"req": req, "created": now, "user": None}
    return ctx


def _pending(st, form):
    p = st.sign_ins.get(form.get("ctx") or "")
    if p is None or st.now() - p["created"] > SIGN_IN_LIFETIME:
        return None
    return p


def _accounts(st, req):
    """The accounts the picker offers: the path tenant's users, or everyone's."""
    t = req["tenant"]
    out = [(m.upn, m.name) for m in st.store.by_idx if t is None or m.tenant == t["id"]]
    return out[:20]


def _pick_account(st, ctx, error=None):
    req = st.sign_ins[ctx]["req"]
    return P.pick_account(req["tenant_ref"], ctx, req["app"].get("name", "FlowAgent"), _accounts(st, req), error)


def login(st, form):
    """POST from "Pick an account": the chosen account signs in."""
    p = _pending(st, form)
    if p is None:
        return P.expired()
    ctx, req = form["ctx"], p["req"]
    m = st.store.find_mailbox(form.get("login", "").strip()) if form.get("login", "").strip() else None
    if m is None:
        return _pick_account(st, ctx, "We couldn't find an account with that username. Try another, or use the "
                                      "account your organization gave you.")
    if req["kind"] == "authorize":
        answer = _signed_in(st, req, m, True, ctx)
        if answer.status == 302:
            st.sign_ins.pop(ctx, None)
        return answer
    if m.tenant != req["tenant"]["id"]:
        del st.sign_ins[ctx]
        return _fail(req, A.AuthError("access_denied", 50020, user=m.upn, tenant=req["tenant_ref"]))
    p["user"] = m.id
    return P.consent(req["tenant_ref"], ctx, req["app"].get("name", "FlowAgent"), m.upn, [], True)


def consent(st, form):
    """POST from "Permissions requested": Accept or Cancel."""
    p = _pending(st, form)
    if p is None or p["user"] is None:
        return P.expired()
    req = p["req"]
    del st.sign_ins[form["ctx"]]
    accept = form.get("action") == "accept"
    if req["kind"] == "adminconsent":
        if accept:
            return _admin_granted(req)
        return _redirect(req["redirect"], [("error", "permission_denied"),
                                           ("error_description", "The admin canceled the request"),
                                           ("state", req["state"])])
    if not accept:
        return _fail(req, A.AuthError("access_denied", 65004))
    m = st.store.mailboxes[p["user"]]
    return _code(st, req, m, st.tenants[m.tenant])


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

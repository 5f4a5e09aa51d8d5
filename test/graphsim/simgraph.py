"""simgraph: the Microsoft Graph routes — authentication, per-mailbox
throttling, calendars, events, calendarView and its delta, instances,
translateExchangeIds, subscriptions and $batch.  Called under the state
lock; the subscription validation handshake is finished by the HTTP layer
outside it.
"""
import re
import urllib.parse

import simauth as A
import simnotify as N
import simstore as S
import simtime as T
from simcommon import (GRAPH_CT, Resp, entity_bytes, graph_error, jbytes, ok_json, parse_json, parse_prefer,
                       variant_of)
from simstore import GraphError


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
    # GRAPH.md section 11 (docs 6284, contrib 6321): calendarView, delta too, spans at most 1825 days
    if we - ws > MAX_VIEW_DAYS * 86400:
        raise GraphError(400, "ErrorInvalidRequest",
                         "Your request can't be completed. The range between the start and end dates is greater "
                         "than the allowed range. Maximum number of days: %d" % MAX_VIEW_DAYS)
    return ws, we


MAX_VIEW_DAYS = 1825


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
            items = [jbytes(c.to_json()) for c in S.Store.live_calendars(m)]
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


SUB_RE = re.compile(r"^/?(me|users/([^/]+))(/calendars/([^/]+)|/calendar)?/events/?$", re.I)


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
                            "value": [N.sub_json(st, s) for s in st.subs.values() if s["client"] == tok["client"]]})
        if method != "POST":
            raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
        body = parse_json(body_bytes)
        res = body.get("resource") or ""
        mm = SUB_RE.match(res)
        if not mm:
            raise GraphError(400, "InvalidRequest", "The resource '%s' is not supported." % res)
        who = ["me"] if mm.group(1).lower() == "me" else ["users", mm.group(2)]
        m, _, _ = resolve_who(st, tok, who)
        # users/{id}/events reports the default calendar only, like
        # users/{id}/calendar/events (GRAPH.md section 11; contrib 51, docs 6595)
        cal = get_cal(m, mm.group(4)).idx if mm.group(4) else m.default_cal().idx
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
        return ok_json(dict({"@odata.context": "%s/v1.0/$metadata#subscriptions/$entity" % ctx.base}, **N.sub_json(st, sub)))
    if method == "PATCH":
        body = parse_json(body_bytes)
        if "expirationDateTime" in body:
            sub["expires"] = _expiry(st, body["expirationDateTime"])
        return ok_json(dict({"@odata.context": "%s/v1.0/$metadata#subscriptions/$entity" % ctx.base}, **N.sub_json(st, sub)))
    if method == "DELETE":
        del st.subs[sid]
        return Resp(204, b"")
    raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")


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

"""simcontrol: the /_sim/ control API that tests drive — set up tenants, apps,
users and events, edit as Outlook would, revoke or expire tokens, inject
faults, move the clock, read the request log, stats and ground truth, and
fire lifecycle notifications.  JSON, no auth; called under the state lock.
"""
import json
import re
import urllib.parse

import simnotify as N
import simstore as S
import simtime as T
from simcommon import DEFAULT_CONFIG, STATUS_FAULTS
from simidentity import _issue


def control(st, method, path, q, body_bytes):
    segs = [urllib.parse.unquote(s) for s in path.split("/") if s][1:]
    body = {}
    if body_bytes:
        try:
            body = json.loads(body_bytes)
        except ValueError:
            return 400, {"error": "body is not JSON"}
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
               "redirect_uris": list(body.get("redirect_uris") or []), "name": body.get("name") or "FlowAgent"}
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
            users.append({"id": m.id, "upn": upn, "calendar": m.default_cal().id})
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
        if len(rest) == 2 and rest[0] == "calendars" and method == "DELETE":
            c = m.cals.get(rest[1])
            if c is None:
                return 404, {"error": "no such calendar"}
            if c.is_default:
                return 400, {"error": "the default calendar cannot be deleted"}
            store.delete_calendar(m, c, now)
            return 204, None
        if len(rest) == 3 and rest[0] == "calendars" and rest[2] == "change_id" and method == "POST":
            c = m.cals.get(rest[1])
            if c is None:
                return 404, {"error": "no such calendar"}
            return 200, cal_ctl(store.change_calendar_id(m, c))
        if rest == ["mailbox"] and method == "POST":
            m.enabled = bool(body.get("enabled", True))
            return 200, user_ctl(m)
        if rest == ["app_access"] and method == "POST":
            m.app_access = bool(body.get("allowed", True))
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
        if len(rest) == 3 and rest[0] == "events" and rest[2] == "bump_change_key" and method == "POST":
            v, k = store.lookup(m, rest[1])
            if k is not None:
                return 400, {"error": "not for an occurrence"}
            v = store.bump_change_key(m, v.core, now)
            st.stats["changekey_bumps"] += 1
            return 200, ctl_event(store, m, v, variant)
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
    if segs == ["app_permissions"] and method == "POST":
        t = st.tenant(body.get("tenant"))
        if t is None:
            return 404, {"error": "no such tenant"}
        roles = body.get("roles")
        t["app_roles"] = None if roles is None else [str(r) for r in roles]
        return 200, {"id": t["id"], "tenant": t["tenant"], "roles": t["app_roles"]}
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
                 "after": bool(body.get("after", kind == "pause")), "hits": 0,
                 "code": body.get("code"), "message": body.get("message"),
                 "batch_contains": body.get("batch_contains"),
                 "batch_re": re.compile(body["batch_contains"]) if body.get("batch_contains") else None}
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
        return 200, {"value": [dict(N.sub_json(st, s), mailbox=s["mbx"]) for s in st.subs.values()]}
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
            N.NOTIFIER.put((st, sub["lifecycleNotificationUrl"], {"value": [item]}, st.cfg["notification_timeout"]))
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
                              "after", "hits", "batch_contains", "code", "message")}


def user_ctl(m):
    return {"id": m.id, "upn": m.upn, "display_name": m.name, "tenant_id": m.tenant, "mailbox_enabled": m.enabled,
            "app_access": m.app_access,
            "calendars": [cal_ctl(c) for c in S.Store.live_calendars(m)]}


def cal_ctl(c):
    return {"id": c.id, "name": c.name, "can_edit": c.can_edit, "is_default": c.is_default}


def ctl_event(store, m, v, variant, key=None):
    d = store.render_dict(m, v, variant, key)
    d["calendar_id"] = m.cal_list[v.cal].id
    d["default_id"] = S.def_id(v.core, v.gen) if key is None else S.occ_id(S.def_id(v.core, v.gen), key)
    d["immutable_id"] = S.imm_id(v.core) if key is None else S.occ_id(S.imm_id(v.core), key)
    return d

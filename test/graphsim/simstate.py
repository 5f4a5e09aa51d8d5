"""simstate: the simulator's whole state (tenants, apps, tokens, mailboxes,
faults, subscriptions, log, clock) behind one lock, and its save/load to a
JSON file between runs.  Routes live elsewhere; this file only holds data.
"""
import json
import os
import random
import threading
import time

import simauth as A
import simnotify as N
import simstore as S
from simcommon import DEFAULT_CONFIG


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
        self.sign_ins = {}         # ctx -> a sign-in waiting on its pages (sign_in_pages)
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

    def _on_change(self, m, v, change):
        if self.subs:
            N.on_change(self, m, v, change)


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
                            "ck": c.ck, "deleted": c.deleted} for c in m.cal_list], "events": []}
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
            cal.deleted = c.get("deleted", False)
            if not cal.deleted:
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

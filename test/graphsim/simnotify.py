"""simnotify: change and lifecycle notifications — the subscription's JSON
shape, the payloads Graph POSTs to notificationUrl, the validation handshake,
and a sender thread.  Outbound calls never hold the state lock and never go
through an environment proxy (targets are local test receivers).
"""
import json
import queue
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request

import simstore as S
import simtime as T


def sub_json(st, sub):
    return {"id": sub["id"], "resource": sub["resource"], "applicationId": sub["client"],
            "changeType": sub["changeType"], "clientState": sub["clientState"],
            "notificationUrl": sub["notificationUrl"], "lifecycleNotificationUrl": sub["lifecycleNotificationUrl"],
            "expirationDateTime": T.fmt_offset(sub["expires"], 7)[:-1] + "+00:00",
            "creatorId": sub["creator"], "latestSupportedTlsVersion": "v1_2",
            "notificationQueryOptions": None, "includeResourceData": False, "encryptionCertificate": None,
            "encryptionCertificateId": None, "notificationUrlAppId": None}


def on_change(st, m, v, change):
    """Queues one change notification per live subscription that covers this change."""
    if not st.subs:
        return
    now = st.now()
    # A move to another calendar: a deletion for the old one's subscriptions,
    # a creation for the new one's (a guess: the docs are silent on moves).
    old_cal = v.prev.cal if v.prev is not None and change == "updated" else v.cal
    for sub in list(st.subs.values()):
        if sub["mbx"] != m.id or sub["expires"] < now:
            continue
        if sub["cal"] == v.cal:
            kind = change if old_cal == v.cal else "created"
        elif sub["cal"] == old_cal:
            kind = "deleted"
        else:
            continue
        if kind not in sub["changeTypes"]:
            continue
        eid = S.imm_id(v.core) if sub["imm"] else S.def_id(v.core, v.gen)
        item = {
            "subscriptionId": sub["id"],
            "subscriptionExpirationDateTime": T.fmt_offset(sub["expires"], 7)[:-1] + "+00:00",
            "changeType": kind,
            "resource": "Users/%s/Events/%s" % (m.id, eid),
            "resourceData": {"@odata.type": "#Microsoft.Graph.Event",
                             "@odata.id": "Users/%s/Events/%s" % (m.id, eid),
                             "@odata.etag": 'W/"%s"' % S.change_key(v.core, v.ck), "id": eid},
            "clientState": sub["clientState"],
            "tenantId": m.tenant,
        }
        NOTIFIER.put((st, sub["notificationUrl"], {"value": [item]}, st.cfg["notification_timeout"]))


class Notifier(threading.Thread):
    """Sends change and lifecycle notifications; never touches state under its lock for long."""

    def __init__(self):
        threading.Thread.__init__(self, daemon=True)
        self.q = queue.Queue()

    def put(self, item):
        self.q.put(item)

    def run(self):
        while True:
            st, url, payload, timeout = self.q.get()
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

"""Mailboxes, calendars and events of the Graph simulator, and the delta engine.

Every change to an event makes a new immutable Version and appends
(sequence number, event) to its mailbox's change log; the old version stays
reachable through `prev`.  A delta token is then only a few integers: the
window, the sequence the client has seen (S), the sequence this round stops
at (U), and a cursor into the log, so an incremental round costs O(changes),
and what the client saw at S can be diffed precisely against the state at U
(series that change shape, events that leave the window or the calendar).

Rendered JSON is cached per version and rendering variant, since versions
never change.  This module does no locking and no HTTP: the caller holds the
one state lock and turns GraphError into a response.
"""
import base64
import bisect
import datetime as _dt
import hashlib
import hmac
import html
import json
import re

import simtime as T


class GraphError(Exception):
    def __init__(self, status, code, message, headers=None):
        Exception.__init__(self, message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []


def bad(message, code="ErrorInvalidParameter"):
    return GraphError(400, code, message)


_WINDOWS_NAMES = {n.lower() for n in T.WINDOWS_TO_IANA}


def check_write_zones(body):
    """Graph takes Windows zone names on create and update; IANA names are refused in practice
    (GRAPH.md section 10: docs issues 4242, 4758; docs-contrib 1609)."""
    names = []
    for k in ("start", "end"):
        if isinstance(body.get(k), dict):
            names.append(body[k].get("timeZone"))
    rec = body.get("recurrence")
    if isinstance(rec, dict) and isinstance(rec.get("range"), dict):
        names.append(rec["range"].get("recurrenceTimeZone"))
    for n in names:
        if isinstance(n, str) and n and n.lower() not in _WINDOWS_NAMES:
            raise GraphError(400, "TimeZoneNotSupportedException",
                             "A valid TimeZone value must be specified. The following TimeZone value is not "
                             "supported: '%s'." % n)


NOT_FOUND = "The specified object was not found in the store."
ACCESS_DENIED = "Access is denied. Check credentials and try again."

B62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
IMM_PREFIX = "AAkALgAA"      # immutable id: IMM_PREFIX + core(22) + "AAA="
DEF_PREFIX = "AAMkAGEx"      # default id:   DEF_PREFIX + core(22) + gen + "AA="
OCC_MARK = "AEx"             # occurrence:   base[:33] + OCC_MARK + YYYYMMDD + "="
ICAL_PREFIX = "040000008200E00074C5B7101A82E008"
# Outlook-side only (the control API): top-level members of the rendered
# event replaced as given, for items the service sends that the simulator
# would never make by itself (README, "Odd items").
RAW_KEY = "_sim_raw"

json_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
dumps = json_encoder.encode


def b62(rng, n=22):
    return "".join(B62[rng.getrandbits(6) % 62] for _ in range(n))


def imm_id(core):
    return IMM_PREFIX + core + "AAA="


def def_id(core, gen):
    return DEF_PREFIX + core + B62[gen % 62] + "AA="


def occ_id(base, key):
    return base[:33] + OCC_MARK + key + "="


def parse_event_id(s):
    """-> (core, gen or None for an immutable id, occurrence key or None), or None."""
    key = None
    if len(s) == 45 and s[33:36] == OCC_MARK and s[44] == "=" and s[36:44].isdigit():
        key = s[36:44]
        s = s[:33] + "="          # the master's id (both id shapes end in "=" at 33)
    if len(s) != 34 or not s.endswith("="):
        return None
    if s.startswith(IMM_PREFIX) and s[30:] == "AAA=":
        return s[8:30], None, key
    if s.startswith(DEF_PREFIX) and s[31:] == "AA=" and s[30] in B62:
        return s[8:30], B62.index(s[30]), key
    return None


def change_key(core, ck, key=""):
    h = hashlib.sha1(("%s:%s:%d" % (core, key, ck)).encode()).digest()
    return base64.b64encode(h[:12] + ck.to_bytes(4, "big")).decode()


def overlaps(s, e, ws, we):
    if s == e:
        return ws <= s < we
    return s < we and e > ws


def strip_html(s):
    s = re.sub(r"(?is)<(script|style|head).*?</\1>", "", s)
    s = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", s)
    s = re.sub(r"<[^>]+>", "", s)
    return html.unescape(s).strip()


def text_to_html(s):
    return ('<html><head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\r\n'
            '</head>\r\n<body>\r\n' + html.escape(s).replace("\n", "<br>\r\n") + '\r\n</body>\r\n</html>\r\n')


class Calendar:
    __slots__ = ("id", "idx", "name", "can_edit", "color", "hex_color", "owner_name", "owner_addr",
                 "is_default", "ck", "deleted")

    def to_json(self):
        return {
            "id": self.id, "name": self.name, "color": self.color, "hexColor": self.hex_color,
            "isDefaultCalendar": self.is_default, "changeKey": self.ck, "canShare": self.can_edit,
            "canViewPrivateItems": self.can_edit, "canEdit": self.can_edit, "isRemovable": not self.is_default,
            "isTallyingResponses": self.is_default, "allowedOnlineMeetingProviders": ["teamsForBusiness"],
            "defaultOnlineMeetingProvider": "teamsForBusiness",
            "owner": {"name": self.owner_name, "address": self.owner_addr},
        }


class Mailbox:
    __slots__ = ("id", "upn", "name", "tenant", "idx", "cals", "cal_list", "items", "log_seq", "log_eid",
                 "seq", "epoch", "txids", "enabled")

    def __init__(self):
        self.cals = {}
        self.cal_list = []
        self.items = {}
        self.log_seq = []
        self.log_eid = []
        self.seq = 0
        self.epoch = 0
        self.txids = {}
        self.enabled = True

    def default_cal(self):
        return self.cal_list[0]


class Exc:
    """One exception of a series: overrides on top of the master's data."""
    __slots__ = ("data", "sdt", "stz", "edt", "etz", "s", "e", "ck", "modified")


class Version:
    __slots__ = ("core", "seq", "ck", "gen", "cal", "deleted", "data", "txid", "sdt", "stz", "edt", "etz",
                 "s", "e", "allday", "created", "modified", "exc", "prev", "cache", "span_end")

    def copy(self):
        v = Version()
        for k in Version.__slots__:
            setattr(v, k, getattr(self, k))
        v.cache = None
        v.prev = self
        return v

    def is_series(self):
        return not self.deleted and self.data.get("recurrence") is not None


def version_at(head, seq):
    v = head
    while v is not None and v.seq > seq:
        v = v.prev
    return v


# Fields a Graph client may set; anything else in a Graph POST/PATCH is ignored.
WRITABLE = {"subject", "body", "start", "end", "isAllDay", "location", "locations", "attendees",
            "categories", "showAs", "sensitivity", "importance", "isReminderOn",
            "reminderMinutesBeforeStart", "recurrence", "transactionId", "isOnlineMeeting",
            "onlineMeetingProvider", "responseRequested", "allowNewTimeProposals", "hideAttendees",
            "singleValueExtendedProperties", "multiValueExtendedProperties", "isDraft"}
READ_ONLY = {"id", "@odata.etag", "@odata.context", "changeKey", "createdDateTime", "lastModifiedDateTime",
             "iCalUId", "uid", "type", "seriesMasterId", "originalStart", "webLink", "calendar_id",
             "originalStartTimeZone", "originalEndTimeZone", "bodyPreview", "hasAttachments", "occurrenceId"}


class Store:
    """All mailboxes.  Not thread-safe: callers hold the state lock."""

    def __init__(self, rng, cfg, notify):
        self.rng = rng
        self.cfg = cfg
        self.notify = notify          # callable(mbx, core, change_type, version)
        self.mailboxes = {}           # id -> Mailbox
        self.by_upn = {}
        self.by_idx = []
        self.secret = bytes(rng.getrandbits(8) for _ in range(16))
        self.templates = {}           # id(shared data dict) -> dict, for bulk events
        self.static = {}              # (id(data), variant, mailbox idx) -> static JSON fragment

    # ------------------------------------------------------------ mailboxes
    def add_mailbox(self, uid, upn, name, tenant):
        m = Mailbox()
        m.id, m.upn, m.name, m.tenant = uid, upn, name, tenant
        m.idx = len(self.by_idx)
        self.by_idx.append(m)
        self.mailboxes[uid] = m
        self.by_upn[upn.lower()] = m
        self.add_calendar(m, "Calendar", True)
        return m

    def add_calendar(self, m, name, can_edit, owner_name=None, owner_addr=None, color="auto", hex_color=""):
        c = Calendar()
        c.id = "AAMkAGI2" + b62(self.rng) + "AAA="
        c.idx = len(m.cal_list)
        c.name, c.can_edit, c.color, c.hex_color = name, bool(can_edit), color, hex_color
        c.owner_name = owner_name or m.name
        c.owner_addr = owner_addr or m.upn
        c.is_default = c.idx == 0
        c.ck = base64.b64encode(bytes(self.rng.getrandbits(8) for _ in range(16))).decode()
        c.deleted = False
        m.cals[c.id] = c
        m.cal_list.append(c)
        return c

    def delete_calendar(self, m, c, now):
        """Outlook deletes a calendar (GRAPH.md section 11; docs 11296, 5580): its id answers
        404 from now on and its events go with it.  The default calendar cannot be deleted."""
        if c.is_default:
            raise GraphError(400, "ErrorCannotDeleteObject", "The default calendar cannot be deleted.")
        for v in list(m.items.values()):
            if not v.deleted and v.cal == c.idx:
                d = v.copy()
                d.deleted = True
                d.modified = now
                self._commit(m, d, "deleted")
        c.deleted = True
        del m.cals[c.id]

    def change_calendar_id(self, m, c):
        """A calendar's id changes (docs 11296): the old id answers 404, events keep their ids."""
        del m.cals[c.id]
        c.id = "AAMkAGI2" + b62(self.rng) + "AAA="
        m.cals[c.id] = c
        return c

    @staticmethod
    def live_calendars(m):
        return [c for c in m.cal_list if not c.deleted]

    def find_mailbox(self, ref):
        m = self.mailboxes.get(ref)
        if m is None and ref is not None:
            m = self.by_upn.get(ref.lower())
        return m

    # ------------------------------------------------------------ log
    def _commit(self, m, v, change):
        m.seq += 1
        v.seq = m.seq
        m.items[v.core] = v
        m.log_seq.append(v.seq)
        m.log_eid.append(v.core)
        if self.notify is not None:
            self.notify(m, v, change)
        return v

    # ------------------------------------------------------------ parsing input
    def _times(self, body, old=None):
        """-> (sdt, stz, edt, etz, s, e, allday) from a Graph body (falling back to old)."""
        st = body.get("start", None if old is None else {"dateTime": old[0], "timeZone": old[1]})
        en = body.get("end", None if old is None else {"dateTime": old[2], "timeZone": old[3]})
        if not isinstance(st, dict) or not isinstance(en, dict):
            raise bad("The start and end properties are required.")
        try:
            sn = T.parse_local(st.get("dateTime"))
            enn = T.parse_local(en.get("dateTime"))
        except (ValueError, TypeError):
            raise bad("The dateTime value is not a valid DateTime.")
        stz = st.get("timeZone") or "UTC"
        etz = en.get("timeZone") or stz
        try:
            sz, ez = T.zone(stz), T.zone(etz)
        except T.BadZone as ex:
            raise GraphError(400, "TimeZoneNotSupportedException",
                             "A valid TimeZone value must be specified. The following TimeZone value is not supported: '%s'." % ex)
        allday = body.get("isAllDay", old[4] if old is not None else False)
        if allday:
            if sn.time() != _dt.time(0) or enn.time() != _dt.time(0) or enn.date() <= sn.date():
                raise bad("Start and End times must be set to midnight and span at least one day for an all-day event.",
                          "ErrorPropertyValidationFailure")
            s = T.local_to_epoch(sn, sz)
            e = T.local_to_epoch(enn, sz)
        else:
            s = T.local_to_epoch(sn, sz)
            e = T.local_to_epoch(enn, ez)
        if e < s:
            raise bad("The end time of the event must be later than or equal to its start time.",
                      "ErrorPropertyValidationFailure")
        return T.fmt_local(sn), stz, T.fmt_local(enn), etz, s, e, bool(allday)

    def _span_end(self, v):
        rec = v.data.get("recurrence")
        if rec is None:
            return v.e
        first, last = T.first_last_dates(rec)
        if last is None:
            return float("inf")
        s, e = self.occ_times(v, last)
        return max(e, v.e, max((x.e for x in (v.exc or {}).values() if x is not None), default=0))

    # ------------------------------------------------------------ create
    def create(self, m, cal, body, now, outlook=False, txdup="existing"):
        """Create an event from Graph JSON.  Returns (version, created: bool)."""
        if not isinstance(body, dict):
            raise bad("Empty Payload, JSON content expected.")
        if not outlook and not cal.can_edit:
            raise GraphError(403, "ErrorAccessDenied", ACCESS_DENIED)
        if not outlook and not self.cfg.get("iana_zones_on_write"):
            check_write_zones(body)
        txid = body.get("transactionId")
        if txid is not None:
            if not isinstance(txid, str) or not txid:
                raise bad("transactionId must be a string.")
            prev = m.txids.get(txid)
            if prev is not None and not m.items[prev].deleted:
                if txdup == "409":
                    raise GraphError(409, "ErrorDuplicateTransactionId",
                                     "An item with the same transactionId already exists.")
                return m.items[prev], False
        times = self._times(body)
        rec = body.get("recurrence")
        if rec is not None:
            try:
                T.validate(rec)
            except T.BadRecurrence as ex:
                raise bad("The recurrence pattern is not valid: %s." % ex, "ErrorPropertyValidationFailure")
        v = Version()
        v.core = b62(self.rng)
        while v.core in m.items:
            v.core = b62(self.rng)
        keep = (lambda k: True) if outlook else (lambda k: k in WRITABLE)
        v.data = {k: val for k, val in body.items()
                  if keep(k) and k not in ("start", "end", "transactionId", "calendar_id") and k not in READ_ONLY}
        v.data["recurrence"] = rec
        v.sdt, v.stz, v.edt, v.etz, v.s, v.e, v.allday = times
        v.data.pop("isAllDay", None)
        self._online_meeting(v.core, v.data, body)
        v.txid = txid
        v.cal = cal.idx
        v.gen = 0
        v.deleted = False
        v.created = v.modified = now
        v.exc = {} if rec is not None else None
        v.prev = None
        v.cache = None
        v.ck = m.seq + 1
        v.span_end = v.e
        v.span_end = self._span_end(v)
        if txid is not None:
            m.txids[txid] = v.core
        return self._commit(m, v, "created"), True

    def bulk_create(self, m, cal, template, count, start_epoch, step_s, dur_s, now):
        """Many single events sharing one data dict; for benchmarks."""
        data = {k: v for k, v in template.items() if k not in ("start", "end", "transactionId", "recurrence")}
        data["recurrence"] = None
        self.templates[id(data)] = data
        tzname = (template.get("start") or {}).get("timeZone") or "UTC"
        tz = T.zone(tzname)
        created = []
        for i in range(count):
            s = start_epoch + i * step_s
            e = s + dur_s
            v = Version()
            v.core = b62(self.rng)
            v.data = data
            v.sdt = T.fmt_local(T.epoch_to_local(s, tz))
            v.edt = T.fmt_local(T.epoch_to_local(e, tz))
            v.stz = v.etz = tzname
            v.s, v.e, v.allday = s, e, False
            v.txid = None
            v.cal = cal.idx
            v.gen = 0
            v.deleted = False
            v.created = v.modified = now
            v.exc = None
            v.prev = None
            v.cache = None
            v.ck = m.seq + 1
            v.span_end = e
            m.seq += 1
            v.seq = m.seq
            m.items[v.core] = v
            m.log_seq.append(v.seq)
            m.log_eid.append(v.core)
            created.append(v)
        return created

    # ------------------------------------------------------------ lookup
    def lookup(self, m, eid, cal=None):
        """-> (head version, occurrence key or None).  404 when unknown or deleted."""
        p = parse_event_id(eid) if isinstance(eid, str) else None
        if p is None:
            raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")
        core, gen, key = p
        v = m.items.get(core)
        if v is None or v.deleted or (gen is not None and gen != v.gen) or (cal is not None and v.cal != cal.idx):
            raise GraphError(404, "ErrorItemNotFound", NOT_FOUND)
        if key is not None:
            try:
                is_occ = v.is_series() and self.is_occurrence(v, key)
            except ValueError:
                is_occ = False
            if not is_occ:
                raise GraphError(404, "ErrorItemNotFound", NOT_FOUND)
            if key in v.exc and v.exc[key] is None:
                raise GraphError(404, "ErrorItemNotFound", NOT_FOUND)
        return v, key

    def is_occurrence(self, v, key):
        d = self.key_date(key)
        for od in T.occurrence_dates(v.data["recurrence"], d):
            if od == d:
                return True
        return False

    def etag_of(self, v, key=None):
        if key is not None and v.exc and v.exc.get(key) is not None:
            return change_key(v.core, v.exc[key].ck, key)
        return change_key(v.core, v.ck)

    def check_if_match(self, v, key, if_match):
        if if_match is None:
            return
        want = if_match.strip()
        if want == "*":
            return
        if want.startswith("W/"):
            want = want[2:]
        want = want.strip('"')
        if want != self.etag_of(v, key):
            raise GraphError(412, "ErrorIrresolvableConflict",
                             "The send or update operation could not be performed because the change key passed "
                             "in the request does not match the current change key for the item.")

    # ------------------------------------------------------------ update
    def update(self, m, eid, patch, now, if_match=None, outlook=False, cal=None, move_to=None):
        """PATCH an event, an occurrence (creating an exception) or an exception.

        Returns (new version, occurrence key or None)."""
        if not isinstance(patch, dict):
            raise bad("Empty Payload, JSON content expected.")
        head, key = self.lookup(m, eid, cal)
        if not outlook and not m.cal_list[head.cal].can_edit:
            raise GraphError(403, "ErrorAccessDenied", ACCESS_DENIED)
        if not outlook and not self.cfg.get("iana_zones_on_write"):
            check_write_zones(patch)
        self.check_if_match(head, key, if_match)
        if "transactionId" in patch and patch["transactionId"] != head.txid:
            raise bad("The property 'transactionId' cannot be changed once set.")
        keep = (lambda k: True) if outlook else (lambda k: k in WRITABLE)
        fields = {k: val for k, val in patch.items()
                  if keep(k) and k not in ("start", "end", "transactionId", "calendar_id", "isAllDay") and k not in READ_ONLY}
        v = head.copy()
        if key is not None:
            if "recurrence" in patch:
                raise bad("Recurrence cannot be set on an occurrence.")
            self._update_occurrence(m, v, key, patch, fields, now)
            return self._commit(m, v, "updated"), key
        time_change = any(k in patch for k in ("start", "end", "isAllDay"))
        if time_change:
            v.sdt, v.stz, v.edt, v.etz, v.s, v.e, v.allday = self._times(
                patch, (head.sdt, head.stz, head.edt, head.etz, head.allday))
            # the same times written again change nothing (exceptions stay)
            time_change = (v.s, v.e, v.allday, v.stz) != (head.s, head.e, head.allday, head.stz)
        data = dict(head.data)
        data.update(fields)
        self._online_meeting(head.core, data, patch)
        rec_change = "recurrence" in patch and patch["recurrence"] != head.data.get("recurrence")
        if rec_change and patch["recurrence"] is not None:
            try:
                T.validate(patch["recurrence"])
            except T.BadRecurrence as ex:
                raise bad("The recurrence pattern is not valid: %s." % ex, "ErrorPropertyValidationFailure")
        v.data = data
        if data.get("recurrence") is None:
            v.exc = None
        elif rec_change or time_change or v.exc is None:
            v.exc = {}       # Exchange drops exceptions when the series' time or pattern changes
        if move_to is not None and move_to.idx != v.cal:
            v.cal = move_to.idx
            v.gen = head.gen + 1    # default ids change when an item moves folders
        v.ck = m.seq + 1
        v.modified = now
        v.span_end = self._span_end(v)
        return self._commit(m, v, "updated"), None

    TEAMS_MARK = "________________________________________________________________________________"

    def _online_meeting(self, core, data, written):
        """A Teams meeting gets its join link (onlineMeeting.joinUrl) and a join block in its body
        ([D] event resource type: "After you set isOnlineMeeting and onlineMeetingProvider ...
        Microsoft Graph initializes onlineMeeting"). A PATCH of body that does not carry
        isOnlineMeeting loses the block ([O] GRAPH.md section 11, docs 16336 and 12244); the
        property stays. isOnlineMeeting cannot be set back to false ([O] docs 17308)."""
        if written.get("isOnlineMeeting") is False and data.get("onlineMeeting"):
            raise bad("isOnlineMeeting cannot be set to false for an online meeting.")
        if not data.get("isOnlineMeeting") or data.get("onlineMeetingProvider") != "teamsForBusiness":
            return
        if not data.get("onlineMeeting"):
            data["onlineMeeting"] = {"joinUrl": "https://teams.microsoft.com/l/meetup-join/19%%3ameeting_%s%%40thread.v2/0" % core}
        url = data["onlineMeeting"]["joinUrl"]
        body = dict(data.get("body") or {"contentType": "html", "content": ""})
        content = body.get("content") or ""
        if url not in content and ("body" not in written or "isOnlineMeeting" in written):
            if str(body.get("contentType", "html")).lower() == "text":
                content += "\n%s\nMicrosoft Teams meeting\nJoin: %s\n" % (self.TEAMS_MARK, url)
            else:
                content += '<div>%s<p>Microsoft Teams meeting</p><a href="%s">Join the meeting now</a></div>' % (
                    self.TEAMS_MARK, url)
            body["content"] = content
            data["body"] = body

    def _update_occurrence(self, m, v, key, patch, fields, now):
        exc = dict(v.exc)
        old = exc.get(key)
        x = Exc()
        if old is None:
            s, e = self.occ_times(v, self.key_date(key))
            stz_, etz_ = T.zone(v.stz), T.zone(v.etz)
            x.data = {}
            x.sdt, x.stz = T.fmt_local(T.epoch_to_local(s, stz_)), v.stz
            x.edt, x.etz = T.fmt_local(T.epoch_to_local(e, etz_)), v.etz
            if v.allday:
                x.sdt, x.edt = self._allday_local(v, key)
        else:
            x.data = dict(old.data)
            x.sdt, x.stz, x.edt, x.etz = old.sdt, old.stz, old.edt, old.etz
        x.data.update(fields)
        if "start" in patch or "end" in patch:
            x.sdt, x.stz, x.edt, x.etz, _, _, _ = self._times(
                patch, (x.sdt, x.stz, x.edt, x.etz, v.allday))
        x.s = T.local_to_epoch(T.parse_local(x.sdt), T.zone(x.stz))
        x.e = T.local_to_epoch(T.parse_local(x.edt), T.zone(x.etz if not v.allday else x.stz))
        x.ck = m.seq + 1
        x.modified = now
        self._check_boundary(v, key, x, exc)
        exc[key] = x
        v.exc = exc
        v.span_end = max(v.span_end, x.e)

    def _allday_local(self, v, key):
        d = self.key_date(key)
        days = (T.parse_local(v.edt).date() - T.parse_local(v.sdt).date()).days
        return (T.fmt_local(_dt.datetime.combine(d, _dt.time(0))),
                T.fmt_local(_dt.datetime.combine(d + _dt.timedelta(days=days), _dt.time(0))))

    def _check_boundary(self, v, key, x, exc):
        """An occurrence may not move onto or past the day of its neighbours."""
        rec = v.data["recurrence"]
        d = self.key_date(key)
        rtz = T.zone(rec["range"].get("recurrenceTimeZone") or v.stz)
        new_day = T.epoch_to_local(x.s, rtz).date()
        prev_day = next_day = None
        for od in T.occurrence_dates(rec, d + _dt.timedelta(days=3700)):
            k = od.strftime("%Y%m%d")
            if od < d:
                if exc.get(k, 0) is None:
                    continue
                prev_day = od if exc.get(k) is None else T.epoch_to_local(exc[k].s, rtz).date()
            elif od > d:
                if k in exc and exc[k] is None:
                    continue
                next_day = od if exc.get(k) is None else T.epoch_to_local(exc[k].s, rtz).date()
                break
        if (prev_day is not None and new_day <= prev_day) or (next_day is not None and new_day >= next_day):
            raise bad("Cannot move an occurrence of a recurring series past the boundary of another occurrence.",
                      "ErrorOccurrenceCrossingBoundary")

    # ------------------------------------------------------------ delete
    def delete(self, m, eid, now, if_match=None, outlook=False, cal=None):
        head, key = self.lookup(m, eid, cal)
        if not outlook and not m.cal_list[head.cal].can_edit:
            raise GraphError(403, "ErrorAccessDenied", ACCESS_DENIED)
        self.check_if_match(head, key, if_match)
        v = head.copy()
        if key is not None:
            exc = dict(v.exc)
            exc[key] = None
            v.exc = exc
            # the master records the cancellation: its changeKey (and its
            # plain occurrences' etags) change (a guess, see README)
            v.ck = m.seq + 1
            v.modified = now
            return self._commit(m, v, "updated")
        v.deleted = True
        v.modified = now
        return self._commit(m, v, "deleted")

    # ------------------------------------------------------------ instances
    @staticmethod
    def key_date(key):
        return _dt.date(int(key[:4]), int(key[4:6]), int(key[6:8]))

    def occ_times(self, v, d):
        """UTC epoch start/end of the plain occurrence of series v on local date d."""
        if v.allday:
            sz = T.zone(v.stz)
            days = (T.parse_local(v.edt).date() - T.parse_local(v.sdt).date()).days
            s = T.local_to_epoch(_dt.datetime.combine(d, _dt.time(0)), sz)
            e = T.local_to_epoch(_dt.datetime.combine(d + _dt.timedelta(days=days), _dt.time(0)), sz)
            return s, e
        rec = v.data["recurrence"]
        rtz = T.zone(rec["range"].get("recurrenceTimeZone") or v.stz)
        tod = T.epoch_to_local(v.s, rtz).time()
        s = T.local_to_epoch(_dt.datetime.combine(d, tod), rtz)
        return s, s + (v.e - v.s)

    def instances(self, m, v, cal_idx, ws, we, variant, stub=False):
        """{instance id: rendered bytes} of version v in calendar/window, as calendarView shows it
        (with stub: as calendarView/delta shows it, plain occurrences as stubs)."""
        return {iid: b for _, iid, b in self.instance_list(m, v, cal_idx, ws, we, variant, stub)}

    def instance_list(self, m, v, cal_idx, ws, we, variant, stub=False):
        """[(start epoch, instance id, rendered bytes)] ordered by start."""
        if v is None or v.deleted or v.cal != cal_idx:
            return []
        rec = v.data.get("recurrence")
        if rec is None:
            if not overlaps(v.s, v.e, ws, we):
                return []
            return [(v.s, self.id_of(v, variant[0]), self.render(m, v, variant))]
        if v.span_end < ws and not v.exc:
            return []
        out = []
        rtz = T.zone(rec["range"].get("recurrenceTimeZone") or v.stz)
        until = T.epoch_to_local(we, rtz).date() + _dt.timedelta(days=2)
        exc = v.exc or {}
        for d in T.occurrence_dates(rec, until):
            k = "%04d%02d%02d" % (d.year, d.month, d.day)
            if k in exc:
                continue
            s, e = self.occ_times(v, d)
            if overlaps(s, e, ws, we):
                out.append((s, k))
        for k, x in exc.items():
            if x is not None and overlaps(x.s, x.e, ws, we):
                out.append((x.s, k))
        out.sort()
        base = self.id_of(v, variant[0])
        return [(s, occ_id(base, k), self.render_stub(m, v, variant, k) if stub and exc.get(k) is None
                 else self.render(m, v, variant, k)) for s, k in out]

    # ------------------------------------------------------------ rendering
    def id_of(self, v, imm):
        return imm_id(v.core) if imm else def_id(v.core, v.gen)

    def render(self, m, v, variant, key=None):
        """Graph JSON bytes of a version (or one of its occurrences), cached."""
        ck = (variant, key)
        c = v.cache
        if c is None:
            c = v.cache = {}
        b = c.get(ck)
        if b is None:
            if key is None and id(v.data) in self.templates:
                b = c[ck] = self._render_shared(m, v, variant)
            else:
                b = c[ck] = dumps(self.render_dict(m, v, variant, key)).encode()
        return b

    STUB_FIELDS = ("@odata.etag", "id", "seriesMasterId", "type", "start", "end")

    def render_stub(self, m, v, variant, key):
        """A plain occurrence as calendarView/delta sends it in the live service (GRAPH.md section 11):
        @odata.type, @odata.etag, id, seriesMasterId, type, start, end; nothing else."""
        c = v.cache
        if c is None:
            c = v.cache = {}
        ck = (variant, key, "stub")
        b = c.get(ck)
        if b is None:
            d = self.render_dict(m, v, variant, key)
            out = {"@odata.type": "#microsoft.graph.event"}
            out.update((k, d[k]) for k in self.STUB_FIELDS)
            b = c[ck] = dumps(out).encode()
        return b

    DYNAMIC = ("@odata.etag", "id", "createdDateTime", "lastModifiedDateTime", "changeKey", "transactionId",
               "originalStartTimeZone", "originalEndTimeZone", "iCalUId", "uid", "isAllDay", "type",
               "seriesMasterId", "webLink", "start", "end")

    def _render_shared(self, m, v, variant):
        """Bulk events share one data dict: serialise its part once per mailbox and variant."""
        sk = (id(v.data), variant, m.idx)
        frag = self.static.get(sk)
        full = None
        if frag is None:
            full = self.render_dict(m, v, variant)
            frag = dumps({k: val for k, val in full.items() if k not in self.DYNAMIC})[1:-1].encode()
            self.static[sk] = frag
        imm, want_tz, _ = variant
        iid = self.id_of(v, imm)
        ck = change_key(v.core, v.ck)
        created = T.fmt_offset(v.created)
        ical = ICAL_PREFIX + "00000000" + "0000000000000000" + v.core.encode().hex().upper()[:40]
        dyn = {
            "@odata.etag": 'W/"%s"' % ck, "id": iid, "createdDateTime": created,
            "lastModifiedDateTime": created if v.modified == v.created else T.fmt_offset(v.modified),
            "changeKey": ck, "transactionId": v.txid, "originalStartTimeZone": v.stz, "originalEndTimeZone": v.etz,
            "iCalUId": ical, "uid": ical, "isAllDay": v.allday, "type": "singleInstance", "seriesMasterId": None,
            "webLink": "https://outlook.office365.com/owa/?itemid=%s&exvsurl=1&path=/calendar/item" % iid.replace("=", "%3D"),
            "start": self._time_json(v.sdt, v.stz, v.s, v.allday, want_tz),
            "end": self._time_json(v.edt, v.etz, v.e, v.allday, want_tz),
        }
        return dumps(dyn)[:-1].encode() + b"," + frag + b"}"

    def render_dict(self, m, v, variant, key=None):
        imm, want_tz, text = variant
        base = self.id_of(v, imm)
        data = v.data
        x = None
        if key is None:
            iid = base
            typ = "seriesMaster" if data.get("recurrence") is not None else "singleInstance"
            sdt, stz, edt, etz, s, e = v.sdt, v.stz, v.edt, v.etz, v.s, v.e
            ck = change_key(v.core, v.ck)
            modified = v.modified
            ical = ICAL_PREFIX + "00000000" + "0000000000000000" + v.core.encode().hex().upper()[:40]
        else:
            iid = occ_id(base, key)
            x = v.exc.get(key) if v.exc else None
            if x is None:
                typ = "occurrence"
                d = self.key_date(key)
                s, e = self.occ_times(v, d)
                if v.allday:
                    sdt, edt = self._allday_local(v, key)
                else:
                    sdt = T.fmt_local(T.epoch_to_local(s, T.zone(v.stz)))
                    edt = T.fmt_local(T.epoch_to_local(e, T.zone(v.etz)))
                stz, etz = v.stz, v.etz
                ck = change_key(v.core, v.ck)
                modified = v.modified
            else:
                typ = "exception"
                data = dict(data)
                data.update(x.data)
                sdt, stz, edt, etz, s, e = x.sdt, x.stz, x.edt, x.etz, x.s, x.e
                ck = change_key(v.core, x.ck, key)
                modified = x.modified
            ical = ICAL_PREFIX + "%04X%02X%02X" % (int(key[:4]), int(key[4:6]), int(key[6:8])) + \
                "0000000000000000" + v.core.encode().hex().upper()[:40]
        g = data.get
        body = g("body") or {"contentType": "html", "content": ""}
        btype = str(body.get("contentType") or "html").lower()
        content = body.get("content") or ""
        plain = content if btype == "text" else strip_html(content)
        if text:
            body = {"contentType": "text", "content": plain}
        elif btype == "text":
            body = {"contentType": "html", "content": text_to_html(content)}
        else:
            body = {"contentType": "html", "content": content}
        loc = g("location")
        location = {"displayName": "", "locationType": "default", "uniqueIdType": "unknown",
                    "address": {}, "coordinates": {}}
        if isinstance(loc, dict):
            location.update(loc)
            if location.get("displayName") and "uniqueId" not in loc:
                location["uniqueId"] = location["displayName"]
                location["uniqueIdType"] = "private"
        locations = g("locations")
        if locations is None:
            locations = [location] if location.get("displayName") else []
        allday = v.allday
        start = self._time_json(sdt, stz, s, allday, want_tz)
        end = self._time_json(edt, etz, e, allday, want_tz)
        link_id = iid.replace("=", "%3D").replace("+", "%2B").replace("/", "%2F")
        out = {
            "@odata.etag": 'W/"%s"' % ck,
            "id": iid,
            "createdDateTime": T.fmt_offset(v.created),
            "lastModifiedDateTime": T.fmt_offset(modified),
            "changeKey": ck,
            "categories": g("categories") or [],
            "transactionId": v.txid,
            "originalStartTimeZone": v.stz,
            "originalEndTimeZone": v.etz,
            "iCalUId": ical,
            "uid": ICAL_PREFIX + "00000000" + "0000000000000000" + v.core.encode().hex().upper()[:40],
            "reminderMinutesBeforeStart": g("reminderMinutesBeforeStart", 15),
            "isReminderOn": g("isReminderOn", True),
            "hasAttachments": False,
            "subject": g("subject") or "",
            "bodyPreview": plain[:255],
            "importance": g("importance") or "normal",
            "sensitivity": g("sensitivity") or "normal",
            "isAllDay": allday,
            "isCancelled": g("isCancelled", False),
            "isOrganizer": g("isOrganizer", True),
            "responseRequested": g("responseRequested", True),
            "seriesMasterId": base if key is not None else None,
            "showAs": g("showAs") or "busy",
            "type": typ,
            "webLink": "https://outlook.office365.com/owa/?itemid=%s&exvsurl=1&path=/calendar/item" % link_id,
            "onlineMeetingUrl": None,
            "isOnlineMeeting": g("isOnlineMeeting", False),
            "onlineMeetingProvider": g("onlineMeetingProvider") or "unknown",
            "allowNewTimeProposals": g("allowNewTimeProposals", True),
            "occurrenceId": None,
            "isDraft": g("isDraft", False),
            "hideAttendees": g("hideAttendees", False),
            "responseStatus": g("responseStatus") or {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
            "body": body,
            "start": start,
            "end": end,
            "location": location,
            "locations": locations,
            "recurrence": data.get("recurrence") if key is None else None,
            "attendees": g("attendees") or [],
            "organizer": g("organizer") or {"emailAddress": {"name": m.name, "address": m.upn}},
            "onlineMeeting": g("onlineMeeting"),
        }
        if key is not None:
            d = self.key_date(key)
            os_, _ = self.occ_times(v, d)
            out["originalStart"] = T.fmt_offset(os_, 0)
        for k, val in data.items():
            if k not in out and k not in ("isAllDay", RAW_KEY):
                out[k] = val
        raw = data.get(RAW_KEY)
        if isinstance(raw, dict):
            # a test device (README, "Odd items"): members the rendering sends as given
            out.update(raw)
        return out

    @staticmethod
    def _time_json(local, tzname, instant, allday, want_tz):
        if want_tz is None:
            return {"dateTime": local, "timeZone": tzname}
        if allday:
            # all-day events are dates: midnight in whatever zone is asked for
            return {"dateTime": local[:10] + "T00:00:00.0000000", "timeZone": want_tz}
        return {"dateTime": T.fmt_local(T.epoch_to_local(instant, T.zone(want_tz))), "timeZone": want_tz}

    def removed(self, iid):
        return ('{"@odata.type":"#microsoft.graph.event","id":%s,"@removed":{"reason":"deleted"}}'
                % json.dumps(iid)).encode()

    # ------------------------------------------------------------ delta tokens
    def pack(self, fields):
        raw = ".".join(str(int(f)) for f in fields).encode()
        sig = hmac.new(self.secret, raw, hashlib.sha256).digest()[:9]
        return base64.urlsafe_b64encode(raw + b"~" + sig).decode().rstrip("=")

    def unpack(self, tok):
        try:
            b = base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4))
            if len(b) < 11 or b[-10:-9] != b"~":
                return None
            raw, sig = b[:-10], b[-9:]
            if not hmac.compare_digest(hmac.new(self.secret, raw, hashlib.sha256).digest()[:9], sig):
                return None
            return [int(x) for x in raw.decode().split(".")]
        except Exception:
            return None

    # token fields: kind(0=delta,1=skip), mbx idx, epoch, cal idx, ws ms, we ms, S, U, cursor, sub, flags
    F_EMPTY = 1       # next page is a deliberately empty page
    F_REPLAY = 2      # this round replays the previous one (replay_across_rounds)

    def delta_page(self, m, cal_idx, ws, we, S, U, cursor, sub, flags, variant, pagesize):
        """One page.  Returns (list of item bytes, next token fields or None when done, delta fields)."""
        cfg = self.cfg
        items = []
        if flags & self.F_EMPTY:
            return items, (flags & ~self.F_EMPTY, S, U, cursor, sub)
        ls, le = m.log_seq, m.log_eid
        pos = bisect.bisect_left(ls, cursor) if sub else bisect.bisect_right(ls, cursor)
        n = len(ls)
        scanned = 0
        overshoot = cfg.get("overshoot_pagesize")
        while pos < n and ls[pos] <= U and len(items) < pagesize:
            scanned += 1
            if scanned > 20000:
                break
            seq = ls[pos]
            head = m.items[le[pos]]
            v = version_at(head, U)
            if v is None or v.seq != seq:
                pos += 1
                continue
            known = version_at(head, S) if S else None
            lst = self.entry_items(m, known, v, cal_idx, ws, we, variant)
            if sub:
                lst = lst[sub:]
            room = pagesize - len(items)
            if len(lst) > room and not overshoot:
                items.extend(lst[:room])
                return self._dup(items), (flags, S, U, seq, sub + room)
            items.extend(lst)
            sub = 0
            cursor = seq
            pos += 1
        if pos < n and ls[pos] <= U:
            return self._dup(items), (flags, S, U, cursor, 0)
        return self._dup(items), None

    def _dup(self, items):
        if self.cfg.get("duplicates_in_round") and items:
            items.append(items[0])
        return items

    def entry_items(self, m, known, cur, cal_idx, ws, we, variant):
        if known is None and not cur.deleted and cur.data.get("recurrence") is None:
            # the common case (first round, single event): no diff needed
            if cur.cal != cal_idx or not overlaps(cur.s, cur.e, ws, we):
                return []
            return [self.render(m, cur, variant)]
        stub = not self.cfg.get("full_occurrences")
        cur_map = self.instances(m, cur, cal_idx, ws, we, variant, stub)
        if known is None:
            return list(cur_map.values())
        known_map = self.instances(m, known, cal_idx, ws, we, variant, stub)
        out = [b for iid, b in cur_map.items() if known_map.get(iid) != b]
        out.extend(self.removed(iid) for iid in known_map
                   if iid not in cur_map and not self._cancelled_quietly(cur, iid))
        return out

    def _cancelled_quietly(self, cur, iid):
        """A cancelled occurrence of a live series: the live service sends no @removed for it
        (GRAPH.md section 11), unless removed_for_cancelled is set."""
        if self.cfg.get("removed_for_cancelled") or cur.deleted or not cur.exc:
            return False
        p = parse_event_id(iid)
        if p is None or p[2] is None:
            return False
        k = p[2]
        return k in cur.exc and cur.exc[k] is None

    # ------------------------------------------------------------ ground truth
    def truth(self, m, variant, cal_idx=None):
        out = []
        for v in m.items.values():
            if v.deleted or (cal_idx is not None and v.cal != cal_idx):
                continue
            d = self.render_dict(m, v, variant)
            d["calendar_id"] = m.cal_list[v.cal].id
            out.append(d)
            for k, x in sorted((v.exc or {}).items()):
                if x is None:
                    d.setdefault("cancelledOccurrences", []).append(occ_id(self.id_of(v, variant[0]), k))
                else:
                    dx = self.render_dict(m, v, variant, k)
                    dx["calendar_id"] = m.cal_list[v.cal].id
                    out.append(dx)
        return out

    def view(self, m, cal_idx, ws, we, variant):
        out = []
        for v in m.items.values():
            out.extend(self.instance_list(m, v, cal_idx, ws, we, variant))
        out.sort(key=lambda x: (x[0], x[1]))
        return [b for _, _, b in out]

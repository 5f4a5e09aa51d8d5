"""Mailboxes, calendars and events of the Graph simulator: create, update,
delete and recurrence.  Rendering (simrender) and the delta engine (simdelta)
are mixins of Store; the data model is in simitems.

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
import datetime as _dt

import simtime as T
from simitems import (  # noqa: F401  (re-exported: other modules use S.<name>)
    ACCESS_DENIED, Calendar, Exc, GraphError, Mailbox, NOT_FOUND, READ_ONLY, Version, WRITABLE,
    b62, bad, change_key, check_write_zones, def_id, dumps, imm_id, occ_id, overlaps, parse_event_id)
from simrender import Rendering
from simdelta import DeltaEngine


class Store(Rendering, DeltaEngine):
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
                if txdup == "400":
                    # the live service (GRAPH.md §11, alcionai/corso 2490)
                    raise GraphError(400, "ErrorDuplicateTransactionId",
                                     "The TransactionId specified in the request has already been used to "
                                     "create a different event.")
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

    def bump_change_key(self, m, core, now):
        """Exchange rewrites an item's changeKey with no change of content (GRAPH.md §11)."""
        head = m.items.get(core)
        if head is None or head.deleted:
            return None
        v = head.copy()
        v.ck = m.seq + 1
        v.modified = now
        return self._commit(m, v, "updated")

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


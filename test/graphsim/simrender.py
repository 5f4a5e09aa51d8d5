"""Rendering of event versions as Graph JSON: full items, occurrence stubs and
@removed entries, cached per version and variant.  A mixin of simstore.Store."""

import json

import simtime as T
from simitems import (
    ICAL_PREFIX, RAW_KEY, dumps, imm_id, def_id, occ_id, change_key, strip_html, text_to_html)


class Rendering:
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


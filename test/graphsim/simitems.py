"""The simulator's data model: Graph errors, ids, and the immutable Version
records of mailboxes, calendars and events (no state, no HTTP)."""

import base64
import hashlib
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
                 "seq", "epoch", "txids", "enabled", "app_access")

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
        self.app_access = True     # false: an ApplicationAccessPolicy keeps app-only tokens out

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


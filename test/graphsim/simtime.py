"""Time for the Graph simulator: zone names, Graph date formats, recurrence.

Knows how Outlook names zones (Windows or IANA names, plus the odd custom
names seen from the real service) and how Graph writes instants (7 fraction
digits, no offset for local times, `Z` for DateTimeOffset).  Expands a
recurrence pattern into occurrence dates the way Exchange does.  Pure
functions only: nothing here knows about mailboxes, HTTP or locking.
"""
import calendar
import datetime as _dt
import zoneinfo

from windows_zones import WINDOWS_TO_IANA

UTC = _dt.timezone.utc
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=UTC)

# Names the real service emits for zones it cannot name; the simulator keeps
# the name on the event but computes instants as if the zone were UTC, so a
# client must rely on a UTC-rendered copy (GRAPH.md section 10).
CUSTOM_ZONES = {"tzone://microsoft/custom", "customized time zone"}
UTC_NAMES = {"utc", "tzone://microsoft/utc", "etc/utc", "coordinated universal time", "gmt", "z"}

_zone_cache = {}


class BadZone(ValueError):
    pass


def zone(name):
    """Return a tzinfo for a Windows or IANA zone name; BadZone if unknown."""
    if name is None:
        raise BadZone("missing time zone")
    z = _zone_cache.get(name)
    if z is not None:
        return z
    low = name.strip().lower()
    if low in UTC_NAMES or low in CUSTOM_ZONES:
        z = UTC
    else:
        iana = WINDOWS_TO_IANA.get(name.strip())
        if iana is None:
            for k, v in WINDOWS_TO_IANA.items():
                if k.lower() == low:
                    iana = v
                    break
        try:
            z = zoneinfo.ZoneInfo(iana or name.strip())
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            raise BadZone(name)
    _zone_cache[name] = z
    return z


def is_custom_zone(name):
    return name is not None and name.strip().lower() in CUSTOM_ZONES


def parse_local(s):
    """Graph local dateTime ('2017-04-15T11:00:00.0000000') -> naive datetime."""
    if not isinstance(s, str) or not s:
        raise ValueError("missing dateTime")
    d = _dt.datetime.fromisoformat(s.strip().replace("z", "Z"))
    if d.tzinfo is not None:
        d = d.astimezone(UTC).replace(tzinfo=None)
    return d


def parse_instant(s):
    """ISO 8601 instant for query parameters; no offset means UTC -> epoch seconds."""
    d = _dt.datetime.fromisoformat(s.strip())
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return (d - EPOCH).total_seconds()


def local_to_epoch(naive, tz):
    aware = naive.replace(tzinfo=tz)
    if tz is not UTC:
        # A wall time that does not exist (spring forward) is shifted the way
        # Exchange shifts it: one hour later.
        back = aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
        if back != naive:
            aware = aware.replace(fold=1)
    return (aware - EPOCH).total_seconds()


def epoch_to_local(ts, tz):
    return (EPOCH + _dt.timedelta(seconds=ts)).astimezone(tz).replace(tzinfo=None)


def fmt_local(naive):
    """-> '2017-04-15T11:00:00.0000000' (7 digits, no offset)."""
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06d0" % (
        naive.year, naive.month, naive.day, naive.hour, naive.minute, naive.second, naive.microsecond)


def fmt_offset(ts, digits=7):
    """epoch -> DateTimeOffset in UTC with `Z` and `digits` fraction digits."""
    d = EPOCH + _dt.timedelta(seconds=ts)
    base = "%04d-%02d-%02dT%02d:%02d:%02d" % (d.year, d.month, d.day, d.hour, d.minute, d.second)
    if digits == 0:
        return base + "Z"
    frac = ("%06d0" % d.microsecond)[:digits]
    return base + "." + frac + "Z"


def fmt_date(d):
    return "%04d-%02d-%02d" % (d.year, d.month, d.day)


def parse_date(s):
    return _dt.date.fromisoformat(s[:10])


def now_epoch():
    return (_dt.datetime.now(UTC) - EPOCH).total_seconds()


# ---------------------------------------------------------------- recurrence
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
INDEXES = {"first": 0, "second": 1, "third": 2, "fourth": 3, "last": -1}
PATTERNS = ("daily", "weekly", "absoluteMonthly", "relativeMonthly", "absoluteYearly", "relativeYearly")
RANGES = ("endDate", "noEnd", "numbered")
MAX_OCCURRENCES = 100000


class BadRecurrence(ValueError):
    pass


def _days_of_week(p):
    names = p.get("daysOfWeek") or []
    try:
        return sorted({DAYS.index(str(n).lower()) for n in names})
    except ValueError:
        raise BadRecurrence("daysOfWeek")


def validate(rec):
    """Raise BadRecurrence unless rec is a recurrence Graph would accept."""
    if not isinstance(rec, dict):
        raise BadRecurrence("recurrence")
    p, r = rec.get("pattern"), rec.get("range")
    if not isinstance(p, dict) or not isinstance(r, dict):
        raise BadRecurrence("pattern and range are required")
    t = p.get("type")
    if t not in PATTERNS:
        raise BadRecurrence("pattern.type")
    interval = p.get("interval", 1)
    if not isinstance(interval, int) or interval < 1 or interval > 999:
        raise BadRecurrence("pattern.interval")
    if t in ("weekly", "relativeMonthly", "relativeYearly") and not _days_of_week(p):
        raise BadRecurrence("pattern.daysOfWeek")
    if t in ("absoluteMonthly", "absoluteYearly"):
        dom = p.get("dayOfMonth")
        if not isinstance(dom, int) or not 1 <= dom <= 31:
            raise BadRecurrence("pattern.dayOfMonth")
    if t in ("absoluteYearly", "relativeYearly"):
        m = p.get("month")
        if not isinstance(m, int) or not 1 <= m <= 12:
            raise BadRecurrence("pattern.month")
    if t in ("relativeMonthly", "relativeYearly") and str(p.get("index", "first")).lower() not in INDEXES:
        raise BadRecurrence("pattern.index")
    if p.get("firstDayOfWeek") and str(p["firstDayOfWeek"]).lower() not in DAYS:
        raise BadRecurrence("pattern.firstDayOfWeek")
    rt = r.get("type")
    if rt not in RANGES:
        raise BadRecurrence("range.type")
    try:
        parse_date(r.get("startDate") or "")
    except ValueError:
        raise BadRecurrence("range.startDate")
    if rt == "endDate":
        try:
            if parse_date(r.get("endDate") or "") < parse_date(r["startDate"]):
                raise BadRecurrence("range.endDate")
        except ValueError:
            raise BadRecurrence("range.endDate")
    if rt == "numbered":
        n = r.get("numberOfOccurrences")
        if not isinstance(n, int) or n < 1:
            raise BadRecurrence("range.numberOfOccurrences")


def _nth(year, month, days, index):
    last = calendar.monthrange(year, month)[1]
    cands = [_dt.date(year, month, d) for d in range(1, last + 1)
             if _dt.date(year, month, d).weekday() in days]
    if not cands:
        return None
    i = INDEXES.get(index, 0)
    if i >= len(cands):
        return None
    return cands[i]


def _clamped(year, month, day):
    return _dt.date(year, month, min(day, calendar.monthrange(year, month)[1]))


def _raw_dates(p, start):
    """Candidate dates of the pattern from the range start, in order, unbounded."""
    t = p["type"]
    interval = p.get("interval") or 1
    if t == "daily":
        d = start
        step = _dt.timedelta(days=interval)
        while True:
            yield d
            d += step
    elif t == "weekly":
        days = _days_of_week(p)
        fdw = DAYS.index(str(p.get("firstDayOfWeek") or "sunday").lower())
        week0 = start - _dt.timedelta(days=(start.weekday() - fdw) % 7)
        order = sorted(days, key=lambda wd: (wd - fdw) % 7)
        k = 0
        while True:
            ws = week0 + _dt.timedelta(weeks=k * interval)
            for wd in order:
                d = ws + _dt.timedelta(days=(wd - fdw) % 7)
                if d >= start:
                    yield d
            k += 1
    elif t in ("absoluteMonthly", "relativeMonthly"):
        y, m = start.year, start.month
        days = _days_of_week(p)
        while True:
            if t == "absoluteMonthly":
                d = _clamped(y, m, p["dayOfMonth"])
            else:
                d = _nth(y, m, days, str(p.get("index", "first")).lower())
            if d is not None and d >= start:
                yield d
            m += interval
            while m > 12:
                m -= 12
                y += 1
            if y > 9999:
                return
    else:
        y = start.year
        days = _days_of_week(p)
        while y <= 9999:
            if t == "absoluteYearly":
                d = _clamped(y, p["month"], p["dayOfMonth"])
            else:
                d = _nth(y, p["month"], days, str(p.get("index", "first")).lower())
            if d is not None and d >= start:
                yield d
            y += interval


def occurrence_dates(rec, until):
    """Dates (datetime.date) of a series' occurrences up to `until` inclusive.

    The range's numbered/endDate limits count every occurrence, including
    ones later cancelled or turned into exceptions, as Exchange does.
    """
    p, r = rec["pattern"], rec["range"]
    start = parse_date(r["startDate"])
    rt = r["type"]
    end = parse_date(r["endDate"]) if rt == "endDate" else None
    count = r.get("numberOfOccurrences") if rt == "numbered" else None
    n = 0
    for d in _raw_dates(p, start):
        if d > until or (end is not None and d > end):
            return
        if count is not None and n >= count:
            return
        n += 1
        if n > MAX_OCCURRENCES:
            return
        yield d


def first_last_dates(rec):
    """(first date, last date or None for an endless series)."""
    first = None
    last = None
    r = rec["range"]
    if r["type"] == "noEnd":
        for d in occurrence_dates(rec, _dt.date(9999, 12, 31)):
            return d, None
        return None, None
    limit = parse_date(r["endDate"]) if r["type"] == "endDate" else _dt.date(9999, 12, 31)
    for d in occurrence_dates(rec, limit):
        if first is None:
            first = d
        last = d
    return first, last

"""page_week: the calendar's week view, from m365sync.events().

The transaction sets the viewer's time zone (SET LOCAL TimeZone, through
set_config) next to the acting user, so the window [Monday 00:00, next
Monday 00:00) and every start_at::timestamp are in the viewer's zone, and
all-day events come as dates that never move a day. All-day events get their
own row; timed events sit in their day's column, side by side when they
overlap.
"""
import datetime
import zoneinfo

from db import DbError, one, rows
from web import error_box, esc, page, redirect

HOUR_PX = 48            # style.css draws the hour lines at the same height
EVENTS_SQL = """
SELECT event_id, series_master_id, event_type, subject, location, is_all_day, is_cancelled,
       show_as, sync_state, start_at::timestamp AS start_local, end_at::timestamp AS end_local,
       start_date, end_date
  FROM m365sync.events(%(monday)s::date::timestamptz, (%(monday)s::date + 7)::timestamptz)
 ORDER BY is_all_day DESC, start_at, event_id
"""


def today_in(tz):
    return datetime.datetime.now(zoneinfo.ZoneInfo(tz)).date()


def show(req):
    user = req.user
    if user is None:
        return redirect("/signin")
    tz = user["timezone"]
    today = today_in(tz)
    try:
        day = datetime.date.fromisoformat(req.query.get("week", ""))
    except ValueError:
        day = today
    monday = day - datetime.timedelta(days=day.weekday())
    days = [monday + datetime.timedelta(days=i) for i in range(7)]
    try:
        with req.app.db.as_user(user["id"], tz) as conn:
            connected = one(conn, "SELECT count(*) FROM m365sync.calendars()")
            events = rows(conn, EVENTS_SQL, {"monday": monday})
    except DbError as e:
        return page(req, "Calendar", "<h1>Calendar</h1>" + error_box(e), active="/calendar")

    prev_w, next_w = monday - datetime.timedelta(days=7), monday + datetime.timedelta(days=7)
    title = "%s – %s" % (monday.strftime("%-d %b"), days[-1].strftime("%-d %b %Y"))
    head = ('<div class="cal-bar"><h1>%s</h1><div class="spacer"></div>'
            '<a class="btn" href="/calendar?week=%s" aria-label="Previous week">‹</a>'
            '<a class="btn" href="/calendar">Today</a>'
            '<a class="btn" href="/calendar?week=%s" aria-label="Next week">›</a>'
            '<a class="btn primary" href="/event/new?date=%s">+ New event</a></div>'
            % (esc(title), prev_w.isoformat(), next_w.isoformat(), (today if monday <= today <= days[-1]
                                                                      else monday).isoformat()))
    notice = ""
    if not connected:
        notice = ('<div class="msg warn">Your calendar is not connected to Microsoft 365. '
                  '<a href="/settings">Account Settings → General → Connect to Microsoft</a></div>')
    grid = _week(days, today, [e for e in events if e["is_all_day"]], [e for e in events if not e["is_all_day"]])
    foot = '<p class="muted small">Times in %s. %d events this week.</p>' % (esc(tz), len(events))
    return page(req, "Calendar", head + notice + grid + foot, active="/calendar")


def _classes(e):
    c = ["ev", "sync-" + (e["sync_state"] or "synced")]
    if e["is_cancelled"]:
        c.append("cancelled")
    if e["show_as"] in ("free", "tentative", "oof"):
        c.append("show-" + e["show_as"])
    return " ".join(c)


def _label(e):
    s = esc(e["subject"] or "(no subject)")
    if e["event_type"] in ("occurrence", "exception"):
        s = '<span class="rec" title="Part of a series">↻</span> ' + s
    if e["sync_state"] == "pending":
        s += ' <span class="pending" title="Waiting to be sent to Outlook">•</span>'
    elif e["sync_state"] in ("conflict", "failed"):
        s += ' <span class="warn-dot" title="%s">!</span>' % esc(e["sync_state"])
    return s


def _week(days, today, all_day, timed):
    monday = days[0]
    cols = "".join('<div class="day-head%s"><a href="/event/new?date=%s" title="New event on this day">'
                   '<span class="dow">%s</span> <span class="dom">%d</span></a></div>'
                   % (" today" if d == today else "", d.isoformat(), d.strftime("%a"), d.day) for d in days)
    ad = []
    for e in all_day:
        a = max(0, (e["start_date"] - monday).days) + 1
        b = min(7, (e["end_date"] - monday).days) + 1
        if b <= a:
            b = a + 1
        ad.append('<a class="%s" style="grid-column:%d / %d" href="/event?id=%d" data-event-id="%d">%s</a>'
                  % (_classes(e), a, b, e["event_id"], e["event_id"], _label(e)))
    # Timed events, clipped to each day they touch.
    per_day = [[] for _ in days]
    for e in timed:
        for i, d in enumerate(days):
            d0 = datetime.datetime.combine(d, datetime.time())
            d1 = d0 + datetime.timedelta(days=1)
            s, f = max(e["start_local"], d0), min(e["end_local"], d1)
            if s < f or (s == f == e["start_local"] and d0 <= s < d1):
                per_day[i].append((int((s - d0).total_seconds() // 60), int((f - d0).total_seconds() // 60), e))
    mins = [s for day in per_day for s, _, _ in day]
    ends = [f for day in per_day for _, f, _ in day]
    first = min([8 * 60] + mins) // 60
    last = min(24, max([18 * 60] + ends) // 60 + (1 if max([18 * 60] + ends) % 60 else 0))
    hours = "".join('<div class="hour" style="height:%dpx"><span>%02d:00</span></div>' % (HOUR_PX, h)
                    for h in range(first, last))
    columns = []
    for i, d in enumerate(days):
        blocks = [_block(e, s, f, lane, lanes, first) for s, f, e, lane, lanes in _lanes(per_day[i])]
        columns.append('<div class="day-col%s" style="height:%dpx">%s</div>'
                       % (" today" if d == today else "", (last - first) * HOUR_PX, "".join(blocks)))
    return ('<div class="week"><div class="week-head"><div class="gutter"></div>%s</div>'
            '<div class="allday"><div class="gutter small">all day</div><div class="allday-grid">%s</div></div>'
            '<div class="week-body"><div class="gutter hours">%s</div>%s</div></div>'
            % (cols, "".join(ad), hours, "".join(columns)))


def _block(e, s, f, lane, lanes, first):
    """A timed event in its day column: minutes s..f of the day, in lane of lanes."""
    top = (s - first * 60) * HOUR_PX / 60.0
    height = max(20, (max(f, s + 15) - s) * HOUR_PX / 60.0 - 2)
    size = " compact" if f - s < 30 else " short" if f - s < 60 else ""   # one line, two lines, more
    when = e["start_local"].strftime("%H:%M")
    if size != " compact" and lanes == 1:
        when += "–" + e["end_local"].strftime("%H:%M")
    place = "top:%.1fpx;height:%.1fpx;left:calc(%.3f%% + 2px);width:calc(%.3f%% - 4px)" % (
        top, height, 100.0 * lane / lanes, 100.0 / lanes)
    where = '<span class="l">%s</span>' % esc(e["location"]) if e["location"] and not size else ""
    return ('<a class="%s%s" href="/event?id=%d" data-event-id="%d" style="%s" title="%s">'
            '<span class="t">%s</span> <span class="s">%s</span>%s</a>'
            % (_classes(e), size, e["event_id"], e["event_id"], place, esc(e["subject"]), when, _label(e), where))


def _lanes(segments):
    """Overlapping events share the column: (start, end, event, lane, lanes)."""
    out, cluster, cluster_end = [], [], -1
    for s, f, e in sorted(segments, key=lambda x: (x[0], -x[1])):
        if cluster and s >= cluster_end:
            out.extend(_place(cluster))
            cluster = []
        cluster.append((s, max(f, s + 15), e))
        cluster_end = max(cluster_end if cluster[:-1] else -1, max(f, s + 15))
    if cluster:
        out.extend(_place(cluster))
    return out


def _place(cluster):
    lane_end, placed = [], []
    for s, f, e in cluster:
        for i, end in enumerate(lane_end):
            if end <= s:
                lane_end[i] = f
                placed.append((s, f, e, i))
                break
        else:
            lane_end.append(f)
            placed.append((s, f, e, len(lane_end) - 1))
    n = len(lane_end)
    return [(s, f, e, lane, n) for s, f, e, lane in placed]

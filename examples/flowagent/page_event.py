"""page_event: the event form: create, edit, delete; for a recurring event,
edit this occurrence, edit the whole series, or cancel this occurrence.

m365sync.upsert_event(json, id) takes Graph's field names and merges what
it is given into the stored event, so the form sends only the fields the
user changed (a concurrent Outlook edit of another field survives):
  create                -> upsert_event(json)            (null id)
  edit one event        -> upsert_event(changes, id)
  edit this occurrence  -> upsert_event(changes, occurrence id)  (an exception)
  edit the whole series -> upsert_event(changes, series_master_id)  (when the
                           occurrence has one: a series made in FlowAgent)
  delete / cancel one   -> delete_event(id)   (a master deletes the series)
Times are the viewer's wall clock with the viewer's IANA zone; Graph and
m365sync take the zone name as it is. The push to Outlook happens after the
commit, exactly once.
"""
import datetime
import html.parser
import json

from db import DbError, rows
from page_week import today_in
from web import error_box, esc, flash_err, page, redirect

EVENT_SQL = """
SELECT e.event_id, e.series_master_id, e.event_type, e.subject, e.body, e.body_type, e.location,
       e.is_all_day, e.start_at::timestamp AS start_local, e.end_at::timestamp AS end_local,
       e.start_date, e.end_date, e.data -> 'recurrence' AS recurrence, e.sync_state, e.is_cancelled,
       c.name AS calendar, coalesce(c.can_edit, true) AS can_edit
  FROM m365sync.event(%s) e
  LEFT JOIN m365sync.calendars() c ON c.calendar_id = e.calendar_id
"""
REPEATS = [("", "Does not repeat"), ("daily", "Every day"), ("weekly", "Every week"),
           ("weekdays", "Every weekday (Mon–Fri)")]


class _Text(html.parser.HTMLParser):
    """An HTML body as plain text, for the textarea."""

    def __init__(self):
        html.parser.HTMLParser.__init__(self)
        self.out = []

    def handle_data(self, data):
        self.out.append(data)

    def handle_starttag(self, tag, attrs):
        if tag in ("br", "p", "div", "li"):
            self.out.append("\n")


def body_text(e):
    if not e.get("body"):
        return ""
    if (e.get("body_type") or "").lower() != "html":
        return e["body"]
    p = _Text()
    p.feed(e["body"])
    return "\n".join(line.strip() for line in "".join(p.out).strip().splitlines() if line.strip())


def _values(e):
    """The form's fields for a stored event (end date inclusive for all-day)."""
    if e["is_all_day"]:
        sd, ed = e["start_date"], e["end_date"] - datetime.timedelta(days=1)
        st, et = "09:00", "10:00"
    else:
        sd, ed = e["start_local"].date(), e["end_local"].date()
        st, et = e["start_local"].strftime("%H:%M"), e["end_local"].strftime("%H:%M")
    return {"subject": e["subject"] or "", "location": e["location"] or "", "body": body_text(e),
            "all_day": "1" if e["is_all_day"] else "", "start_date": sd.isoformat(), "start_time": st,
            "end_date": ed.isoformat(), "end_time": et}


def _describe(rec):
    if not rec:
        return ""
    p, r = rec.get("pattern") or {}, rec.get("range") or {}
    what = {"daily": "every day", "weekly": "every week on %s" % ", ".join(p.get("daysOfWeek") or []),
            "absoluteMonthly": "every month", "relativeMonthly": "every month",
            "absoluteYearly": "every year", "relativeYearly": "every year"}.get(p.get("type"), p.get("type"))
    if (p.get("interval") or 1) > 1:
        what += " (interval %s)" % p["interval"]
    until = {"numbered": "%s times" % r.get("numberOfOccurrences"), "endDate": "until %s" % r.get("endDate"),
             "noEnd": "with no end"}.get(r.get("type"), "")
    return "Repeats %s from %s, %s" % (what, r.get("startDate"), until)


def show_new(req):
    user = req.user
    if user is None:
        return redirect("/signin")
    try:
        day = datetime.date.fromisoformat(req.query.get("date", ""))
    except ValueError:
        day = today_in(user["timezone"])
    v = {"subject": "", "location": "", "body": "", "all_day": "", "start_date": day.isoformat(),
         "start_time": "09:00", "end_date": day.isoformat(), "end_time": "10:00"}
    return _form(req, None, v, None)


def show(req):
    user = req.user
    if user is None:
        return redirect("/signin")
    try:
        event_id = int(req.query.get("id", ""))
    except ValueError:
        return redirect("/calendar")
    try:
        with req.app.db.as_user(user["id"], user["timezone"]) as conn:
            found = rows(conn, EVENT_SQL, [event_id])
    except DbError as e:
        return page(req, "Event", '<h1>Event</h1>%s<p><a href="/calendar">Back to the calendar</a></p>'
                    % error_box(e), active="/calendar", status=404 if e.sqlstate == "P0002" else 400)
    e = found[0]
    return _form(req, e, _values(e), None)


def _form(req, e, v, err, status=200):
    tz = req.user["timezone"]
    kind = e["event_type"] if e else "new"
    read_only = e is not None and not e["can_edit"]
    title = {"new": "New event", "singleInstance": "Edit event", "seriesMaster": "Edit the whole series",
             "occurrence": "Edit this occurrence", "exception": "Edit this occurrence"}.get(kind, "Edit event")
    intro = ""
    if kind in ("occurrence", "exception") and e["series_master_id"] is not None:
        intro = ('<p class="note">This is one occurrence of a series. Saving changes only this one. '
                 '<a href="/event?id=%d" id="edit-series">Edit the whole series</a></p>' % e["series_master_id"])
    elif kind in ("occurrence", "exception"):
        # m365sync links occurrences to a master it holds: series made in
        # FlowAgent. Graph's calendarView never lists an Outlook series' master.
        intro = ('<p class="note">This is one occurrence of a series made in Outlook. Saving changes only this '
                 'one; change the whole series in Outlook.</p>')
    elif kind == "seriesMaster":
        intro = '<p class="note">%s. Saving changes every occurrence.</p>' % esc(_describe(e["recurrence"]))
    if e is not None and e["sync_state"] not in (None, "synced"):
        intro += '<p class="muted small">Sync state: %s</p>' % esc(e["sync_state"])
    if read_only:
        intro += '<p class="msg warn">This calendar (%s) is read-only.</p>' % esc(e["calendar"])
    # What the event was when the form was drawn: save() sends only the differences.
    orig = "".join('<input type="hidden" name="orig_%s" value="%s">' % (k, esc(val))
                   for k, val in _values(e).items()) if e else ""
    repeat = ""
    if e is None:
        repeat = ('<div class="row"><label>Repeat<select name="repeat">%s</select></label>'
                  '<label class="time">Times<input type="number" name="count" min="2" max="99" value="%s"></label>'
                  '</div>'
                  % ("".join('<option value="%s"%s>%s</option>' % (k, " selected" if v.get("repeat") == k else "",
                                                                  esc(label)) for k, label in REPEATS),
                     esc(v.get("count") or "5")))
    save = {"new": "Create", "seriesMaster": "Save the series", "occurrence": "Save this occurrence",
            "exception": "Save this occurrence"}.get(kind, "Save")
    buttons = '<button class="primary" type="submit" name="do" value="save">%s</button>' % save
    if e is not None:
        delete = {"seriesMaster": "Delete the series", "occurrence": "Cancel this occurrence",
                  "exception": "Cancel this occurrence"}.get(kind, "Delete")
        buttons += ('<button class="danger" type="submit" name="do" value="delete" formnovalidate '
                    'onclick="return confirm(\'%s?\')">%s</button>' % (delete, delete))
    disabled = " disabled" if read_only else ""
    body = ('<h1>%s</h1>%s%s<form method="post" action="/event/save" class="card event-form">'
            '<input type="hidden" name="id" value="%s">%s<fieldset%s>'
            '<label>Title<input type="text" name="subject" value="%s" maxlength="255" required autofocus></label>'
            '<label class="check"><input type="checkbox" name="all_day" value="1"%s> All day</label>'
            '<div class="row"><label>Starts<input type="date" name="start_date" value="%s" required></label>'
            '<label class="time">at<input type="time" name="start_time" value="%s"></label></div>'
            '<div class="row"><label>Ends<input type="date" name="end_date" value="%s" required></label>'
            '<label class="time">at<input type="time" name="end_time" value="%s"></label></div>'
            '<p class="muted small">Times in %s.</p>%s'
            '<label>Location<input type="text" name="location" value="%s"></label>'
            '<label>Notes<textarea name="body" rows="4">%s</textarea></label></fieldset>'
            '<div class="buttons">%s<a class="btn" href="/calendar?week=%s">Back</a></div></form>'
            % (esc(title), error_box(err) if err else "", intro, esc(e["event_id"]) if e else "", orig, disabled,
               esc(v["subject"]), " checked" if v["all_day"] else "", esc(v["start_date"]), esc(v["start_time"]),
               esc(v["end_date"]), esc(v["end_time"]), esc(tz), repeat, esc(v["location"]), esc(v["body"]),
               "" if read_only else buttons, esc(v["start_date"])))
    return page(req, title, body, active="/calendar", status=status)


class FormError(Exception):
    pass


def _times(f, tz):
    """start, end and isAllDay in Graph's shape, from the form."""
    try:
        sd = datetime.date.fromisoformat(f.get("start_date", ""))
        ed = datetime.date.fromisoformat(f.get("end_date", ""))
    except ValueError:
        raise FormError("Enter the start and end dates as YYYY-MM-DD.")
    if f.get("all_day"):
        # all-day: midnight to midnight in the viewer's zone, end exclusive
        s, e = sd.isoformat() + "T00:00:00", (ed + datetime.timedelta(days=1)).isoformat() + "T00:00:00"
    else:
        try:
            st = datetime.time.fromisoformat(f.get("start_time", ""))
            et = datetime.time.fromisoformat(f.get("end_time", ""))
        except ValueError:
            raise FormError("Enter the start and end times as HH:MM.")
        s = datetime.datetime.combine(sd, st).isoformat(timespec="seconds")
        e = datetime.datetime.combine(ed, et).isoformat(timespec="seconds")
    return {"isAllDay": bool(f.get("all_day")), "start": {"dateTime": s, "timeZone": tz},
            "end": {"dateTime": e, "timeZone": tz}}


def _recurrence(f):
    kind = f.get("repeat") or ""
    if not kind:
        return None
    try:
        count = int(f.get("count") or "0")
    except ValueError:
        count = 0
    if not 2 <= count <= 99:
        raise FormError("Repeat between 2 and 99 times.")
    start = datetime.date.fromisoformat(f["start_date"])
    if kind == "daily":
        pattern = {"type": "daily", "interval": 1}
    elif kind == "weekly":
        pattern = {"type": "weekly", "interval": 1, "daysOfWeek": [start.strftime("%A").lower()],
                   "firstDayOfWeek": "monday"}
    else:
        pattern = {"type": "weekly", "interval": 1, "firstDayOfWeek": "monday",
                   "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"]}
    return {"pattern": pattern, "range": {"type": "numbered", "startDate": start.isoformat(),
                                          "numberOfOccurrences": count}}


def _changes(f, tz):
    """Only what the user changed, against the orig_* fields the form carried."""
    out = {}
    if f.get("subject", "") != f.get("orig_subject", ""):
        out["subject"] = f.get("subject", "")
    if f.get("location", "") != f.get("orig_location", ""):
        out["location"] = {"displayName": f.get("location", "")}
    if f.get("body", "").replace("\r\n", "\n") != f.get("orig_body", "").replace("\r\n", "\n"):
        out["body"] = {"contentType": "text", "content": f.get("body", "")}
    time_keys = ["all_day", "start_date", "end_date"] + ([] if f.get("all_day") else ["start_time", "end_time"])
    if any(f.get(k, "") != f.get("orig_" + k, "") for k in time_keys):
        out.update(_times(f, tz))
    return out


def save(req):
    user = req.user
    if user is None:
        return redirect("/signin")
    f, tz = req.form, user["timezone"]
    event_id = int(f["id"]) if f.get("id", "").isdigit() else None
    if f.get("do") == "delete" and event_id is not None:
        return delete(req, event_id)
    values = {k: f.get(k, "") for k in ("subject", "location", "body", "all_day", "start_date", "start_time",
                                         "end_date", "end_time", "repeat", "count")}
    try:
        if event_id is None:
            ev = {"subject": f.get("subject", ""), "body": {"contentType": "text", "content": f.get("body", "")}}
            if f.get("location"):
                ev["location"] = {"displayName": f["location"]}
            ev.update(_times(f, tz))
            rec = _recurrence(f)
            if rec:
                ev["recurrence"] = rec
        else:
            ev = _changes(f, tz)
            if not ev:
                req.flash("info", "Nothing changed.")
                return redirect("/calendar?week=%s" % f.get("start_date", ""))
        with req.app.db.as_user(user["id"], tz) as conn:
            conn.execute("SELECT m365sync.upsert_event(%s::jsonb, %s)", [json.dumps(ev), event_id])
    except (FormError, DbError) as err:
        e = None
        if event_id is not None:
            try:
                with req.app.db.as_user(user["id"], tz) as conn:
                    e = rows(conn, EVENT_SQL, [event_id])[0]
            except DbError:
                pass
        if isinstance(err, FormError):
            err = DbError.of("Check the form", str(err))
        return _form(req, e, values, err, status=400)
    req.flash("ok", "Saved. FlowAgent sends it to Outlook right after this commit.")
    return redirect("/calendar?week=%s" % f.get("start_date", ""))


def delete(req, event_id):
    user = req.user
    try:
        with req.app.db.as_user(user["id"], user["timezone"]) as conn:
            kind = rows(conn, "SELECT event_type, start_at::date AS day FROM m365sync.event(%s)", [event_id])[0]
            conn.execute("SELECT m365sync.delete_event(%s)", [event_id])
    except DbError as err:
        flash_err(req, err)
        return redirect("/event?id=%d" % event_id)
    req.flash("ok", {"seriesMaster": "The series was deleted.", "occurrence": "This occurrence was cancelled.",
                     "exception": "This occurrence was cancelled."}.get(kind["event_type"], "The event was deleted."))
    return redirect("/calendar?week=%s" % (kind["day"] or ""))

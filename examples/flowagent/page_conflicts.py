"""page_conflicts: events that FlowAgent and Outlook both changed before a
sync. m365sync.conflicts() lists them with the policy that settled each one,
which side was kept and the losing version; the buttons call
m365sync.resolve_conflict(event_id, 'local' | 'remote' | 'kept').
"""
from db import DbError, rows, savepoint
from web import error_box, esc, flash_err, page, redirect

CONFLICTS_SQL = """
SELECT c.event_id, to_char(c.detected_at, 'YYYY-MM-DD HH24:MI') AS detected, c.policy, c.kept,
       c.lost ->> 'subject' AS lost_subject,
       -- the losing version is Graph JSON; m365sync reads Graph in UTC, shown here in the viewer's zone
       CASE WHEN c.lost #>> '{start,timeZone}' = 'UTC'
            THEN to_char((c.lost #>> '{start,dateTime}')::timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')
            ELSE replace(left(c.lost #>> '{start,dateTime}', 16), 'T', ' ') || ' ' || (c.lost #>> '{start,timeZone}')
       END AS lost_start,
       c.lost #>> '{location,displayName}' AS lost_location
  FROM m365sync.conflicts() c
 ORDER BY c.detected_at
"""
EVENT_SQL = """
SELECT subject, location, to_char(start_at, 'YYYY-MM-DD HH24:MI') AS start_local, is_all_day, start_date
  FROM m365sync.event(%s)
"""
SIDE = {"local": "FlowAgent's", "remote": "Outlook's"}


def show(req):
    user = req.user
    if user is None:
        return redirect("/signin")
    try:
        with req.app.db.as_user(user["id"], user["timezone"]) as conn:
            conflicts = rows(conn, CONFLICTS_SQL)
            for c in conflicts:
                try:
                    with savepoint(conn):          # the event may be gone
                        c["now"] = rows(conn, EVENT_SQL, [c["event_id"]])[0]
                except DbError:
                    c["now"] = None
    except DbError as e:
        return page(req, "Conflicts", "<h1>Conflicts</h1>" + error_box(e), active="/conflicts")
    if not conflicts:
        body = ('<h1>Conflicts</h1><section class="card"><p>No conflicts. When FlowAgent and Outlook change the '
                'same event before they sync, it shows up here with both versions.</p></section>')
        return page(req, "Conflicts", body, active="/conflicts")
    cards = []
    for c in conflicts:
        now = c["now"] or {}
        kept, lost = SIDE.get(c["kept"], c["kept"]), SIDE.get({"local": "remote", "remote": "local"}.get(c["kept"]),
                                                              "the other")
        cards.append(
            '<section class="card conflict" data-event-id="%d"><h2>%s</h2>'
            '<p class="muted small">Detected %s · policy %s kept %s version.</p>'
            '<div class="versions"><div><h3>Now (%s)</h3><p>%s</p><p class="muted">%s %s</p></div>'
            '<div><h3>Set aside (%s)</h3><p>%s</p><p class="muted">%s %s</p></div></div>'
            '<form method="post" action="/conflicts/resolve"><input type="hidden" name="event_id" value="%d">'
            '<button type="submit" name="keep" value="remote">Keep Outlook\'s version</button>'
            '<button type="submit" name="keep" value="local">Keep FlowAgent\'s version</button>'
            '<button class="primary" type="submit" name="keep" value="kept">Keep it as it is</button></form></section>'
            % (c["event_id"], esc(now.get("subject") or c["lost_subject"] or "(no subject)"), esc(c["detected"]),
               esc(c["policy"]), esc(kept), esc(kept), esc(now.get("subject")), esc(now.get("start_local")),
               esc(now.get("location") or ""), esc(lost), esc(c["lost_subject"]), esc(c["lost_start"]),
               esc(c["lost_location"] or ""), c["event_id"]))
    return page(req, "Conflicts", "<h1>Conflicts</h1>" + "".join(cards), active="/conflicts")


def resolve(req):
    user = req.user
    if user is None:
        return redirect("/signin")
    try:
        event_id = int(req.form.get("event_id", ""))
    except ValueError:
        return redirect("/conflicts")
    try:
        with req.app.db.as_user(user["id"], user["timezone"]) as conn:
            conn.execute("SELECT m365sync.resolve_conflict(%s, %s)", [event_id, req.form.get("keep", "")])
    except DbError as e:
        flash_err(req, e)
        return redirect("/conflicts")
    req.flash("ok", "Resolved. The version you chose is sent to Outlook if it differs.")
    return redirect("/conflicts")

"""page_settings: Account Settings -> General. "Connect to Microsoft" and
"Disconnect", with the account's state.

As the user (m365sync_app): m365sync.calendars() says whether the user is
connected and lists the calendars; connect_url() starts the sign-in;
disconnect() stops syncing and erases the user's synced data.

The status line (status, last sync, webhook) comes from the
m365sync.account_status view, which only m365sync_admin may read: the
backend reads that one row server-side with its operator role, filtered to
the signed-in user, and shows only ids, states and times (the view holds no
content and no addresses). An app without an operator role can show
"connected" from calendars() alone.
"""
import urllib.parse

from db import DbError, rows
from web import error_box, esc, flash_err, page, redirect


def _status(req, user):
    with req.app.db.as_admin(tz=user["timezone"]) as conn:
        found = rows(conn, "SELECT status, mode, to_char(last_sync_at, 'YYYY-MM-DD HH24:MI:SS') AS last_sync, "
                           "events, pending_pushes, conflicts, subscription, last_error "
                           "FROM m365sync.account_status WHERE flowagent_user = %s", [user["id"]])
    return found[0] if found else None


def show(req):
    user = req.user
    if user is None:
        return redirect("/signin")
    errors = []
    calendars, status = [], None
    try:
        with req.app.db.as_user(user["id"], user["timezone"]) as conn:
            calendars = rows(conn, "SELECT name, is_default, can_edit, sync_enabled FROM m365sync.calendars() "
                                   "ORDER BY is_default DESC, name")
    except DbError as e:
        errors.append(error_box(e))
    try:
        status = _status(req, user)
    except DbError as e:
        errors.append(error_box(e))
    connected = status is not None or bool(calendars)
    if connected:
        st = (status or {}).get("status", "connected")
        badge = "ok" if st == "connected" else "bad"
        facts = ""
        if status:
            facts = ('<dl class="facts"><dt>Last sync</dt><dd>%s</dd><dt>Events</dt><dd>%s</dd>'
                     '<dt>Waiting to send</dt><dd>%s</dd><dt>Conflicts</dt><dd>%s</dd>'
                     '<dt>Change notifications</dt><dd>%s</dd>%s</dl>'
                     % (esc(status["last_sync"] or "not yet"), esc(status["events"]), esc(status["pending_pushes"]),
                        esc(status["conflicts"]), esc(status["subscription"]),
                        '<dt>Last error</dt><dd>%s</dd>' % esc(status["last_error"]) if status["last_error"] else ""))
        cals = "".join('<li>%s%s%s</li>' % (esc(c["name"]), " <span class=\"badge\">default</span>" if c["is_default"]
                                            else "", "" if c["sync_enabled"] else
                                            " <span class=\"muted\">(not synced)</span>") for c in calendars)
        ms = ('<p class="state"><span class="badge %s" id="ms-state">%s</span> Your Outlook calendar syncs with '
              'FlowAgent both ways.</p>%s<h3>Calendars</h3><ul class="cals">%s</ul>'
              '%s<form method="post" action="/settings/disconnect" onsubmit="return confirm(\'Disconnect and erase '
              'your synced events from FlowAgent?\')"><button class="danger" type="submit">Disconnect</button>'
              '</form>' % (badge, esc(st.replace("_", " ")), facts, cals,
                           "" if st == "connected" else
                           '<form method="post" action="/settings/connect"><button class="primary" type="submit">'
                           'Sign in to Microsoft again</button></form>'))
    else:
        ms = ('<p class="state"><span class="badge" id="ms-state">not connected</span></p>'
              '<p>Connect your Microsoft 365 account to see your Outlook calendar in FlowAgent and to send '
              'FlowAgent\'s events to Outlook. You sign in at Microsoft; FlowAgent never sees your password.</p>'
              '<form method="post" action="/settings/connect"><button class="primary ms" type="submit">'
              '<span class="ms-logo"><i></i><i></i><i></i><i></i></span>Connect to Microsoft</button></form>')
    body = ('<h1>Account Settings</h1><div class="tabs"><span class="active">General</span><span>Notifications</span>'
            '<span>Billing</span></div>%s'
            '<section class="card"><h2>Profile</h2><dl class="facts"><dt>Name</dt><dd>%s</dd><dt>Time zone</dt>'
            '<dd>%s</dd></dl></section>'
            '<section class="card" id="microsoft"><h2>Microsoft 365 calendar</h2>%s</section>'
            % ("".join(errors), esc(user["name"]), esc(user["timezone"]), ms))
    return page(req, "Account Settings", body, active="/settings")


def connect(req):
    user = req.user
    if user is None:
        return redirect("/signin")
    try:
        with req.app.db.as_user(user["id"]) as conn:
            url = conn.execute("SELECT m365sync.connect_url()").fetchone()[0]
    except DbError as e:
        flash_err(req, e)
        return redirect("/settings")
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query)).get("state")
    req.session["oauth"] = {"flow": "connect", "state": state}
    return redirect(url)


def disconnect(req):
    user = req.user
    if user is None:
        return redirect("/signin")
    try:
        with req.app.db.as_user(user["id"]) as conn:
            conn.execute("SELECT m365sync.disconnect()")
    except DbError as e:
        flash_err(req, e)
        return redirect("/settings")
    req.flash("ok", "Disconnected. FlowAgent stopped syncing and erased your synced events.")
    return redirect("/settings")

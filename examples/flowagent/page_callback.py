"""page_callback: the OAuth redirect URI (m365sync.configure's redirect_uri).

Microsoft sends the browser back here after the user's sign-in or the
admin's consent, with the parameters of the identity platform:
  user:   ?code=..&state=..                  -> m365sync.connect_complete(state, code)
          ?error=access_denied&..&state=..   -> "connection cancelled", nothing written
  admin:  ?admin_consent=True&tenant=..&state=..  or  ?error=..&state=..
                                             -> m365sync.admin_consent_complete(...)
The session says which flow this browser started and with which state; a
redirect that does not match it is refused before any database call. Every
outcome ends in a redirect to a page, so a reload never replays the code.
"""
import datetime

from db import DbError
from web import flash_err, page, redirect


def callback(req):
    q = req.query
    pending = (req.session or {}).pop("oauth", None)
    if req.user is None or pending is None or not q.get("state") or q.get("state") != pending.get("state"):
        body = ('<section class="card narrow"><h1>Sign-in answer not expected</h1><p>This answer from Microsoft '
                'does not belong to a sign-in started in this browser session, so FlowAgent ignored it.</p>'
                '<p><a href="/settings">Back to Account Settings</a></p></section>')
        return page(req, "Microsoft sign-in", body, status=400)
    if pending["flow"] == "admin":
        return _admin(req, q, pending)
    return _connect(req, q)


def _connect(req, q):
    user = req.user
    if q.get("error"):
        if q["error"] == "access_denied":
            req.flash("warn", "Connection cancelled: you cancelled at Microsoft, so FlowAgent is not connected "
                              "to your calendar. Nothing was saved; connect again whenever you like.")
        else:
            req.flash("error", "Microsoft did not connect your account (%s): %s"
                      % (q["error"], q.get("error_description", "").split("\r\n")[0]))
        return redirect("/settings")
    try:
        with req.app.db.as_user(user["id"], user["timezone"]) as conn:
            conn.execute("SELECT m365sync.connect_complete(%s, %s)", [q.get("state"), q.get("code")])
    except DbError as e:
        flash_err(req, e)
        return redirect("/settings")
    req.flash("ok", "Connected to Microsoft 365. Your Outlook calendar is syncing.")
    return redirect("/settings")


def _admin(req, q, pending):
    granted = q.get("admin_consent") == "True" and not q.get("error")
    try:
        with req.app.db.as_admin() as conn:
            conn.execute("SELECT m365sync.admin_consent_complete(%s, %s, %s, %s)",
                         [q["state"], q.get("tenant") or None, granted, q.get("error") or None])
    except DbError as e:
        flash_err(req, e)
        return redirect("/admin")
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    req.app.org_consent[pending["tenant"]] = {"granted": granted, "when": when, "error": q.get("error")}
    if granted:
        req.flash("ok", "Approved: everyone in %s can now connect their Microsoft 365 calendar." % pending["tenant"])
    else:
        req.flash("warn", "Not approved (%s): %s" % (q.get("error") or "no consent",
                                                     q.get("error_description", "").split("\r\n")[0]))
    return redirect("/admin")

"""page_admin: the organisation admin's page. "Approve for my organisation"
sends the admin to Microsoft's admin consent (m365sync.admin_consent_url);
the answer comes back to the OAuth callback (page_callback.py), which hands
it to m365sync.admin_consent_complete. Below it, every account's state from
the m365sync.account_status view (no content, no addresses).

Runs as the operator's role (m365sync_admin), server-side only.
"""
import urllib.parse

from db import DbError, rows
from web import error_box, esc, page, redirect

STATUS_COLUMNS = [("flowagent_user", "FlowAgent user"), ("mode", "mode"), ("status", "status"),
                  ("last_sync_at", "last sync"), ("events", "events"), ("pending_pushes", "to push"),
                  ("conflicts", "conflicts"), ("subscription", "webhook"), ("last_error", "last error")]


def _admin(req):
    user = req.user
    return user if user and user.get("admin") else None


def show(req):
    user = _admin(req)
    if user is None:
        return page(req, "Admin", '<div class="msg error">Only an organisation admin may open this page.</div>',
                    status=403)
    tenant = user["tenant"]
    outcome = req.app.org_consent.get(tenant)
    if outcome is None:
        state = '<span class="badge">not approved yet</span>'
    elif outcome["granted"]:
        state = '<span class="badge ok">approved</span> <span class="muted">%s</span>' % esc(outcome["when"])
    else:
        state = '<span class="badge bad">not approved</span> <span class="muted">%s</span>' % esc(outcome["error"])
    body = ['<h1>Admin</h1><section class="card"><h2>Microsoft 365 for %s</h2>'
            '<p>Approve FlowAgent once for everyone in your organisation: Microsoft then lets each user '
            'connect their calendar without asking them for permissions.</p>'
            '<p>Organisation consent: %s</p>'
            '<form method="post" action="/admin/consent"><button class="primary" type="submit">'
            'Approve for my organisation</button></form></section>' % (esc(tenant), state)]
    try:
        with req.app.db.as_admin(tz=user["timezone"]) as conn:
            accounts = rows(conn, "SELECT flowagent_user, mode, status, "
                                  "to_char(last_sync_at, 'YYYY-MM-DD HH24:MI:SS') AS last_sync_at, events, "
                                  "pending_pushes, conflicts, subscription, last_error "
                                  "FROM m365sync.account_status ORDER BY flowagent_user")
    except DbError as e:
        body.append(error_box(e))
        accounts = []
    head = "".join("<th>%s</th>" % esc(label) for _, label in STATUS_COLUMNS)
    trs = "".join("<tr>%s</tr>" % "".join("<td>%s</td>" % esc(a[k]) for k, _ in STATUS_COLUMNS) for a in accounts)
    body.append('<section class="card"><h2>Connected accounts</h2><p class="muted">From the '
                '<code>m365sync.account_status</code> view.</p><table class="grid"><thead><tr>%s</tr></thead>'
                '<tbody>%s</tbody></table></section>'
                % (head, trs or '<tr><td colspan="9" class="muted">No account is connected yet.</td></tr>'))
    return page(req, "Admin", "".join(body), active="/admin")


def start_consent(req):
    user = _admin(req)
    if user is None:
        return redirect("/signin")
    try:
        with req.app.db.as_admin() as conn:
            url = conn.execute("SELECT m365sync.admin_consent_url(%s)", [user["tenant"]]).fetchone()[0]
    except DbError as e:
        return page(req, "Admin", error_box(e), active="/admin", status=400)
    # Remember which flow this browser started, and its state, for the callback.
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query)).get("state")
    req.session["oauth"] = {"flow": "admin", "state": state, "tenant": user["tenant"]}
    return redirect(url)

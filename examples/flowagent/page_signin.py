"""page_signin: FlowAgent's sign-in, faked: pick a user from users.json.

A real FlowAgent has its own login; m365sync only needs to know, in each
transaction, which FlowAgent user the backend acts for. Here that is the
user id kept in the cookie session.
"""
from web import esc, page, redirect


def show(req):
    users = sorted(req.app.users.values(), key=lambda u: (u.get("admin", False), u["name"]))
    rows = "".join(
        '<button class="user" type="submit" name="user" value="%s"><span class="avatar">%s</span>'
        '<span><b>%s</b><small>%s%s · %s</small></span></button>'
        % (esc(u["id"]), esc(u["name"][:1]), esc(u["name"]), esc(u.get("title", "")),
           " (organisation admin)" if u.get("admin") else "", esc(u["timezone"]))
        for u in users)
    body = ('<section class="card narrow"><h1>Sign in to FlowAgent</h1>'
            '<p class="muted">A stand-in for FlowAgent\'s own login: pick who you are.</p>'
            '<form method="post" action="/signin" class="users">%s</form></section>' % rows)
    return page(req, "Sign in", body)


def submit(req):
    user = req.app.users.get(req.form.get("user", ""))
    if user is None:
        return redirect("/signin")
    if req.sid:
        req.app.sessions.drop(req.sid)
    sid = req.app.sessions.new({"user": user["id"]})
    r = redirect("/admin" if user.get("admin") else "/calendar")
    r.headers.append(req.app.sessions.cookie(sid))
    return r


def signout(req):
    if req.sid:
        req.app.sessions.drop(req.sid)
    r = redirect("/signin")
    r.headers.append(req.app.sessions.cookie("", clear=True))
    return r

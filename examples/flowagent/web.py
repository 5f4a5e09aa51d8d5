"""web: the small web layer of the FlowAgent example (standard library only):
requests and responses, the cookie session, flash messages, HTML escaping and
the page layout. Pages are plain functions request -> Response, in page_*.py.

Every value that reaches HTML goes through esc(). Sessions live in memory
(a real FlowAgent keeps them in its own store); the cookie holds only a
random id, HttpOnly and SameSite=Lax, which also keeps other sites from
posting the forms.
"""
import html
import http.cookies
import secrets
import threading
import urllib.parse

import db as DB


def esc(value):
    return html.escape("" if value is None else str(value), quote=True)


class Response:
    def __init__(self, status=200, body=b"", ctype="text/html; charset=utf-8", headers=None):
        self.status = status
        self.body = body.encode("utf-8") if isinstance(body, str) else body
        self.headers = [("Content-Type", ctype)] + list(headers or [])


def redirect(location):
    # 303: the browser follows with GET, so a reload never posts a form again
    return Response(303, b"", headers=[("Location", location)])


# ---- sessions ---------------------------------------------------------------

class Sessions:
    COOKIE = "flowagent_session"

    def __init__(self):
        self.data = {}
        self.lock = threading.Lock()

    def load(self, cookie_header):
        c = http.cookies.SimpleCookie()
        try:
            c.load(cookie_header or "")
        except http.cookies.CookieError:
            pass
        sid = c[self.COOKIE].value if self.COOKIE in c else None
        with self.lock:
            if sid in self.data:
                return sid, self.data[sid]
        return None, None

    def new(self, content):
        sid = secrets.token_urlsafe(32)
        with self.lock:
            self.data[sid] = content
        return sid

    def drop(self, sid):
        with self.lock:
            self.data.pop(sid, None)

    def cookie(self, sid, clear=False):
        return ("Set-Cookie", "%s=%s; Path=/; HttpOnly; SameSite=Lax%s"
                % (self.COOKIE, "" if clear else sid, "; Max-Age=0" if clear else ""))


class Request:
    def __init__(self, method, target, headers, body, app):
        self.method = method
        url = urllib.parse.urlsplit(target)
        self.path = url.path
        self.query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        self.headers = headers
        self.body = body
        self.form = {}
        if method == "POST" and "x-www-form-urlencoded" in (headers.get("Content-Type") or ""):
            self.form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        self.app = app
        self.sid, self.session = app.sessions.load(headers.get("Cookie"))

    @property
    def user(self):
        """The signed-in FlowAgent user (a dict from users.json), or None."""
        return self.app.users.get(self.session["user"]) if self.session else None

    def flash(self, kind, text):
        if self.session is not None:
            self.session.setdefault("flash", []).append((kind, text))

    def take_flashes(self):
        return self.session.pop("flash", []) if self.session else []


# ---- HTML ------------------------------------------------------------------

def error_box(err):
    """A DbError as a readable message: headline, message, detail, hint, SQLSTATE."""
    parts = ['<div class="msg error" role="alert"><b>%s.</b> %s' % (esc(err.headline), esc(err.message))]
    if err.detail:
        parts.append('<div class="small">%s</div>' % esc(err.detail))
    if err.hint:
        parts.append('<div class="small">%s</div>' % esc(err.hint))
    if err.sqlstate:
        parts.append('<div class="code">SQLSTATE %s</div>' % esc(err.sqlstate))
    parts.append("</div>")
    return "".join(parts)


def flash_err(req, err):
    """Keep a DbError for the next page (after a redirect)."""
    req.flash("dberror", {"headline": err.headline, "message": err.message, "detail": err.detail,
                          "hint": err.hint, "sqlstate": err.sqlstate})


def _flash_html(kind, text):
    if kind == "dberror":
        return error_box(DB.DbError.of(**text))
    return '<div class="msg %s" role="status">%s</div>' % (esc(kind), esc(text))


NAV = [("/calendar", "Calendar"), ("/conflicts", "Conflicts"), ("/settings", "Account Settings")]


def page(req, title, body, active=None, status=200):
    user = req.user
    nav = ""
    if user:
        links = NAV + ([("/admin", "Admin")] if user.get("admin") else [])
        nav = "".join('<a href="%s"%s>%s</a>' % (href, ' class="active"' if href == active else "", esc(label))
                      for href, label in links)
        nav += ('<span class="who">%s</span><form method="post" action="/signout" class="inline">'
                '<button class="link" type="submit">Sign out</button></form>' % esc(user["name"]))
    flashes = "".join(_flash_html(k, t) for k, t in req.take_flashes())
    doc = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>%s · FlowAgent</title>'
           '<meta name="viewport" content="width=device-width, initial-scale=1">'
           '<link rel="stylesheet" href="/style.css"></head><body>'
           '<header class="top"><a class="brand" href="/"><span class="mark">F</span>FlowAgent</a>'
           '<nav>%s</nav></header><main>%s%s</main></body></html>' % (esc(title), nav, flashes, body))
    return Response(status, doc)

"""webhooks: the two URLs m365sync.notification_url and lifecycle_url name,
served over HTTPS (Graph posts only to https). Every POST goes to
m365sync.handle_notification as the app role, with no user: the function
checks each item's clientState, marks accounts due and wakes the worker; it
never makes an HTTP request, so the answer is quick, as Graph wants.

  ?validationToken=T        -> handle_notification(NULL, T) -> 200 text/plain T
  a JSON body               -> handle_notification(body)    -> 202
  42501 (bad clientState) -> 403, 22P02/22023 (malformed) -> 400, else 500
"""
from db import DbError
from web import Response


def notify(req):
    token = req.query.get("validationToken")
    body = None if token is not None else req.body.decode("utf-8", "replace")
    try:
        with req.app.db.as_app() as conn:
            answer = conn.execute("SELECT m365sync.handle_notification(%s, %s)", [body, token]).fetchone()[0]
    except DbError as e:
        status = 403 if e.sqlstate == "42501" else 400 if e.sqlstate in ("22P02", "22023") else 500
        return Response(status, b"", ctype="text/plain; charset=utf-8")
    if token is not None:
        return Response(200, answer or "", ctype="text/plain; charset=utf-8")
    return Response(202, b"", ctype="text/plain; charset=utf-8")

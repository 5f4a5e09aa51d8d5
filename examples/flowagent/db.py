"""db: every database call of the FlowAgent example goes through here.

Three ways in, one per kind of caller, each a transaction:

  as_user(user, tz)  the FlowAgent backend's role (member of m365sync_app),
                     acting for one FlowAgent user: set_config(
                     'm365sync.flowagent_user', user, true) is the first
                     statement of every transaction, so the identity counts
                     for that transaction only and a pooled connection never
                     carries one user's identity into the next request. The
                     viewer's time zone is set the same way (SET LOCAL).
  as_app()           the same role with no user: the webhook endpoints.
  as_admin()         the operator's role (member of m365sync_admin): the
                     admin page, and the read-only status line of Account
                     Settings (account_status is an admin view).

No superuser, no table: only m365sync's functions and views. Connections are
pooled per role, as any web app's are; that is exactly why the user is set
per transaction and never per session.
"""
import contextlib
import queue
import threading

import psycopg

# SQLSTATEs m365sync raises, in words a user can act on.
FRIENDLY = {
    "22023": "That was not accepted",
    "22007": "That date or time was not accepted",
    "22008": "That date or time is out of range",
    "22P02": "That input is malformed",
    "42501": "You are not allowed to do that",
    "28000": "FlowAgent did not say who you are",
    "P0002": "That item does not exist (or is not yours)",
    "55000": "That is not possible right now",
    "23502": "Something required is missing",
}


class DbError(Exception):
    """A database error made readable: a headline, the database's own message
    (m365sync's messages name the field and never carry secrets or content)
    and its SQLSTATE. Pages show it; no stack trace ever reaches a page."""

    def __init__(self, err):
        diag = getattr(err, "diag", None)
        self.sqlstate = getattr(err, "sqlstate", None) or ""
        self.headline = FRIENDLY.get(self.sqlstate, "The database refused the request")
        if isinstance(err, psycopg.OperationalError) and not self.sqlstate:
            self.headline = "The database is not reachable"
        self.message = (diag.message_primary if diag else None) or str(err).strip().split("\n")[0]
        self.detail = diag.message_detail if diag else None
        self.hint = diag.message_hint if diag else None
        Exception.__init__(self, "%s: %s" % (self.headline, self.message))

    @classmethod
    def of(cls, headline, message, detail=None, hint=None, sqlstate=""):
        """The same shape for a message that did not come from the database."""
        e = cls.__new__(cls)
        e.headline, e.message, e.detail, e.hint, e.sqlstate = headline, message, detail, hint, sqlstate
        Exception.__init__(e, "%s: %s" % (headline, message))
        return e


class Db:
    def __init__(self, conninfo, app_role, admin_role, pool_size=4):
        self.conninfo = conninfo
        self.roles = {"app": app_role, "admin": admin_role}
        self.idle = {k: queue.LifoQueue() for k in self.roles}
        self.pool_size = pool_size
        self.lock = threading.Lock()

    # -- a tiny pool: an idle connection per role, or a new one ------------
    def _get(self, kind):
        try:
            return self.idle[kind].get_nowait()
        except queue.Empty:
            return psycopg.connect(self.conninfo, user=self.roles[kind], autocommit=True,
                                   application_name="flowagent-example")

    def _put(self, kind, conn):
        ok = not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        if ok and self.idle[kind].qsize() < self.pool_size:
            self.idle[kind].put(conn)
        else:
            conn.close()

    @contextlib.contextmanager
    def _tx(self, kind, settings):
        try:
            conn = self._get(kind)
        except psycopg.Error as e:
            raise DbError(e) from None
        try:
            with conn.transaction():
                for name, value in settings:
                    # is_local = true: the value ends with this transaction
                    conn.execute("SELECT pg_catalog.set_config(%s, %s, true)", [name, value])
                yield conn
        except psycopg.Error as e:
            raise DbError(e) from None
        finally:
            self._put(kind, conn)

    def as_user(self, user, tz=None):
        settings = [("m365sync.flowagent_user", user)]
        if tz:
            settings.append(("TimeZone", tz))
        return self._tx("app", settings)

    def as_app(self):
        return self._tx("app", [])

    def as_admin(self, tz=None):
        return self._tx("admin", [("TimeZone", tz)] if tz else [])


def one(conn, sql, params=()):
    """The first column of the first row, or None."""
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def rows(conn, sql, params=()):
    """All rows as dicts."""
    cur = conn.execute(sql, params)
    names = [d.name for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


@contextlib.contextmanager
def savepoint(conn):
    """A nested transaction: a failure inside undoes only its part, as a DbError."""
    try:
        with conn.transaction():
            yield
    except psycopg.Error as e:
        raise DbError(e) from None

"""simcommon: what every graphsim route shares — content types, default
configuration, canned fault answers, the response and request-context
records, and small helpers for Graph error bodies, Prefer headers, query
strings and log redaction.  No state and no routes here.
"""
import json
import time
import urllib.parse

import simauth as A
import simstore as S
import simtime as T
from simstore import GraphError


GRAPH_CT = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
JSON_CT = "application/json; charset=utf-8"

DEFAULT_CONFIG = {
    "txid_duplicate": "existing",        # or "409"
    "delta_gone_style": "SyncStateNotFound",   # syncStateNotFound | resyncRequired | location
    "delta_gone_status": 410,
    "overshoot_pagesize": False,
    "duplicates_in_round": False,
    "replay_across_rounds": False,
    "empty_pages": False,
    "concurrency_limit": 4,
    "concurrency_retry_after": "1",
    "rate_limit": {"requests": 10000, "seconds": 600},
    "access_token_lifetime": 3599,
    "refresh_token_lifetime": 90 * 86400,
    "code_lifetime": 600,
    "default_page_size": 10,
    "max_page_size": 1000,
    "validate_subscriptions": True,
    "validation_timeout": 5,
    "notification_timeout": 3,
    "subscription_max_minutes": 4230,
    "invalid_client_status": 400,
    "mailbox_not_enabled_status": 404,
    "batch_shuffle": True,
    "full_occurrences": False,   # true: delta sends occurrences in full (old tests); false: stubs, as the live service
    "removed_for_cancelled": False,  # true: a cancelled occurrence gets @removed in delta (the live service sends none)
    "iana_zones_on_write": False,    # true: create/update accept any IANA zone name (the live service refuses them)
    "log": True,
    "log_limit": 20000,
    "sign_in_pages": False,      # true: authorize and adminconsent show pages a browser clicks through
}

STATUS_FAULTS = {
    400: ("ErrorInvalidParameter", "The request is invalid."),
    401: ("InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
    403: ("ErrorAccessDenied", S.ACCESS_DENIED),
    404: ("ErrorItemNotFound", S.NOT_FOUND),
    409: ("ErrorIrresolvableConflict", "Conflict."),
    410: ("SyncStateNotFound", "The sync state generation is not found; it may have expired. Please restart the sync."),
    412: ("ErrorIrresolvableConflict", "The send or update operation could not be performed because the change "
                                       "key passed in the request does not match the current change key for the item."),
    423: ("ErrorMailboxStoreUnavailable", "The mailbox database is temporarily unavailable."),
    429: ("TooManyRequests", "Too many requests. Please retry after the time given in the Retry-After header."),
    500: ("generalException", "An unexpected error occurred."),
    502: ("BadGateway", "Bad gateway."),
    503: ("serviceNotAvailable", "The service is temporarily unavailable. Please retry later."),
    504: ("GatewayTimeout", "The gateway did not receive a timely response from the upstream server."),
}


class Resp:
    __slots__ = ("status", "headers", "body", "fault", "pause")

    def __init__(self, status, body=b"", headers=None):
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else []
        self.fault = None
        self.pause = None


class Ctx:
    """Per outer request: identity, request id, throttle slots to release."""
    __slots__ = ("token", "req_id", "client_req_id", "held", "base", "prefer")

    def __init__(self):
        self.token = None
        self.held = []


def jbytes(obj):
    return S.dumps(obj).encode()


def graph_error(ctx, status, code, message, headers=None):
    body = {"error": {"code": code, "message": message,
                      "innerError": {"date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
                                     "request-id": ctx.req_id, "client-request-id": ctx.client_req_id}}}
    r = Resp(status, jbytes(body), [("Content-Type", GRAPH_CT)] + list(headers or []))
    return r


def parse_prefer(values):
    out = {}
    for raw in values:
        for part in raw.split(","):
            part = part.strip()
            if not part:
                continue
            k, _, v = part.partition("=")
            out[k.strip().lower()] = v.strip().strip('"')
    return out


def variant_of(prefer):
    """(immutable ids, time zone or None, text body) and the Preference-Applied entries."""
    applied = []
    tz = prefer.get("outlook.timezone")
    if tz is not None:
        try:
            T.zone(tz)
            applied.append('outlook.timezone="%s"' % tz)
        except T.BadZone:
            tz = None
    text = prefer.get("outlook.body-content-type", "").lower() == "text"
    if "outlook.body-content-type" in prefer:
        applied.append('outlook.body-content-type="%s"' % ("text" if text else "html"))
    imm = prefer.get("idtype", "").lower() == "immutableid"
    return (imm, tz, text), applied


def qparse(qs):
    out = {}
    for k, v in urllib.parse.parse_qsl(qs, keep_blank_values=True):
        out[k] = v
    return out


def utc_stamp(t):
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))


def redact_headers(hdrs):
    out = {}
    for k, v in hdrs.items():
        if k.lower() == "authorization":
            scheme, _, cred = v.partition(" ")
            v = "%s [redacted:%s]" % (scheme, A.fingerprint(cred))
        out[k] = v
    return out


SECRET_FIELDS = {"client_secret", "refresh_token", "code", "code_verifier", "client_assertion", "password",
                 "access_token"}


def redact_body(path, body, ctype):
    if not body:
        return ""
    try:
        text = body.decode("utf-8", "replace")
    except Exception:
        return ""
    if "oauth2" in path or "x-www-form-urlencoded" in (ctype or ""):
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True)
        return urllib.parse.urlencode([(k, "[redacted:%s]" % A.fingerprint(v) if k in SECRET_FIELDS else v)
                                       for k, v in pairs], safe="[]:")
    if len(text) > 65536:
        text = text[:65536]
    return text


def ok_json(obj, status=200, extra=None):
    return Resp(status, jbytes(obj), [("Content-Type", GRAPH_CT)] + (extra or []))


def entity_bytes(ctx, context_path, raw, status=200, extra=None):
    ctxs = S.dumps("%s/v1.0/$metadata#%s/$entity" % (ctx.base, context_path))
    body = b'{"@odata.context":' + ctxs.encode() + b"," + raw[1:]
    return Resp(status, body, [("Content-Type", GRAPH_CT)] + (extra or []))


def parse_json(b):
    if not b:
        raise GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
    try:
        return json.loads(b)
    except ValueError:
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload. Please ensure Content-Type "
                                            "header is set and payload is of valid JSON format.")

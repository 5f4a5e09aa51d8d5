"""Identity platform of the Graph simulator: authorize, token, admin consent.

Implements the OAuth 2.0 v2 endpoints as GRAPH.md section 7 describes them:
authorization codes with PKCE, refresh-token rotation, client credentials that
need admin consent, and AADSTS error bodies with the exact shape Entra uses.
Holds no lock of its own: the caller holds the state lock.  Tokens are opaque
to clients; nothing here logs them.
"""
import base64
import hashlib
import json
import urllib.parse
import uuid

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
OIDC = {"openid", "profile", "email", "offline_access"}
KNOWN_SCOPES = {"user.read", "calendars.read", "calendars.readwrite", "calendars.read.shared",
                "calendars.readwrite.shared", "mailboxsettings.read", "user.readbasic.all"}
DEFAULT_DELEGATED = ["User.Read", "Calendars.ReadWrite"]

MESSAGES = {
    70008: "The provided authorization code or refresh token has expired due to inactivity. "
           "Send a new interactive authorization request for this user and resource.",
    700082: "The refresh token has expired due to inactivity. The token was issued on {issued} "
            "and was inactive for 90.00:00:00.",
    50173: "The provided grant has expired due to it being revoked, a fresh auth token is needed. "
           "The user might have changed or reset their password.",
    54005: "OAuth2 Authorization code was already redeemed, please retry with a new valid code or "
           "use an existing refresh token.",
    65001: "The user or administrator has not consented to use the application with ID '{client}' "
           "named 'FlowAgent'. Send an interactive authorization request for this user and resource.",
    65004: "User declined to consent to access the app.",
    50076: "Due to a configuration change made by your administrator, or because you moved to a new "
           "location, you must use multi-factor authentication to access '{resource}'.",
    7000215: "Invalid client secret provided. Ensure the secret being sent in the request is the client "
             "secret value, not the client secret ID, for a secret added to app '{client}'.",
    7000218: "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    700016: "Application with identifier '{client}' was not found in the directory '{tenant}'. This can happen "
            "if the application has not been installed by the administrator of the tenant or consented to by "
            "any user in the tenant. You might have sent your authentication request to the wrong tenant.",
    70011: "The provided value for the input parameter 'scope' is not valid. The scope '{scope}' is not valid.",
    1002012: "The provided value for scope {scope} is not valid. Client credential flows must have a scope "
             "value with /.default suffixed to the resource identifier (application ID URI).",
    900144: "The request body must contain the following parameter: '{param}'.",
    9002313: "Invalid request. Request is malformed or invalid.",
    50148: "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.",
    50011: "The redirect URI '{redirect}' specified in the request does not match the redirect URIs "
           "configured for the application '{client}'.",
    70000: "The request was denied because one or more grants are invalid.",
    70003: "The app requested an unsupported grant type '{grant}'.",
    90002: "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
           "into the correct cloud.",
    50059: "No tenant-identifying information found in either the request or implied by any provided credentials.",
    50058: "A silent sign-in request was sent but no user is signed in.",
    50020: "User account '{user}' from identity provider does not exist in tenant '{tenant}'.",
    700054: "response_type 'code' is not enabled for the application." ,
    50196: "The server terminated an operation because it encountered a client request loop.",
    90014: "The required field 'scope' is missing from the credential.",
}


class AuthError(Exception):
    """An identity-platform error: rendered as JSON (token) or redirect (authorize)."""

    def __init__(self, error, code, status=400, suberror=None, **fmt):
        msg = MESSAGES.get(code, "Error.")
        try:
            msg = msg.format(**fmt)
        except (KeyError, IndexError):
            pass
        Exception.__init__(self, "AADSTS%d: %s" % (code, msg))
        self.error, self.code, self.status, self.suberror = error, code, status, suberror
        self.text = msg


def aad_body(err, trace_id, corr_id, when):
    """The JSON Entra sends on a token-endpoint error (GRAPH.md section 7)."""
    ts = when  # "2016-01-09 02:02:12Z"
    d = {
        "error": err.error,
        "error_description": "AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s"
                             % (err.code, err.text, trace_id, corr_id, ts),
        "error_codes": [err.code],
        "timestamp": ts,
        "trace_id": trace_id,
        "correlation_id": corr_id,
        "error_uri": "https://login.microsoftonline.com/error?code=%d" % err.code,
    }
    if err.suberror:
        d["suberror"] = err.suberror
    return d


def b64url(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def pkce_ok(challenge, method, verifier):
    if challenge is None:
        return True
    if not verifier:
        return False
    if (method or "plain").upper() == "S256":
        return b64url(hashlib.sha256(verifier.encode()).digest()) == challenge
    return verifier == challenge


def normalize_scopes(scope):
    """Requested scope string -> (graph scope names, has offline_access, ok)."""
    out = []
    offline = False
    for s in (scope or "").split():
        low = s.lower()
        if low == "offline_access":
            offline = True
            continue
        if low in OIDC:
            out.append(s)
            continue
        for pre in (GRAPH_RESOURCE + "/", GRAPH_RESOURCE.replace("https://", "") + "/", GRAPH_APP_ID + "/"):
            if low.startswith(pre.lower()):
                s = s[len(pre):]
                low = s.lower()
                break
        else:
            if "/" in s or ":" in s:
                return None, offline, s
        if low == ".default":
            out.extend(DEFAULT_DELEGATED)
        elif low in KNOWN_SCOPES:
            out.append(s)
        else:
            return None, offline, s
    seen = []
    for s in out:
        if s.lower() not in [x.lower() for x in seen]:
            seen.append(s)
    return seen, offline, None


def fake_jwt(rng, claims):
    hdr = b64url(json.dumps({"typ": "JWT", "alg": "RS256", "kid": "graphsim"}).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = b64url(bytes(rng.getrandbits(8) for _ in range(64)))
    return "%s.%s.%s" % (hdr, body, sig)


def opaque(rng, prefix, n=96):
    return prefix + b64url(bytes(rng.getrandbits(8) for _ in range(n)))


def redirect_url(base, params, mode="query"):
    q = urllib.parse.urlencode([(k, v) for k, v in params if v is not None])
    if mode == "fragment":
        return base + "#" + q
    return base + ("&" if "?" in base else "?") + q


def new_guid(rng):
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def fingerprint(secret):
    return hashlib.sha256(secret.encode()).hexdigest()[:8]

"""GRAPH.md section 7: authorize, token, admin consent; and bearer checks on Graph."""
import base64
import re
import unittest
import urllib.parse

from simtest import CLIENT_ID, REDIRECT, SECRET, SimCase, pkce_pair

SCOPE = "offline_access User.Read Calendars.ReadWrite"


def qs_of(location):
    p = urllib.parse.urlparse(location)
    return dict(urllib.parse.parse_qsl(p.query))


class Flow(SimCase):
    def authorize(self, tenant="common", scope=SCOPE, challenge=None, state="st-1", **extra):
        v, ch = pkce_pair()
        q = {"client_id": CLIENT_ID, "response_type": "code", "redirect_uri": REDIRECT, "response_mode": "query",
             "scope": scope, "state": state, "code_challenge": challenge or ch, "code_challenge_method": "S256"}
        q.update(extra)
        r = self.sim.req("GET", "/%s/oauth2/v2.0/authorize?%s" % (tenant, urllib.parse.urlencode(q)))
        return r, v

    def code(self, **kw):
        self.sim.ctl("POST", "authorize_as", {"upn": "ada@contoso.example"}, expect=200)
        r, v = self.authorize(**kw)
        self.assertEqual(r.status, 302, r.body)
        return qs_of(r.header("Location"))["code"], v

    def tok(self, form, tenant="common", headers=None):
        return self.sim.req("POST", "/%s/oauth2/v2.0/token" % tenant, form=form, headers=headers)

    def redeem(self, code, verifier, **extra):
        f = {"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "authorization_code", "code": code,
             "redirect_uri": REDIRECT, "code_verifier": verifier, "scope": SCOPE}
        f.update(extra)
        return self.tok(f)

    def assertAad(self, r, error, code, status=400):
        self.assertEqual(r.status, status, r.body)
        d = r.json()
        self.assertEqual(d["error"], error)
        self.assertEqual(d["error_codes"], [code])
        self.assertRegex(d["error_description"], r"^AADSTS%d: .*\r\nTrace ID: [0-9a-f-]{36}\r\nCorrelation ID: "
                                                 r"[0-9a-f-]{36}\r\nTimestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$" % code)
        self.assertRegex(d["timestamp"], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$")
        self.assertIn("trace_id", d)
        self.assertIn("correlation_id", d)
        return d


class Authorize(Flow):
    def test_success_redirects_with_code_and_state(self):
        self.sim.ctl("POST", "authorize_as", {"upn": "ada@contoso.example"}, expect=200)
        r, _ = self.authorize(state="abc/+=")
        self.assertEqual(r.status, 302)
        loc = r.header("Location")
        self.assertTrue(loc.startswith(REDIRECT + "?"))
        q = qs_of(loc)
        self.assertEqual(q["state"], "abc/+=")
        self.assertTrue(q["code"])

    def test_login_hint_picks_the_user(self):
        self.add_user("bob@contoso.example")
        r, _ = self.authorize(login_hint="bob@contoso.example")
        self.assertEqual(r.status, 302)
        self.assertIn("code", qs_of(r.header("Location")))

    def test_tenant_by_guid_or_domain_or_organizations(self):
        self.sim.ctl("POST", "authorize_as", {"upn": "ada@contoso.example"}, expect=200)
        for t in (self.tenant_id, "contoso.example", "organizations", "common"):
            r, _ = self.authorize(tenant=t)
            self.assertIn("code", qs_of(r.header("Location")), t)

    def test_declined_consent_redirects_access_denied_65004(self):
        self.sim.ctl("POST", "authorize_as", {"upn": "ada@contoso.example", "decline": True}, expect=200)
        r, _ = self.authorize()
        q = qs_of(r.header("Location"))
        self.assertEqual(q["error"], "access_denied")
        self.assertTrue(q["error_description"].startswith("AADSTS65004"))
        self.assertEqual(q["state"], "st-1")

    def test_unregistered_redirect_uri_is_not_redirected_to(self):
        r, _ = self.authorize(redirect_uri="https://evil.example/cb")
        self.assertEqual(r.status, 400)
        self.assertIsNone(r.header("Location"))
        self.assertIn(b"AADSTS50011", r.body)

    def test_unknown_scope_redirects_invalid_scope(self):
        self.sim.ctl("POST", "authorize_as", {"upn": "ada@contoso.example"}, expect=200)
        r, _ = self.authorize(scope="Calendars.Fly")
        self.assertEqual(qs_of(r.header("Location"))["error"], "invalid_scope")


class Token(Flow):
    def test_code_exchange_returns_bearer_and_refresh_token(self):
        code, v = self.code()
        r = self.redeem(code, v)
        self.assertEqual(r.status, 200, r.body)
        d = r.json()
        self.assertEqual(d["token_type"], "Bearer")
        self.assertEqual(d["expires_in"], 3599)
        self.assertEqual(d["ext_expires_in"], 3599)
        self.assertTrue(d["access_token"] and d["refresh_token"])
        self.assertIn("Calendars.ReadWrite", d["scope"])
        me = self.sim.req("GET", "/v1.0/me", token=d["access_token"])
        self.assertEqual(me.json()["userPrincipalName"], "ada@contoso.example")

    def test_no_refresh_token_without_offline_access(self):
        code, v = self.code(scope="User.Read Calendars.ReadWrite")
        d = self.redeem(code, v).json()
        self.assertNotIn("refresh_token", d)

    def test_pkce_verifier_must_match_s256_challenge(self):
        code, v = self.code()
        self.assertAad(self.redeem(code, "w" * 50), "invalid_grant", 50148)

    def test_code_is_single_use_54005(self):
        code, v = self.code()
        self.assertEqual(self.redeem(code, v).status, 200)
        self.assertAad(self.redeem(code, v), "invalid_grant", 54005)

    def test_code_expires_after_ten_minutes(self):
        code, v = self.code()
        self.sim.ctl("POST", "clock", {"advance_seconds": 601}, expect=200)
        self.assertAad(self.redeem(code, v), "invalid_grant", 70008)

    def test_client_secret_by_http_basic(self):
        code, v = self.code()
        basic = base64.b64encode(("%s:%s" % (CLIENT_ID, urllib.parse.quote(SECRET, safe=""))).encode()).decode()
        r = self.tok({"client_id": CLIENT_ID, "grant_type": "authorization_code", "code": code,
                      "redirect_uri": REDIRECT, "code_verifier": v}, headers={"Authorization": "Basic " + basic})
        self.assertEqual(r.status, 200, r.body)

    def test_bad_client_secret_7000215(self):
        code, v = self.code()
        self.assertAad(self.redeem(code, v, client_secret="wrong"), "invalid_client", 7000215)

    def test_refresh_rotates_and_old_refresh_token_is_then_invalid(self):
        code, v = self.code()
        d = self.redeem(code, v).json()
        f = {"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "refresh_token",
             "refresh_token": d["refresh_token"], "scope": SCOPE}
        r = self.tok(f)
        self.assertEqual(r.status, 200)
        new = r.json()
        self.assertNotEqual(new["refresh_token"], d["refresh_token"])
        self.assertAad(self.tok(f), "invalid_grant", 70008)
        f["refresh_token"] = new["refresh_token"]
        self.assertEqual(self.tok(f).status, 200)

    def test_revoked_refresh_token_gives_invalid_grant_70008(self):
        code, v = self.code()
        d = self.redeem(code, v).json()
        self.sim.ctl("POST", "tokens/revoke", {"upn": "ada@contoso.example"}, expect=200)
        self.assertAad(self.tok({"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "refresh_token",
                                 "refresh_token": d["refresh_token"]}), "invalid_grant", 70008)

    def test_revocation_can_demand_mfa_or_a_fresh_sign_in(self):
        for code, error in ((50076, "interaction_required"), (50173, "invalid_grant")):
            c, v = self.code()
            d = self.redeem(c, v).json()
            self.sim.ctl("POST", "tokens/revoke", {"upn": "ada@contoso.example", "aadsts": code}, expect=200)
            self.assertAad(self.tok({"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "refresh_token",
                                     "refresh_token": d["refresh_token"]}), error, code)

    def test_refresh_token_expires_after_90_days_700082(self):
        code, v = self.code()
        d = self.redeem(code, v).json()
        self.sim.ctl("POST", "clock", {"advance_seconds": 91 * 86400}, expect=200)
        self.assertAad(self.tok({"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "refresh_token",
                                 "refresh_token": d["refresh_token"]}), "invalid_grant", 700082)

    def test_withdrawn_consent_gives_65001_with_consent_required_suberror(self):
        code, v = self.code()
        d = self.redeem(code, v).json()
        self.sim.ctl("POST", "consent", {"tenant": "contoso.example", "granted": False}, expect=200)
        e = self.assertAad(self.tok({"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "refresh_token",
                                     "refresh_token": d["refresh_token"]}), "invalid_grant", 65001)
        self.assertEqual(e["suberror"], "consent_required")
        self.assertEqual(self.sim.req("GET", "/v1.0/me/calendars", token=d["access_token"]).status, 403)

    def test_client_credentials_needs_admin_consent_and_gives_no_refresh_token(self):
        f = {"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "client_credentials",
             "scope": "https://graph.microsoft.com/.default"}
        e = self.assertAad(self.tok(f, tenant="contoso.example"), "invalid_grant", 65001)
        self.assertEqual(e["suberror"], "consent_required")
        self.sim.ctl("POST", "consent", {"tenant": "contoso.example", "granted": True}, expect=200)
        r = self.tok(f, tenant=self.tenant_id)
        self.assertEqual(r.status, 200, r.body)
        d = r.json()
        self.assertNotIn("refresh_token", d)
        ev = self.sim.req("GET", "/v1.0/users/ada@contoso.example/calendars", token=d["access_token"])
        self.assertEqual(ev.status, 200)
        self.assertEqual(self.sim.req("GET", "/v1.0/me", token=d["access_token"]).status, 400)

    def test_client_credentials_scope_must_be_default(self):
        self.sim.ctl("POST", "consent", {"tenant": "contoso.example", "granted": True}, expect=200)
        f = {"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "client_credentials",
             "scope": "Calendars.ReadWrite"}
        self.assertAad(self.tok(f, tenant="contoso.example"), "invalid_scope", 1002012)

    def test_unsupported_grant_type(self):
        self.assertAad(self.tok({"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "password"}),
                       "unsupported_grant_type", 70003)


class AdminConsent(Flow):
    def test_admin_consent_redirects_with_tenant_guid_and_enables_app_tokens(self):
        q = {"client_id": CLIENT_ID, "scope": "https://graph.microsoft.com/.default", "redirect_uri": REDIRECT,
             "state": "s9"}
        r = self.sim.req("GET", "/contoso.example/v2.0/adminconsent?" + urllib.parse.urlencode(q))
        self.assertEqual(r.status, 302)
        got = qs_of(r.header("Location"))
        self.assertEqual(got, {"admin_consent": "True", "tenant": self.tenant_id,
                               "scope": "https://graph.microsoft.com/.default", "state": "s9"})
        r = self.tok({"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "client_credentials",
                      "scope": "https://graph.microsoft.com/.default"}, tenant="contoso.example")
        self.assertEqual(r.status, 200)

    def test_admin_consent_refused_on_common(self):
        q = {"client_id": CLIENT_ID, "scope": "https://graph.microsoft.com/.default", "redirect_uri": REDIRECT}
        r = self.sim.req("GET", "/common/v2.0/adminconsent?" + urllib.parse.urlencode(q))
        self.assertEqual(r.status, 400)

    def test_admin_consent_declined_redirects_with_error(self):
        self.sim.ctl("POST", "authorize_as", {"upn": "ada@contoso.example", "decline": True}, expect=200)
        q = {"client_id": CLIENT_ID, "scope": "https://graph.microsoft.com/.default", "redirect_uri": REDIRECT,
             "state": "s"}
        got = qs_of(self.sim.req("GET", "/%s/v2.0/adminconsent?%s" % (self.tenant_id, urllib.parse.urlencode(q))).header("Location"))
        self.assertEqual(got["error"], "permission_denied")
        self.assertEqual(got["state"], "s")


class Bearer(SimCase):
    def test_missing_token_gives_401(self):
        r = self.sim.req("GET", "/v1.0/me/calendars")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json()["error"]["code"], "InvalidAuthenticationToken")
        self.assertTrue(r.header("WWW-Authenticate").startswith("Bearer"))

    def test_unknown_token_gives_401(self):
        self.assertEqual(self.sim.req("GET", "/v1.0/me", token="eyJ.bogus.x").status, 401)

    def test_expired_token_gives_401_invalid_authentication_token(self):
        self.assertEqual(self.g("GET", "me/calendars").status, 200)
        self.sim.ctl("POST", "tokens/expire", {"upn": "ada@contoso.example"}, expect=200)
        r = self.g("GET", "me/calendars")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json()["error"]["code"], "InvalidAuthenticationToken")

    def test_delegated_token_cannot_read_another_mailbox(self):
        bob = self.add_user("bob@contoso.example")
        self.assertEqual(self.g("GET", "users/%s/calendars" % bob["id"]).status, 403)

    def test_token_without_calendar_scope_gives_403(self):
        t = self.issue("ada@contoso.example", scope="User.Read")
        self.assertEqual(self.g("GET", "me", token=t).status, 200)
        self.assertEqual(self.g("GET", "me/calendars", token=t).status, 403)

    def test_users_by_id_or_upn(self):
        a = self.g("GET", "users/%s" % self.uid).json()
        b = self.g("GET", "users/ada@contoso.example").json()
        self.assertEqual(a["id"], b["id"])

    def test_mailbox_not_enabled(self):
        self.sim.ctl("POST", "users/%s/mailbox" % self.uid, {"enabled": False}, expect=200)
        r = self.g("GET", "me/calendars")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json()["error"]["code"], "MailboxNotEnabledForRESTAPI")


if __name__ == "__main__":
    unittest.main()

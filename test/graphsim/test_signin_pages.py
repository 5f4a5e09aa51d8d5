"""The sign-in and consent pages (config sign_in_pages): what a browser sees
and the redirects it follows, as the identity platform sends them."""
import html.parser
import urllib.parse

from simtest import CLIENT_ID, REDIRECT, SECRET, SimCase, pkce_pair

SCOPE = "offline_access User.Read Calendars.ReadWrite"
ADMIN_SCOPE = "https://graph.microsoft.com/.default"


class Forms(html.parser.HTMLParser):
    """The page's forms: action, hidden inputs and submit buttons (name, value, text)."""

    def __init__(self, text):
        html.parser.HTMLParser.__init__(self)
        self.forms, self.text, self._button = [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action"), "hidden": {}, "buttons": []})
        elif tag == "input" and a.get("type") == "hidden" and self.forms:
            self.forms[-1]["hidden"][a["name"]] = a.get("value", "")
        elif tag == "button" and self.forms:
            self._button = {"name": a.get("name"), "value": a.get("value"), "text": ""}
            self.forms[-1]["buttons"].append(self._button)

    def handle_endtag(self, tag):
        if tag == "button":
            self._button = None

    def handle_data(self, data):
        self.text.append(data)
        if self._button is not None:
            self._button["text"] += data

    def button(self, text):
        for f in self.forms:
            for b in f["buttons"]:
                if text in b["text"]:
                    return f, b
        raise AssertionError("no button %r in %r" % (text, [b["text"] for f in self.forms for b in f["buttons"]]))


def qs_of(location):
    return dict(urllib.parse.parse_qsl(urllib.parse.urlparse(location).query))


class Pages(SimCase):
    def setUp(self):
        SimCase.setUp(self)
        self.sim.ctl("POST", "config", {"sign_in_pages": True}, expect=200)
        self.verifier, self.challenge = pkce_pair()

    def authorize(self, tenant="organizations", state="st-1", **extra):
        q = {"client_id": CLIENT_ID, "response_type": "code", "redirect_uri": REDIRECT, "response_mode": "query",
             "scope": SCOPE, "state": state, "code_challenge": self.challenge, "code_challenge_method": "S256"}
        q.update(extra)
        return self.sim.req("GET", "/%s/oauth2/v2.0/authorize?%s" % (tenant, urllib.parse.urlencode(q)))

    def admin_consent(self, tenant="contoso.example", state="adm-1"):
        q = {"client_id": CLIENT_ID, "scope": ADMIN_SCOPE, "redirect_uri": REDIRECT, "state": state}
        return self.sim.req("GET", "/%s/v2.0/adminconsent?%s" % (tenant, urllib.parse.urlencode(q)))

    def page(self, r):
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertTrue(r.header("Content-Type").startswith("text/html"))
        return Forms(r.body.decode())

    def click(self, page, text, **fields):
        """Submit the form of the button whose label contains text, as a browser does."""
        f, b = page.button(text)
        form = dict(f["hidden"])
        form.update(fields)
        if b["name"]:
            form[b["name"]] = b["value"]
        return self.sim.req("POST", f["action"], form=form)

    def redeem(self, code):
        return self.sim.req("POST", "/organizations/oauth2/v2.0/token", form={
            "client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "authorization_code", "code": code,
            "redirect_uri": REDIRECT, "code_verifier": self.verifier, "scope": SCOPE})

    def client_credentials(self):
        return self.sim.req("POST", "/contoso.example/oauth2/v2.0/token", form={
            "client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "client_credentials",
            "scope": ADMIN_SCOPE})

    # ---- a user's sign-in ------------------------------------------------
    def test_pick_account_then_accept_redirects_with_a_code_that_redeems(self):
        pick = self.page(self.authorize(state="s/+="))
        self.assertIn("Pick an account", pick.text)
        self.assertIn("ada@contoso.example", pick.text)
        consent = self.page(self.click(pick, "Ada Lovelace"))
        text = " ".join(consent.text)
        self.assertIn("Permissions requested", text)
        for perm in ("Sign you in and read your profile", "Have full access to your calendars",
                     "Maintain access to data you have given it access to"):
            self.assertIn(perm, text)
        r = self.click(consent, "Accept")
        self.assertEqual(r.status, 302)
        loc = r.header("Location")
        self.assertTrue(loc.startswith(REDIRECT + "?"), loc)
        q = qs_of(loc)
        self.assertEqual(set(q), {"code", "state", "session_state"})
        self.assertEqual(q["state"], "s/+=")
        tok = self.redeem(q["code"])
        self.assertEqual(tok.status, 200, tok.body)
        self.assertIn("refresh_token", tok.json())

    def test_cancel_redirects_access_denied_65004_with_the_state_and_no_code(self):
        consent = self.page(self.click(self.page(self.authorize(state="st-9")), "Ada Lovelace"))
        r = self.click(consent, "Cancel")
        self.assertEqual(r.status, 302)
        q = qs_of(r.header("Location"))
        self.assertEqual(set(q), {"error", "error_description", "state"})
        self.assertEqual(q["error"], "access_denied")
        self.assertTrue(q["error_description"].startswith("AADSTS65004: User declined to consent"))
        self.assertEqual(q["state"], "st-9")
        # the pending sign-in is gone: a second click finds no session
        self.assertEqual(self.click(consent, "Accept").status, 400)

    def test_organisation_consent_skips_the_user_consent_page_unless_prompt_consent(self):
        self.sim.ctl("POST", "consent", {"tenant": "contoso.example", "granted": True}, expect=200)
        r = self.click(self.page(self.authorize()), "Ada Lovelace")
        self.assertEqual(r.status, 302)
        self.assertIn("code", qs_of(r.header("Location")))
        consent = self.page(self.click(self.page(self.authorize(prompt="consent")), "Ada Lovelace"))
        self.assertIn("Permissions requested", consent.text)

    def test_another_account_by_address_and_an_unknown_one(self):
        self.add_user("bob@contoso.example", "Bob")
        pick = self.page(self.authorize())
        f, _ = pick.button("Next")
        again = self.page(self.sim.req("POST", f["action"], form=dict(f["hidden"], login="nobody@contoso.example")))
        self.assertIn("Pick an account", again.text)
        self.assertTrue(any("couldn't find an account" in t for t in again.text))
        consent = self.page(self.sim.req("POST", f["action"], form=dict(f["hidden"], login="bob@contoso.example")))
        self.assertIn("bob@contoso.example", consent.text)

    def test_tenant_path_lists_only_its_users_and_a_stranger_gets_50020(self):
        self.add_user("eve@fabrikam.example", "Eve", tenant="fabrikam.example")
        pick = self.page(self.authorize(tenant="contoso.example"))
        self.assertNotIn("eve@fabrikam.example", pick.text)
        f, _ = pick.button("Next")
        r = self.sim.req("POST", f["action"], form=dict(f["hidden"], login="eve@fabrikam.example"))
        self.assertEqual(r.status, 302)
        self.assertTrue(qs_of(r.header("Location"))["error_description"].startswith("AADSTS50020"))

    def test_login_hint_goes_straight_to_consent(self):
        consent = self.page(self.authorize(login_hint="ada@contoso.example"))
        self.assertIn("Permissions requested", consent.text)

    def test_names_are_html_escaped(self):
        self.add_user("mallory@contoso.example", "<script>alert(1)</script>")
        body = self.authorize().body.decode()
        self.assertNotIn("<script>alert", body)
        self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt;", body)

    def test_unknown_or_replayed_session_is_an_error_page(self):
        r = self.sim.req("POST", "/organizations/oauth2/v2.0/login", form={"ctx": "nope", "login": "ada@contoso.example"})
        self.assertEqual(r.status, 400)
        self.assertIn(b"timed out", r.body)

    def test_bad_requests_are_still_refused_before_any_page(self):
        r = self.authorize(redirect_uri="https://evil.example/cb")
        self.assertEqual(r.status, 400)
        self.assertNotIn(b"Pick an account", r.body)
        r = self.authorize(scope="offline_access Mail.Nonsense")
        self.assertEqual(qs_of(r.header("Location"))["error"], "invalid_scope")

    def test_preset_account_keeps_the_direct_redirect(self):
        self.sim.ctl("POST", "authorize_as", {"upn": "ada@contoso.example"}, expect=200)
        r = self.authorize()
        self.assertEqual(r.status, 302)
        self.assertIn("code", qs_of(r.header("Location")))

    def test_without_the_setting_nothing_changes(self):
        self.sim.ctl("POST", "config", {"sign_in_pages": False}, expect=200)
        r = self.authorize()
        self.assertEqual(r.status, 302)
        self.assertEqual(qs_of(r.header("Location"))["error"], "interaction_required")
        r = self.admin_consent()
        self.assertEqual(qs_of(r.header("Location"))["admin_consent"], "True")

    # ---- the organisation's admin ---------------------------------------
    def test_admin_accepts_for_the_organisation(self):
        self.add_user("eve@fabrikam.example", "Eve", tenant="fabrikam.example")
        self.assertEqual(self.client_credentials().status, 400)
        pick = self.page(self.admin_consent())
        self.assertNotIn("eve@fabrikam.example", pick.text)
        consent = self.page(self.click(pick, "Ada Lovelace"))
        self.assertIn("Accept for your organization", consent.text)
        self.assertIn("Read and write calendars in all mailboxes", consent.text)
        r = self.click(consent, "Accept")
        self.assertEqual(r.status, 302)
        self.assertEqual(qs_of(r.header("Location")), {"admin_consent": "True", "tenant": self.tenant_id,
                                                       "scope": ADMIN_SCOPE, "state": "adm-1"})
        self.assertEqual(self.client_credentials().status, 200)

    def test_admin_cancel_redirects_permission_denied_and_grants_nothing(self):
        consent = self.page(self.click(self.page(self.admin_consent(state="adm-2")), "Ada Lovelace"))
        r = self.click(consent, "Cancel")
        self.assertEqual(qs_of(r.header("Location")), {"error": "permission_denied",
                                                       "error_description": "The admin canceled the request",
                                                       "state": "adm-2"})
        self.assertEqual(self.client_credentials().status, 400)

    def test_admin_of_another_organisation_is_refused(self):
        self.add_user("eve@fabrikam.example", "Eve", tenant="fabrikam.example")
        f, _ = self.page(self.admin_consent()).button("Next")
        r = self.sim.req("POST", f["action"], form=dict(f["hidden"], login="eve@fabrikam.example"))
        q = qs_of(r.header("Location"))
        self.assertEqual(q["error"], "access_denied")
        self.assertTrue(q["error_description"].startswith("AADSTS50020"))
        self.assertEqual(q["state"], "adm-1")

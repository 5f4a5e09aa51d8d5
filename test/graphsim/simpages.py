"""simpages: the identity platform's sign-in and consent pages, as HTML a
browser can click through: "Pick an account", "Permissions requested" (a
user's consent) and its admin variant "Accept for your organization".
Rendering only: simidentity decides what comes next and where to redirect.
Every value from a request or the state is HTML-escaped.
"""
import html

from simcommon import Resp

# What the consent page says each permission lets the app do (delegated).
SCOPE_TEXT = {
    "openid": "Sign you in",
    "profile": "View your basic profile",
    "email": "View your email address",
    "offline_access": "Maintain access to data you have given it access to",
    "user.read": "Sign you in and read your profile",
    "calendars.read": "Read your calendars",
    "calendars.readwrite": "Have full access to your calendars",
    "calendars.read.shared": "Read calendars you can access",
    "calendars.readwrite.shared": "Read and write calendars you can access",
    "mailboxsettings.read": "Read your mailbox settings",
    "user.readbasic.all": "Read all users' basic profiles",
}
# What the admin grants with .default: the app's delegated and application
# permissions (the simulator's app-only tokens carry these roles).
ADMIN_PERMISSIONS = [
    "Sign in and read user profile",
    "Have full access to user calendars",
    "Maintain access to data you have given it access to",
    "Read and write calendars in all mailboxes",
    "Read all users' full profiles",
]

CSS = """
*{box-sizing:border-box}
body{margin:0;min-height:100vh;background:#f2f2f2;font:15px/1.45 "Segoe UI","Helvetica Neue",Arial,sans-serif;
 color:#1b1b1b;display:flex;flex-direction:column;align-items:center;justify-content:center}
.card{width:440px;max-width:94vw;background:#fff;padding:44px;box-shadow:0 2px 6px rgba(0,0,0,.2)}
.logo{display:flex;align-items:center;gap:8px;font-weight:600;color:#737373;font-size:18px;margin-bottom:16px}
.logo i{display:inline-grid;grid-template-columns:9px 9px;gap:2px}
.logo i b{width:9px;height:9px;display:block}
.who{font-size:14px;color:#1b1b1b;margin-bottom:8px}
h1{font-size:24px;font-weight:600;margin:0 0 12px}
p{margin:0 0 12px}
.muted{color:#605e5c;font-size:13px}
.accounts{margin:8px -44px 12px;border-top:1px solid #e6e6e6}
.accounts button{display:flex;width:100%;align-items:center;gap:12px;padding:12px 44px;border:0;
 border-bottom:1px solid #e6e6e6;background:#fff;text-align:left;cursor:pointer;font:inherit}
.accounts button:hover{background:#f0f0f0}
.avatar{width:36px;height:36px;border-radius:50%;background:#0067b8;color:#fff;display:flex;
 align-items:center;justify-content:center;font-weight:600;flex:none}
.accounts small{display:block;color:#605e5c}
input[type=email],input[type=text]{width:100%;border:0;border-bottom:1px solid #666;padding:6px 0;
 font:inherit;margin:4px 0 14px;outline:none}
ul.perms{padding-left:20px;margin:6px 0 14px}
ul.perms li{margin:4px 0}
.buttons{display:flex;justify-content:flex-end;gap:8px;margin-top:20px}
.btn{min-width:108px;padding:6px 12px;font:inherit;border:1px solid #8a8886;background:#fff;cursor:pointer}
.btn.primary{background:#0067b8;border-color:#0067b8;color:#fff}
.error{color:#e81123;margin-bottom:10px}
.app{display:flex;gap:12px;align-items:center;margin:8px 0 14px}
.app .tile{width:48px;height:48px;background:#5c2d91;color:#fff;display:flex;align-items:center;
 justify-content:center;font-weight:700;font-size:20px;flex:none}
footer{margin-top:18px;font-size:12px;color:#767676}
"""

LOGO = ('<div class="logo"><i><b style="background:#f25022"></b><b style="background:#7fba00"></b>'
        '<b style="background:#00a4ef"></b><b style="background:#ffb900"></b></i>Microsoft</div>')


def esc(s):
    return html.escape("" if s is None else str(s), quote=True)


def page(title, inner, status=200):
    doc = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>%s</title>'
           '<meta name="viewport" content="width=device-width, initial-scale=1"><style>%s</style></head>'
           '<body><div class="card">%s%s</div><footer>graphsim: a local stand-in for the Microsoft identity '
           'platform</footer></body></html>' % (esc(title), CSS, LOGO, inner))
    return Resp(status, doc.encode("utf-8"), [("Content-Type", "text/html; charset=utf-8"),
                                               ("Cache-Control", "no-store, no-cache"), ("X-Frame-Options", "DENY")])


def pick_account(tenant_ref, ctx, app_name, accounts, error=None):
    """accounts: [(upn, display name)]. Each is a button posting to login."""
    rows = "".join(
        '<button type="submit" name="login" value="%s"><span class="avatar">%s</span>'
        '<span>%s<small>%s</small></span></button>' % (esc(upn), esc((name or upn)[:1].upper()), esc(name), esc(upn))
        for upn, name in accounts)
    inner = ('<h1>Pick an account</h1><p class="muted">to continue to %s</p>%s'
             '<form method="post" action="/%s/oauth2/v2.0/login"><input type="hidden" name="ctx" value="%s">'
             '<div class="accounts">%s</div></form>'
             '<form method="post" action="/%s/oauth2/v2.0/login"><input type="hidden" name="ctx" value="%s">'
             '<label class="muted" for="login">Use another account</label>'
             '<input type="email" id="login" name="login" placeholder="Email, phone, or Skype" autocomplete="username">'
             '<div class="buttons"><button class="btn primary" type="submit">Next</button></div></form>'
             % (esc(app_name), '<div class="error" role="alert">%s</div>' % esc(error) if error else "",
                esc(tenant_ref), esc(ctx), rows, esc(tenant_ref), esc(ctx)))
    return page("Sign in to your account", inner)


def consent(tenant_ref, ctx, app_name, upn, scopes, admin):
    """"Permissions requested": a user's consent, or the admin's for the whole organisation."""
    if admin:
        perms = ADMIN_PERMISSIONS
        note = ('<p><b>Accept for your organization</b></p><p class="muted">If you accept, this app will get '
                'access to the specified resources for all users in your organization. No one else will be '
                'prompted to review these permissions.</p>')
    else:
        perms = [SCOPE_TEXT.get(s.lower(), s) for s in scopes]
        if "Maintain access to data you have given it access to" not in perms:
            perms.append("Maintain access to data you have given it access to")
        note = ('<p class="muted">Accepting these permissions means that you allow this app to use your data as '
                'specified in their terms of service and privacy statement. You can change these permissions at '
                'https://myapps.microsoft.com.</p>')
    inner = ('<div class="who">%s</div><h1>Permissions requested</h1>'
             '<div class="app"><span class="tile">%s</span><div><b>%s</b><div class="muted">unverified</div></div></div>'
             '<p>This app would like to:</p><ul class="perms">%s</ul>%s'
             '<form method="post" action="/%s/oauth2/v2.0/consent"><input type="hidden" name="ctx" value="%s">'
             '<div class="buttons"><button class="btn" type="submit" name="action" value="cancel">Cancel</button>'
             '<button class="btn primary" type="submit" name="action" value="accept">Accept</button></div></form>'
             % (esc(upn), esc(app_name[:1].upper()), esc(app_name), "".join("<li>%s</li>" % esc(p) for p in perms),
                note, esc(tenant_ref), esc(ctx)))
    return page("Permissions requested", inner)


def expired():
    return page("Sign in to your account",
                '<h1>Your session has timed out</h1><p class="error" role="alert">AADSTS50132: The sign-in '
                'session has expired. Go back to the application and sign in again.</p>', 400)

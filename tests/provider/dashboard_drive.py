#!/usr/bin/env python3
"""Drives llmcap-server's dashboard in headless Chromium (tests/integration/test_dashboard.sh).

    dashboard_drive.py URL TOKEN OUTDIR TRAFFIC_SCRIPT

Prints "ok - ..." / "not ok - ..." lines; screenshots go to OUTDIR.
"""
import json
import subprocess
import sys
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from cdp import Browser, CDPError  # noqa: E402

URL, TOKEN, OUT, TRAFFIC = sys.argv[1:5]
failures = 0


def ok(cond, desc):
    global failures
    print(("ok - " if cond else "not ok - ") + desc, flush=True)
    if not cond:
        failures += 1


def step(desc, fn):
    try:
        r = fn()
        ok(r is not False, desc)
    except CDPError as e:
        ok(False, f"{desc}: {e}")


def js(s):
    return json.dumps(s)


with Browser(OUT) as b:
    b.goto(URL + "/")
    step("signed out: the sign-in form is shown", lambda: b.wait("!document.querySelector('#signin').hidden"))
    b.screenshot("dashboard-signin.png")

    # a wrong token is refused on the page
    b.eval(f"document.querySelector('#token').value = 'wrong-token-wrong-token'")
    b.eval("document.querySelector('#signin-form').requestSubmit()")
    step("a wrong token: an error on the sign-in form",
         lambda: b.wait("document.querySelector('#signin-error').textContent.includes('admin token')"))

    b.eval(f"document.querySelector('#token').value = {js(TOKEN)}")
    b.eval("document.querySelector('#signin-form').requestSubmit()")
    step("signing in shows the limits page", lambda: b.wait("!document.querySelector('#app').hidden && "
                                                             "document.querySelector('#limits-table') !== null"))
    ok(b.eval("document.cookie") == "", "the session cookie is HttpOnly (invisible to scripts)")
    ok(b.eval("performance.getEntriesByType('resource').every(e => e.name.startsWith(location.origin))"),
       "every asset comes from the server itself (no CDN)")

    # create a key with a limit through the form
    b.eval("location.hash = '#keys'")
    step("keys page", lambda: b.wait("document.querySelector('#key-new') !== null"))
    b.eval("""(() => {
        document.querySelector('#k-id').value = 'web';
        document.querySelector('#k-secret').value = 'sk-dashboard-key';
        document.querySelector('#key-new .l-metric').value = 'cost';
        document.querySelector('#key-new .l-window').value = 'daily';
        document.querySelector('#key-new .l-threshold').value = '100';
        document.querySelector('#key-new .l-alert').value = '50';
        document.querySelector('#key-new').requestSubmit();
    })()""")
    step("the new key is listed with its limit",
         lambda: b.wait("document.querySelector('tr[data-key=\"web\"]') !== null && "
                        "document.querySelector('tr[data-key=\"web\"]').textContent.includes('$100.00')"))
    sha = b.eval("fetch('/v1/admin/keys/web').then(r => r.json()).then(j => j.sha256)")
    ok(sha == __import__("hashlib").sha256(b"sk-dashboard-key").hexdigest(),
       "the key was stored by the SHA-256 the browser computed (the raw key never left the page)")
    b.screenshot("dashboard-keys.png")

    # edit the limit's alert levels in the form: saved by the server, shown on both pages
    b.eval("document.querySelector('tr[data-key=\"web\"] .edit').click()")
    step("Edit limits opens the limit editor under the key",
         lambda: b.wait("document.querySelector('.edit-row .l-alert') !== null && "
                        "document.querySelector('.edit-row .l-alert').value === '50'"))
    b.eval("""(() => { const f = document.querySelector('.edit-row form');
        f.querySelector('.l-alert').value = '50%, 80%, 95%';
        f.requestSubmit(); })()""")
    step("saving the edited limits", lambda: b.wait("document.querySelector('#toast').textContent.includes('Limits of key web saved')"))
    lim = b.eval("fetch('/v1/admin/keys/web').then(r => r.json()).then(j => j.limits)")
    ok(isinstance(lim, list) and len(lim) == 1 and lim[0].get("alert_at") == ["50%", "80%", "95%"]
       and lim[0].get("threshold") == 100 and lim[0].get("window") == "daily",
       f"the server has the limit with its three alert levels ({lim})")
    step("the key's row lists the three levels",
         lambda: b.wait("document.querySelector('tr[data-key=\"web\"]') !== null && "
                        "document.querySelector('tr[data-key=\"web\"]').textContent.includes('alert 50% / 80% / 95%')"))
    b.screenshot("dashboard-keys-alert-levels.png")

    b.eval("location.hash = '#limits'")
    step("the limit shows on the limits page at 0",
         lambda: b.wait("document.querySelector('.bar[data-limit=\"key:web:cost:daily\"]') !== null && "
                        "document.querySelector('.bar[data-limit=\"key:web:cost:daily\"]').dataset.used === '0'"))
    step("... with a mark at each alert level and the levels in USD",
         lambda: b.wait("document.querySelectorAll('.bar[data-limit=\"key:web:cost:daily\"] b').length === 3 && "
                        "document.querySelector('.bar[data-limit=\"key:web:cost:daily\"]').closest('tr').textContent"
                        ".includes('alert $50.00 / $80.00 / $95.00')"))

    # traffic through the preload on a host, reported by its agent
    r = subprocess.run(["bash", TRAFFIC], capture_output=True, text=True)
    ok(r.returncode == 0, f"traffic through the preload ({r.stdout.strip()} {r.stderr.strip()[:200]})")
    step("the usage bar moves to $40 of $100 (40%) without reloading the page",
         lambda: b.wait("(() => { const e = document.querySelector('.bar[data-limit=\"key:web:cost:daily\"]');"
                        " return e && e.dataset.used === '40' && e.getAttribute('aria-valuenow') === '40.0'; })()",
                        timeout=30))
    time.sleep(0.3)
    b.screenshot("dashboard-limits.png")

    # filter by scope
    b.eval("location.hash = '#limits?scope=team'")
    step("filter by scope: a key limit is hidden when showing teams",
         lambda: b.wait("document.querySelector('#scope').value === 'team' && "
                        "document.querySelector('.bar[data-limit=\"key:web:cost:daily\"]') === null"))

    # toggle the limit off
    b.eval("location.hash = '#keys'")
    b.wait("document.querySelector('tr[data-key=\"web\"] .toggle') !== null")
    b.eval("document.querySelector('tr[data-key=\"web\"] .toggle').click()")
    step("toggling the limit off", lambda: b.wait("document.querySelector('#toast').textContent.includes('turned off')"))
    ok(b.eval("fetch('/v1/admin/keys/web').then(r => r.json()).then(j => j.limits[0].enabled)") is False,
       "the server has the limit off")
    b.screenshot("dashboard-keys-toggled.png")

    # CSRF: the same change without the session's token is refused
    st = b.eval("fetch('/v1/admin/keys/web', {method: 'PATCH', headers: {'Content-Type': 'application/json'},"
                " body: JSON.stringify({limits: {'0': {enabled: true}}})}).then(r => r.status)")
    ok(st == 403, f"a change without the CSRF token is refused (got {st})")

    # every page renders, at 1280x800 and at phone width
    for page in ["limits", "spend", "keys", "teams", "customers", "invites", "hosts"]:
        b.eval(f"location.hash = '#{page}'")
        step(f"{page} page renders", lambda: b.wait(f"document.querySelector('#nav a.active').dataset.page === '{page}' "
                                                     "&& document.querySelector('#main h1') !== null"))
        time.sleep(0.2)
        b.screenshot(f"dashboard-{page}-1280.png")
    b.eval("location.hash = '#hosts'")
    step("hosts page lists the reporting host with its lag",
         lambda: b.wait("document.querySelector('#hosts-table tbody').textContent.includes(' s')"))
    b.eval("location.hash = '#invites'")
    b.wait("document.querySelector('#inv-new') !== null")
    b.eval("""(() => { document.querySelector('#inv-new .l-threshold').value = '25';
                       document.querySelector('#inv-new').requestSubmit(); })()""")
    step("an invite with limits gives a code", lambda: b.wait("/^[0-9a-f]{48}$/.test((document.querySelector('#inv-code')||{}).textContent)"))

    # customers: the monthly budget's alert levels, defaults and one override, through the forms
    b.eval("location.hash = '#customers'")
    b.wait("document.querySelector('#cust-def') !== null")
    b.eval("""(() => { document.querySelector('#c-budget').value = '10';
        document.querySelector('#c-alert').value = '80%, 95%';
        document.querySelector('#c-proj').value = 'yes';
        document.querySelector('#cust-def').requestSubmit(); })()""")
    step("customer defaults with budget alert levels saved",
         lambda: b.wait("document.querySelector('#toast').textContent.includes('Customer defaults saved')"))
    c = b.eval("fetch('/v1/admin/customers').then(r => r.json())")
    ok(c.get("monthly_budget_usd") == 10 and c.get("alert_at") == ["80%", "95%"] and c.get("alert_projected") is True,
       f"the server has the defaults' budget, levels and projected alert ({c})")
    b.wait("document.querySelector('#o-id') !== null && document.querySelector('#c-alert').value === '80%, 95%'")
    b.eval("""(() => { document.querySelector('#o-id').value = 'acme';
        document.querySelector('#o-budget').value = '250';
        document.querySelector('#o-alert').value = '50%';
        document.querySelector('#o-proj').value = 'no';
        document.querySelector('#cust-ovr').requestSubmit(); })()""")
    step("an override with its own level saved", lambda: b.wait("document.querySelector('#toast').textContent.includes('Override for acme saved')"))
    o = b.eval("fetch('/v1/admin/customers/acme').then(r => r.json())")
    ok(o.get("monthly_budget_usd") == 250 and o.get("alert_at") == "50%" and o.get("alert_projected") is False,
       f"the server has acme's override, its projected alert off ({o})")
    b.eval("""(() => { document.querySelector('#c-rpm').value = '60';
        document.querySelector('#cust-def').requestSubmit(); })()""")
    step("saving the defaults again while an override exists",
         lambda: b.wait("document.querySelector('#toast').textContent.includes('Customer defaults saved')"))
    c = b.eval("fetch('/v1/admin/customers').then(r => r.json())")
    ok(c.get("rate_limit_rpm") == 60 and c.get("alert_at") == ["80%", "95%"] and c.get("alert_projected") is True and
       "acme" in c.get("overrides", {}),
       f"... keeps the levels and the override ({c})")
    time.sleep(0.2)
    b.screenshot("dashboard-customers-levels.png")

    b.viewport(390, 844, mobile=True)
    for page in ["limits", "spend", "keys", "teams", "customers", "invites", "hosts"]:
        b.eval(f"location.hash = '#{page}'")
        b.wait(f"document.querySelector('#nav a.active').dataset.page === '{page}'")
        time.sleep(0.3)
        ok(b.eval("document.documentElement.scrollWidth <= window.innerWidth + 1"),
           f"{page} at phone width (390 px): no sideways scrolling")
        b.screenshot(f"dashboard-{page}-phone.png")
    b.viewport(1280, 800)

    b.eval("document.querySelector('#signout').click()")
    step("signing out returns to the sign-in form", lambda: b.wait("!document.querySelector('#signin').hidden"))
    st = b.eval("fetch('/v1/admin/keys').then(r => r.status)")
    ok(st == 401, f"after signing out the session is gone (got {st})")

sys.exit(1 if failures else 0)

// journey.js — the user's journey through the FlowAgent example in headless
// Chromium: the organisation's admin approves, users connect by clicking
// through the simulator's Microsoft pages, events flow both ways, a Cancel at
// Microsoft leaves nothing behind, and users never see each other's events.
//
// Started by test/browser/run, which sets up the stack (examples/flowagent/run)
// and Chromium's trust in the simulator's test CA (an NSS db under $HOME).
// Prints TAP: "ok N - name" / "not ok N - name", with "# " diagnostics.
// The Outlook side is checked through the simulator's control API over TLS
// verified against the same CA; the database through psql as the superuser.
'use strict';
const fs = require('fs');
const https = require('https');
const path = require('path');
const { execFileSync } = require('child_process');
const puppeteer = require('puppeteer-core');

const env = process.env;
const APP = env.APP_URL;
const SIM = env.SIM_URL;
const CA = fs.readFileSync(env.CA_FILE);
const SHOTS = env.SHOTS;
const SEED = JSON.parse(fs.readFileSync(env.SIM_USERS, 'utf8'));
const SIM_USERS = SEED.users;
const WEEK = '/calendar?week=' + SEED.monday;       // the seeded week, whatever the day
const ADA_TZ = 'Europe/Copenhagen';

// ---- helpers ---------------------------------------------------------------

function sim(method, p, body) {
  return new Promise((resolve, reject) => {
    const u = new URL(SIM + '/_sim/' + p);
    const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
    const req = https.request({ hostname: u.hostname, port: u.port, path: u.pathname + u.search, method, ca: CA,
      headers: data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {} }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        if (res.statusCode >= 300) reject(new Error(`sim ${method} ${p}: ${res.statusCode} ${text.slice(0, 200)}`));
        else resolve(text ? JSON.parse(text) : null);
      });
    });
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

function psql(sql) {
  return execFileSync(path.join(env.M365_BIN, 'psql'), ['-X', '-A', '-t', '-h', env.PGHOST, '-p', env.PGPORT,
    '-U', 'postgres', '-d', 'flowagent', '-c', sql], { encoding: 'utf8' }).trim();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, ms = 20000, step = 200) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(step);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function text(page, sel = 'body') {
  return page.$eval(sel, (el) => el.innerText);
}

// The connection state badge, as written (innerText would apply its CSS capitalisation).
async function msState(page) {
  return page.$eval('#ms-state', (el) => el.textContent.trim());
}

// A timed event's block in the week view: its text and id (column n: Monday = 0, or any).
async function block(page, subject, day = null) {
  const found = await page.$$eval('.day-col', (cols, subject, day) => {
    for (let i = 0; i < cols.length; i++) {
      if (day !== null && i !== day) continue;
      for (const a of cols[i].querySelectorAll('a.ev'))
        if (a.innerText.includes(subject)) return { text: a.innerText, id: a.dataset.eventId };
    }
    return null;
  }, subject, day);
  if (!found) throw new Error(`no block "${subject}" in the week view`);
  return found;
}

async function openBlock(page, subject, day) {
  const b = await block(page, subject, day);
  await go(page, `.day-col a.ev[data-event-id="${b.id}"]`);
}

// Click and wait for the navigation it causes (a form post, a redirect chain).
async function go(page, selector) {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click(selector)]);
}

async function shot(page, name, fullPage = false) {
  const file = path.join(SHOTS, name);
  await page.screenshot({ path: file, fullPage });
  console.log('# screenshot ' + file);
}

// The seeded week's day n (Monday = 0) as YYYY-MM-DD.
function weekday(n) {
  const d = new Date(SEED.monday + 'T12:00:00Z');
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

async function truth(upn, tz = ADA_TZ) {
  return sim('GET', `users/${SIM_USERS[upn]}/truth?tz=${encodeURIComponent(tz)}`);
}

async function signIn(browser, user) {
  const ctx = await browser.createBrowserContext();
  const page = await ctx.newPage();
  page.setDefaultTimeout(20000);
  page.on('dialog', (d) => d.accept());       // the form's confirm() for deletes
  await page.goto(APP + '/signin');
  await go(page, `button[value="${user}"]`);
  return page;
}

// "Connect to Microsoft" and, at the simulator, pick the account.
async function connectAtMicrosoft(page, upn, shotName) {
  await page.goto(APP + '/settings');
  await go(page, 'button::-p-text(Connect to Microsoft)');
  assert(page.url().startsWith(SIM), 'not sent to Microsoft: ' + page.url());
  assert((await text(page)).includes('Pick an account'), 'no account picker');
  if (shotName) await shot(page, shotName);
  await go(page, `button[value="${upn}"]`);
}

// ---- the tests ---------------------------------------------------------------

const results = [];
const state = {};

async function test(name, fn) {
  const n = results.length + 1;
  const t0 = Date.now();
  try {
    await fn();
    results.push(true);
    console.log(`ok ${n} - ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    results.push(false);
    console.log(`not ok ${n} - ${name}`);
    for (const line of String(e && e.stack || e).split('\n').slice(0, 6)) console.log('# ' + line);
  }
}

async function main() {
  const args = ['--disable-dev-shm-usage', '--no-first-run', '--lang=en-GB'];
  if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
  const browser = await puppeteer.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium', headless: true, args,
    defaultViewport: { width: 1280, height: 820 }, env: { ...process.env, LANG: 'en_GB.UTF-8' },
  });
  try {
    await run(browser);
  } finally {
    await browser.close();
  }
}

async function run(browser) {
  console.log('1..9');

  await test('the organisation admin approves FlowAgent at Microsoft', async () => {
    const page = await signIn(browser, 'olivia');
    assert(page.url().endsWith('/admin'), 'admin not on the admin page: ' + page.url());
    await go(page, 'button::-p-text(Approve for my organisation)');
    assert(page.url().startsWith(SIM + '/contoso.example/v2.0/adminconsent'), 'not at admin consent: ' + page.url());
    await go(page, 'button[value="olivia@contoso.example"]');
    const consent = await text(page);
    assert(consent.includes('Permissions requested') && consent.includes('Accept for your organization'),
      'no admin consent page');
    await shot(page, '01-admin-consent.png');
    await go(page, 'button::-p-text(Accept)');
    assert(page.url() === APP + '/admin', 'not back on the admin page: ' + page.url());
    const after = await text(page);
    assert(after.includes('Approved: everyone in contoso.example'), 'no approval message');
    const tenants = (await sim('GET', 'tenants')).value;
    assert(tenants.find((t) => t.tenant === 'contoso.example').consent === true, 'tenant not consented at Microsoft');
    assert(psql("SELECT count(*) FROM pg_catalog.pg_roles WHERE rolname IN ('flowagent_web', 'flowagent_admin') AND NOT rolsuper") === '2',
      'the app roles are not the non-superusers the example promises');
    await page.browserContext().close();
  });

  await test('Ada connects by clicking through Microsoft and sees her Outlook events in the week view', async () => {
    const page = await signIn(browser, 'ada');
    state.ada = page;
    await page.goto(APP + '/settings');
    assert((await msState(page)) === 'not connected', 'Ada already connected?');
    await shot(page, '02-connect.png');
    await connectAtMicrosoft(page, 'ada@contoso.example', '03-pick-account.png');
    // The organisation approved: Microsoft asks Ada no permissions.
    assert(page.url() === APP + '/settings', 'not back in Account Settings: ' + page.url());
    assert((await text(page)).includes('Connected to Microsoft 365'), 'no connected message');
    assert((await msState(page)) === 'connected', 'state is not connected');
    // The worker's first sync runs right after the connect commits.
    await until('Outlook events in the week view', async () => {
      await page.goto(APP + WEEK);
      return (await text(page)).includes('Board meeting');
    });
    const week = await text(page, '.week');
    for (const s of ['Board meeting', 'Design review', 'Customer call', 'Daily stand-up', 'Lunch with Grace'])
      assert(week.includes(s), 'missing ' + s);
    const allDay = await text(page, '.allday-grid');
    assert(allDay.includes('Company offsite') && !allDay.includes('Board meeting'), 'all-day row is wrong: ' + allDay);
    // Times in Ada's zone: Outlook's 09:30 Romance Standard Time.
    const board = await block(page, 'Board meeting', 1);
    assert(board.text.includes('09:30–11:00'), 'Board meeting not on Tuesday 09:30–11:00 Copenhagen: ' + board.text);
    state.boardId = board.id;
    await shot(page, '04-week.png', true);
  });

  await test('Ada creates an event in the form and it reaches Outlook', async () => {
    const page = state.ada;
    await page.goto(APP + WEEK);
    await go(page, 'a::-p-text(+ New event)');
    const day = weekday(2);
    await page.type('input[name=subject]', 'Coffee with Charles');
    await page.$eval('input[name=start_date]', (el, v) => { el.value = v; }, day);
    await page.$eval('input[name=end_date]', (el, v) => { el.value = v; }, day);
    await page.$eval('input[name=start_time]', (el) => { el.value = '15:00'; });
    await page.$eval('input[name=end_time]', (el) => { el.value = '15:45'; });
    await page.type('input[name=location]', 'Café Babbage');
    await shot(page, '05-event-form.png');
    await go(page, 'button::-p-text(Create)');
    assert((await text(page)).includes('Saved.'), 'no saved message');
    assert((await text(page, '.week')).includes('Coffee with Charles'), 'not in the week view');
    const ev = await until('the event in Outlook', async () =>
      (await truth('ada@contoso.example')).events.find((e) => e.subject === 'Coffee with Charles'), 20000);
    assert(ev.start.dateTime.startsWith(day + 'T15:00') && ev.end.dateTime.startsWith(day + 'T15:45'),
      'wrong time in Outlook: ' + JSON.stringify(ev.start));
    assert(ev.location.displayName === 'Café Babbage', 'wrong location in Outlook');
  });

  await test('an Outlook edit shows after a reload, through the webhook', async () => {
    const page = state.ada;
    const adaId = SIM_USERS['ada@contoso.example'];
    await until('Ada\'s Graph subscription', async () =>
      (await sim('GET', 'subscriptions')).value.some((s) => s.resource.includes(adaId)), 30000);
    const review = (await truth('ada@contoso.example')).events.find((e) => e.subject === 'Design review');
    await sim('DELETE', 'notifications');
    const t0 = Date.now();
    await sim('PATCH', `users/${adaId}/events/${encodeURIComponent(review.id)}`,
      { subject: 'Design review (room Hopper)', location: { displayName: 'Room Hopper' } });
    let reloads = 0;
    await until('the Outlook edit in the week view', async () => {
      reloads++;
      await page.reload({ waitUntil: 'load' });
      return (await text(page, '.week')).includes('Design review (room Hopper)');
    }, 10000, 100);
    const ms = Date.now() - t0;
    console.log(`# the Outlook edit showed ${ms} ms after it was made (${reloads} reloads)`);
    const sent = await sim('GET', 'notifications');
    const list = sent.value || sent;
    assert(list.some((d) => String(d.url || '').startsWith(env.HOOKS_URL) && String(d.status) === '202'),
      'no change notification delivered to the app: ' + JSON.stringify(list).slice(0, 300));
    assert(psql("SHOW m365sync.sync_interval") === '1h', 'polling would have been fast enough to hide the webhook');
  });

  await test('Cancel at Microsoft shows "connection cancelled" and leaves no account behind', async () => {
    const page = await signIn(browser, 'bob');
    await connectAtMicrosoft(page, 'bob@fabrikam.example');
    // Fabrikam has not approved FlowAgent: Bob is asked for his permission.
    const consent = await text(page);
    assert(consent.includes('Permissions requested') && consent.includes('Have full access to your calendars'),
      'no consent page for Bob');
    await shot(page, '06-consent.png');
    await go(page, 'button::-p-text(Cancel)');
    assert(page.url() === APP + '/settings', 'not back in Account Settings: ' + page.url());
    const after = await text(page);
    assert(after.includes('Connection cancelled'), 'no "connection cancelled" message: ' + after.slice(0, 300));
    assert((await msState(page)) === 'not connected', 'Bob looks connected');
    assert(!/SQLSTATE|Traceback/.test(after), 'an error leaked onto the page');
    await shot(page, '07-cancelled.png');
    assert(psql("SELECT count(*) FROM m365sync.account_status WHERE flowagent_user = 'bob'") === '0',
      'an account row exists for Bob');
    await page.browserContext().close();
  });

  await test('a second user never sees the first user\'s events', async () => {
    // An Outlook subject with markup must show as text, never run.
    await sim('POST', `users/${SIM_USERS['grace@contoso.example']}/events`, {
      subject: '<img src=x onerror="window.__xss=1">Retro <b>notes</b>',
      start: { dateTime: weekday(4) + 'T09:00:00', timeZone: 'Eastern Standard Time' },
      end: { dateTime: weekday(4) + 'T10:00:00', timeZone: 'Eastern Standard Time' } });
    const page = await signIn(browser, 'grace');
    await connectAtMicrosoft(page, 'grace@contoso.example');
    assert((await msState(page)) === 'connected', 'Grace not connected');
    await until('Grace\'s events', async () => {
      await page.goto(APP + WEEK);
      return (await text(page)).includes('Vendor visit');
    });
    const week = await text(page, '.week');
    assert(week.includes('Ops sync'), 'Grace misses her own event');
    for (const s of ['Board meeting', 'Coffee with Charles', 'Design review', 'Daily stand-up', 'Company offsite'])
      assert(!week.includes(s), 'Grace sees Ada\'s ' + s);
    assert(week.includes('<img src=x onerror="window.__xss=1">Retro <b>notes</b>'), 'the subject is not shown as text');
    assert(await page.evaluate(() => window.__xss === undefined && !document.querySelector('.week img, .week b')),
      'markup from an Outlook subject reached the page');
    // Her own times are in her zone (Outlook's 10:00 Eastern Standard Time).
    const ops = await block(page, 'Ops sync', 1);
    assert(ops.text.includes('10:00–11:00'), 'Ops sync not on Tuesday 10:00 New York: ' + ops.text);
    // Ada's event by its id: not found, and nothing of it on the page.
    await page.goto(APP + '/event?id=' + state.boardId);
    const body = await text(page);
    assert(body.includes('does not exist (or is not yours)') && body.includes('P0002'), 'no not-found message');
    assert(!body.includes('Board meeting') && !body.includes('Copenhagen HQ'), 'Ada\'s event leaked');
    await page.browserContext().close();
  });

  await test('bad input in the form is a readable message, not a stack trace', async () => {
    const page = state.ada;
    await page.goto(APP + '/event/new?date=' + weekday(3));
    await page.type('input[name=subject]', 'Backwards');
    await page.$eval('input[name=start_time]', (el) => { el.value = '16:00'; });
    await page.$eval('input[name=end_time]', (el) => { el.value = '15:00'; });
    await go(page, 'button::-p-text(Create)');
    const body = await text(page);
    assert(body.includes('SQLSTATE 22023') && /end/i.test(body), 'no readable 22023 message: ' + body.slice(0, 400));
    assert(!/Traceback|psycopg|File "/.test(body), 'a stack trace reached the page');
    assert(await page.$eval('input[name=subject]', (el) => el.value) === 'Backwards', 'the form lost its input');
    const evs = (await truth('ada@contoso.example')).events;
    assert(!evs.some((e) => e.subject === 'Backwards'), 'the bad event reached Outlook');
  });

  await test('a series made in FlowAgent: edit the whole series, then cancel one occurrence', async () => {
    const page = state.ada;
    await page.goto(APP + '/event/new?date=' + weekday(0));
    await page.type('input[name=subject]', 'Focus time');
    await page.$eval('input[name=start_time]', (el) => { el.value = '16:00'; });
    await page.$eval('input[name=end_time]', (el) => { el.value = '17:00'; });
    await page.select('select[name=repeat]', 'daily');
    await page.$eval('input[name=count]', (el) => { el.value = '5'; });
    await go(page, 'button::-p-text(Create)');
    assert((await text(page)).includes('Saved.'), 'the series was not created');
    // Outlook expands the series; its occurrences come back linked to FlowAgent's master.
    await until('the series\' occurrences in the week view', async () => {
      await page.goto(APP + WEEK);
      return block(page, 'Focus time', 4).then(() => true, () => false);
    });
    await openBlock(page, 'Focus time', 1);                         // Tuesday's
    assert((await text(page)).includes('Edit this occurrence'), 'not an occurrence form');
    await go(page, '#edit-series');
    assert((await text(page)).includes('Edit the whole series'), 'not the series form');
    await page.$eval('input[name=subject]', (el) => { el.value = 'Deep work'; });
    await go(page, 'button::-p-text(Save the series)');
    assert((await text(page)).includes('Saved.'), 'the series edit was not saved');
    await until('the renamed series in the week view', async () => {
      await page.goto(APP + WEEK);
      return block(page, 'Deep work', 2).then(() => true, () => false);
    });
    await openBlock(page, 'Deep work', 2);                          // Wednesday's
    await go(page, 'button::-p-text(Cancel this occurrence)');
    assert((await text(page)).includes('This occurrence was cancelled.'), 'no cancelled message');
    const wed = weekday(2);
    const master = await until('the series edit and the cancellation in Outlook', async () => {
      const m = (await truth('ada@contoso.example')).events.find((e) => e.type === 'seriesMaster' &&
        e.subject === 'Deep work');
      // the simulator names a cancelled occurrence by its id, which ends in the date as YYYYMMDD
      return m && (m.cancelledOccurrences || []).some((c) => c.replace(/-/g, '').includes(wed.replace(/-/g, ''))) && m;
    }, 20000);
    assert(master.recurrence.range.numberOfOccurrences === 5, 'the series changed shape');
    let cols = [];
    await until('the week without Wednesday\'s occurrence', async () => {
      await page.goto(APP + WEEK);
      cols = await page.$$eval('.day-col', (els) => els.map((el) => el.innerText.includes('Deep work')));
      return cols.join() === 'true,true,false,true,true,false,false';
    }, 10000).catch(() => { throw new Error('week view: ' + cols.join()); });
    await shot(page, '08-week-after.png', true);
  });

  await test('a conflict shows on the Conflicts page and a button resolves it', async () => {
    const page = state.ada;
    // Microsoft refuses FlowAgent's writes for a while, so Ada's edit waits in the outbox ...
    await sim('POST', 'faults', { route: '/events/', method: 'PATCH', kind: '503', count: 100000, retry_after: 1 });
    try {
      await page.goto(APP + WEEK);
      await openBlock(page, 'Lunch with Grace', 4);
      await page.$eval('input[name=subject]', (el) => { el.value = 'Lunch with Grace and Alan'; });
      await go(page, 'button::-p-text(Save)');
      assert((await text(page)).includes('Saved.'), 'the edit was not saved');
      // ... while the same event changes in Outlook.
      const lunch = (await truth('ada@contoso.example')).events.find((e) => e.subject === 'Lunch with Grace');
      await sim('PATCH', `users/${SIM_USERS['ada@contoso.example']}/events/${encodeURIComponent(lunch.id)}`,
        { subject: 'Lunch with Grace (moved to the roof)' });
      await until('the conflict on the Conflicts page', async () => {
        await page.goto(APP + '/conflicts');
        return (await page.$('.conflict')) !== null;
      }, 20000);
    } finally {
      await sim('DELETE', 'faults');
    }
    const card = await text(page, '.conflict');
    assert(card.includes('Lunch with Grace and Alan') && card.includes('Lunch with Grace (moved to the roof)'),
      'the card does not show both versions: ' + card);
    await shot(page, '09-conflicts.png');
    await go(page, "button::-p-text(Keep FlowAgent's version)");
    const after = await text(page);
    assert(after.includes('Resolved.') && after.includes('No conflicts.'), 'not resolved: ' + after.slice(0, 300));
    await until('FlowAgent\'s version in Outlook', async () =>
      (await truth('ada@contoso.example')).events.some((e) => e.subject === 'Lunch with Grace and Alan'), 30000);
  });
}

main().catch((e) => {
  console.log('not ok 1 - the browser could not start');
  console.log('# ' + String(e && e.stack || e).split('\n').slice(0, 4).join('\n# '));
  process.exitCode = 1;
}).finally(() => {
  const failed = results.filter((r) => !r).length;
  console.log(`# ${results.length - failed} passed, ${failed} failed`);
  if (failed) process.exitCode = 1;
});

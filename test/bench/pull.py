"""The measurements of test/bench/pull (run by it, as the server's OS user).

Part 1: one mailbox of BENCH_EVENTS events. The raw rate is the simulator's
pages downloaded over one keep-alive TLS connection with nothing done to
them (the physical limit of this machine and simulator); the sync rate is
the worker's initial sync of the same pages into encrypted rows. The
worker's resident memory is sampled as the mailbox fills.

Part 2: BENCH_ACCOUNTS app-only mailboxes, polled with no change at 50 ms
simulated latency, at m365sync.max_connections 8 and 64: requests per
calendar and efficiency = (requests x latency / max_connections) / seconds.
"""
import http.client
import json
import os
import re
import ssl
import subprocess
import time
import urllib.parse

CA = os.environ["CA"]
PSQL = os.environ["PSQL"]
N_EVENTS = int(os.environ["BENCH_EVENTS"])
N_ACCOUNTS = int(os.environ["BENCH_ACCOUNTS"])
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SECRET = "bench-secret"
LATENCY = 0.050
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
CTX = ssl.create_default_context(cafile=CA)


def sql(q, stdin=None):
    r = subprocess.run([PSQL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", q],
                       input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("psql: " + r.stderr)
    return r.stdout.strip()


class Sim:
    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.url = url
        self.conn = http.client.HTTPSConnection(u.hostname, u.port, context=CTX)

    def req(self, method, path, body=None, headers=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        self.conn.request(method, path, json.dumps(body) if body is not None else None, h)
        r = self.conn.getresponse()
        data = r.read()
        return r.status, data

    def ctl(self, method, path, body=None):
        status, data = self.req(method, "/_sim/" + path, body)
        if status >= 300:
            raise SystemExit("sim %s %s: %s %s" % (method, path, status, data[:200]))
        return json.loads(data) if data else None


def setup_app(sim, tenant):
    sim.ctl("POST", "tenants", {"tenant": tenant})
    sim.ctl("POST", "apps", {"client_id": CLIENT_ID, "client_secret": SECRET,
                             "redirect_uris": ["https://flowagent.example/cb"]})
    sim.ctl("POST", "consent", {"tenant": tenant, "granted": True})


def window():
    day = int(time.time()) // 86400 * 86400
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    return iso(day - 30 * 86400), iso(day + 365 * 86400)


def rss_kb(pid):
    """Private resident memory (RssAnon): shared buffers the worker touches
    count in VmRSS too and grow with the table, not with the worker."""
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid):
    """User + system CPU seconds of a process so far."""
    with open("/proc/%s/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def workers():
    """The pids of the sync workers."""
    return sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'm365sync worker'").split()


def part1():
    sim = Sim(os.environ["SIM_FAST"])
    setup_app(sim, "contoso.example")
    user = sim.ctl("POST", "users", {"tenant": "contoso.example", "upn": "ada@contoso.example"})
    cal = user["calendars"][0]["id"]
    base = (int(time.time()) // 86400 + 1) * 86400 + 9 * 3600
    t = time.time()
    for off in range(0, N_EVENTS, 20000):
        start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + off * 300))
        sim.ctl("POST", "users/%s/events/bulk" % user["id"],
                {"count": min(20000, N_EVENTS - off), "start": start, "interval_minutes": 5, "duration_minutes": 30})
    print("setup: %d events in the simulator (%.1f s)" % (N_EVENTS, time.time() - t))
    token = sim.ctl("POST", "tokens/issue", {"upn": "ada@contoso.example", "client_id": CLIENT_ID})["access_token"]

    ws, we = window()
    path = "/v1.0/users/%s/calendars/%s/calendarView/delta?startDateTime=%s&endDateTime=%s" % (
        user["id"], cal, ws, we)
    headers = {"Authorization": "Bearer " + token, "Prefer": 'IdType="ImmutableId", outlook.timezone="UTC", odata.maxpagesize=100'}
    raw = Sim(os.environ["SIM_FAST"])
    best = None
    for _ in range(2):		# the first pass renders and caches pages in the simulator
        t = time.time()
        pages = events = 0
        p = path
        while True:
            status, data = raw.req("GET", p, headers=headers)
            if status != 200:
                raise SystemExit("raw download: %s %s" % (status, data[:200]))
            pages += 1
            events += data.count(b'"changeKey"')
            m = re.search(rb'"@odata.nextLink":"([^"]+)"', data)
            if not m:
                break
            p = urllib.parse.urlparse(m.group(1).decode()).path + "?" + urllib.parse.urlparse(m.group(1).decode()).query
        dt = time.time() - t
        best = dt if best is None else min(best, dt)
    raw_rate = events / best
    print("raw download: %d pages, %d events in %.2f s = %.0f events/s" % (pages, events, best, raw_rate))

    sql("SELECT m365sync.configure('%s', '%s', 'https://flowagent.example/cb')" % (CLIENT_ID, SECRET))
    sql("ALTER SYSTEM SET m365sync.graph_url = '%s/v1.0'" % os.environ["SIM_FAST"])
    sql("ALTER SYSTEM SET m365sync.login_url = '%s'" % os.environ["SIM_FAST"])
    sql("SELECT pg_reload_conf()")
    time.sleep(1)
    sql("""INSERT INTO m365sync.accounts (account_id, flowagent_user, mode, ms_user_id, status, token_expires_at)
           VALUES (1, 'bench-ada', 'delegated', '%s', 'connected', now() + interval '55 minutes');
           UPDATE m365sync.accounts SET access_token = m365sync._encrypt_text('accounts', 'access_token', 1, 1, '%s');
           INSERT INTO m365sync.calendars (account_id, calendar_id, graph_id, is_default, sync_enabled)
           VALUES (1, 1, '%s', true, true);""" % (user["id"], token, cal))
    pid = sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'm365sync worker'")
    rss0 = rss_kb(pid)
    cpu0 = cpu_s(pid)
    sim.ctl("DELETE", "log")
    marks = sorted({m for m in (10000, 50000, 100000, N_EVENTS) if m <= N_EVENTS})
    seen = {}
    # due now (committed), then a SIGHUP sets the worker's latch so it looks at once
    sql("UPDATE m365sync.accounts SET next_sync_at = now() WHERE account_id = 1")
    sql("SELECT pg_reload_conf()")
    peak = rss0
    while True:
        n = int(sql("SELECT count(*) FROM m365sync.events WHERE account_id = 1"))
        r = rss_kb(pid)
        peak = max(peak, r)
        for m in marks:
            if n >= m and m not in seen:
                seen[m] = r
        if sql("SELECT delta_is_final FROM m365sync.calendars WHERE account_id = 1") == "t" and n >= N_EVENTS:
            break
        time.sleep(0.2)
    took = float(sql("SELECT extract(epoch FROM max(finished_at) - min(started_at)) FROM m365sync.sync_run_log WHERE account_id = 1"))
    n = int(sql("SELECT count(*) FROM m365sync.events WHERE account_id = 1"))
    rate = n / took
    cpu = cpu_s(pid) - cpu0
    pages_log = [e for e in sim.ctl("GET", "log")["value"] if "calendarView/delta" in e["path"]]
    sim_s = sum(e["duration_ms"] for e in pages_log) / 1000.0
    print("worker initial sync: %d events in %.2f s = %.0f events/s  -> %.2fx the raw download rate (goal >= 0.5)"
          % (n, took, rate, rate / raw_rate))
    print("  of which: worker CPU %.2f s (%.0f us/event, a CPU-bound rate of %.0f events/s); the simulator "
          "spent %.2f s answering %d delta pages" % (cpu, cpu * 1e6 / n, n / cpu if cpu else 0, sim_s, len(pages_log)))
    print("worker private RSS (RssAnon): start %d kB; %s; peak %d kB (goal <= 64 MB, flat)" % (
        rss0, ", ".join("at %dk events %d kB" % (m // 1000, seen.get(m, 0)) for m in marks), peak))

    # The window move: Graph fixes a calendarView delta's window when its
    # round starts, so each move of the window is a full round that relists
    # the mailbox. Make the stored window last week's, as after a move.
    mark = sql("SELECT max(run_id) FROM m365sync.sync_run_log WHERE account_id = 1")
    sql("UPDATE m365sync.calendars SET window_start = window_start - interval '7 days',"
        " window_end = window_end - interval '7 days' WHERE account_id = 1")
    sim.ctl("DELETE", "log")
    cpu0 = cpu_s(pid)
    sql("UPDATE m365sync.accounts SET next_sync_at = now() WHERE account_id = 1")
    sql("SELECT pg_reload_conf()")
    while sql("SELECT count(*) FROM m365sync.sync_run_log WHERE account_id = 1 AND run_id > %s"
              " AND finished_at IS NOT NULL" % mark) == "0":
        time.sleep(0.2)
    cpu = cpu_s(pid) - cpu0
    reqs = len([e for e in sim.ctl("GET", "log")["value"] if "calendarView/delta" in e["path"]])
    print("window move (a full relist) of a mailbox of %d events: %d requests, worker CPU %.2f s (%.0f us/event)"
          % (n, reqs, cpu, cpu * 1e6 / n))
    print("  per mailbox per day: daily steps (before) %d requests, %.2f s CPU; weekly steps (now) %.1f requests, %.3f s CPU"
          % (reqs, cpu, reqs / 7.0, cpu / 7.0))


def part2():
    sim = Sim(os.environ["SIM_SLOW"])
    t = time.time()
    ids = add_mailboxes(sim, "fabrikam.example", N_ACCOUNTS, 1)
    lo, hi = min(ids), max(ids)
    print("setup: %d app-only mailboxes (%.1f s)" % (N_ACCOUNTS, time.time() - t))
    sql("ALTER SYSTEM SET m365sync.graph_url = '%s/v1.0'" % os.environ["SIM_SLOW"])
    sql("ALTER SYSTEM SET m365sync.login_url = '%s'" % os.environ["SIM_SLOW"])

    def round_all(mc):
        sql("ALTER SYSTEM SET m365sync.max_connections = %d" % mc)
        sql("SELECT pg_reload_conf()")
        time.sleep(1.5)
        mark = sql("SELECT coalesce(max(run_id), 0) FROM m365sync.sync_run_log")
        pids = workers()
        cpu0 = sum(cpu_s(p) for p in pids)
        sql("UPDATE m365sync.accounts SET next_sync_at = now() WHERE account_id BETWEEN %d AND %d" % (lo, hi))
        sql("SELECT pg_reload_conf()")
        while int(sql("SELECT count(*) FROM m365sync.sync_run_log WHERE run_id > %s AND finished_at IS NOT NULL"
                      " AND account_id BETWEEN %d AND %d" % (mark, lo, hi))) < N_ACCOUNTS:
            time.sleep(0.5)
        out = sql("""SELECT count(*), sum(http_requests), extract(epoch FROM max(finished_at) - min(started_at)),
                            count(*) FILTER (WHERE status <> 'ok')
                       FROM m365sync.sync_run_log WHERE run_id > %s AND account_id BETWEEN %d AND %d""" % (mark, lo, hi))
        n, reqs, secs, bad = out.split("|")
        cpu = sum(cpu_s(p) for p in pids) - cpu0
        return int(n), int(reqs), float(secs), int(bad), cpu

    n, reqs, secs, bad, cpu = round_all(64)
    print("initial sync of %d mailboxes at 64 connections: %d requests in %.1f s (%d failed rounds)" % (n, reqs, secs, bad))
    for mc in (8, 64):
        n, reqs, secs, bad, cpu = round_all(mc)
        bound = reqs * LATENCY / mc
        print("no-change poll, max_connections=%d: %d mailboxes, %.2f requests per calendar, %.1f s "
              "(latency-bound %.1f s) -> efficiency %.2f (goal >= 0.8), %d failed rounds; worker CPU %.0f us/mailbox"
              % (mc, n, reqs / n, secs, bound, bound / secs, bad, cpu * 1e6 / n))


def use_sim(url):
    sql("ALTER SYSTEM SET m365sync.graph_url = '%s/v1.0'" % url)
    sql("ALTER SYSTEM SET m365sync.login_url = '%s'" % url)
    sql("SELECT pg_reload_conf()")


NEXT_ID = [100000]


def add_mailboxes(sim, tenant, n, per):
    """n app-only mailboxes of `per` events each (90 minutes apart from a week
    ago, inside the window), not yet due; returns their account ids."""
    setup_app(sim, tenant)
    users = []
    for off in range(0, n, 500):
        users += sim.ctl("POST", "bulk_users", {"tenant": tenant, "count": min(500, n - off), "events_per_user": per,
                                                "prefix": tenant.split(".")[0]})["users"]
    rows, ids = [], []
    for u in users:
        rows.append("%d\t%s\t%s" % (NEXT_ID[0], u["id"], u["calendar"]))
        ids.append(NEXT_ID[0])
        NEXT_ID[0] += 1
    token = sim.ctl("POST", "tokens/issue", {"tenant": tenant, "client_id": CLIENT_ID})["access_token"]
    sql("""CREATE TEMP TABLE bench_rows (account_id bigint, user_id text, cal_id text);
           COPY bench_rows FROM STDIN;
           INSERT INTO m365sync.tenants (tenant, consent_status) VALUES ('%s', 'granted');
           INSERT INTO m365sync.accounts (account_id, flowagent_user, mode, ms_user_id, status, token_expires_at, next_sync_at, tenant_id)
             SELECT account_id, 'bench-' || account_id, 'application', user_id, 'connected', now() + interval '55 minutes',
                    'infinity', (SELECT tenant_id FROM m365sync.tenants WHERE tenant = '%s') FROM bench_rows;
           UPDATE m365sync.accounts a SET access_token = m365sync._encrypt_text('accounts', 'access_token', a.account_id, a.account_id, '%s')
             FROM bench_rows b WHERE b.account_id = a.account_id;
           INSERT INTO m365sync.calendars (account_id, calendar_id, graph_id, is_default, sync_enabled)
             SELECT account_id, account_id, cal_id, true, true FROM bench_rows;""" % (tenant, tenant, token),
        stdin="\n".join(rows) + "\n\\.\n")
    return ids


def sync_all(ids):
    """Make the accounts due and wait for one finished round of each; returns
    (seconds from the first start to the last finish, worker CPU s, peak
    RssAnon kB of any worker, requests, failed rounds)."""
    lo, hi = min(ids), max(ids)
    mark = sql("SELECT coalesce(max(run_id), 0) FROM m365sync.sync_run_log")
    pids = workers()
    cpu0 = sum(cpu_s(p) for p in pids)
    peak = 0
    sql("UPDATE m365sync.accounts SET next_sync_at = now() WHERE account_id BETWEEN %d AND %d" % (lo, hi))
    sql("SELECT pg_reload_conf()")
    while True:
        peak = max([peak] + [rss_kb(p) for p in pids])
        done = int(sql("SELECT count(DISTINCT account_id) FROM m365sync.sync_run_log WHERE run_id > %s AND finished_at IS NOT NULL"
                       " AND account_id BETWEEN %d AND %d AND NOT EXISTS (SELECT 1 FROM m365sync.calendars c"
                       " WHERE c.account_id = sync_run_log.account_id AND NOT c.delta_is_final)" % (mark, lo, hi)))
        if done >= len(ids):
            break
        time.sleep(0.5)
    cpu = sum(cpu_s(p) for p in pids) - cpu0
    secs, reqs, bad = sql("SELECT extract(epoch FROM max(finished_at) - min(started_at)), sum(http_requests),"
                          " count(*) FILTER (WHERE status <> 'ok') FROM m365sync.sync_run_log"
                          " WHERE run_id > %s AND account_id BETWEEN %d AND %d" % (mark, lo, hi)).split("|")
    return float(secs), cpu, peak, int(reqs), int(bad)


def reset(ids):
    """Forget what was synced, so the next round is an initial sync again."""
    lo, hi = min(ids), max(ids)
    sql("DELETE FROM m365sync.events WHERE account_id BETWEEN %d AND %d;"
        " UPDATE m365sync.calendars SET delta_link = NULL, delta_is_final = false, full_round_id = NULL"
        " WHERE account_id BETWEEN %d AND %d; CHECKPOINT" % (lo, hi, lo, hi))


def set_workers(n):
    sql("ALTER SYSTEM SET m365sync.max_workers = %d" % n)
    subprocess.run([os.path.join(os.path.dirname(PSQL), "pg_ctl"), "-D", os.environ["PGDATA"], "-w", "-m", "fast",
                    "-l", os.environ["PGDATA"] + "/../server.log", "restart"], check=True, capture_output=True)
    while len(workers()) != n:
        time.sleep(0.2)
    time.sleep(1)


def part3():
    """Initial sync of BENCH_PAR_MAILBOXES mailboxes of BENCH_PAR_EVENTS events
    with 1 and with 2 sync workers (no latency: CPU-bound)."""
    n = int(os.environ.get("BENCH_PAR_MAILBOXES", "8"))
    per = int(os.environ.get("BENCH_PAR_EVENTS", "2000"))
    sim = Sim(os.environ["SIM_FAST"])
    ids = add_mailboxes(sim, "parallel.example", n, per)
    use_sim(os.environ["SIM_FAST"])
    sql("ALTER SYSTEM SET m365sync.max_connections = 8")
    out = {}
    for w in (1, 2):
        set_workers(w)
        reset(ids)
        secs, cpu, peak, reqs, bad = sync_all(ids)
        events = int(sql("SELECT count(*) FROM m365sync.events WHERE account_id BETWEEN %d AND %d" % (min(ids), max(ids))))
        out[w] = secs
        print("initial sync of %d mailboxes x %d events with %d worker(s): %d events in %.2f s = %.0f events/s;"
              " worker CPU %.2f s (%.0f us/event), %d failed rounds" % (n, per, w, events, secs, events / secs, cpu,
                                                                       cpu * 1e6 / max(events, 1), bad))
    print("parallel speed-up 1 -> 2 workers: %.2fx (this machine has %d cores; the simulator shares them)"
          % (out[1] / out[2], os.cpu_count()))
    set_workers(1)


def part4():
    """Scale: the initial sync of BENCH_SCALE_MAILBOXES x BENCH_SCALE_EVENTS,
    then a steady state of BENCH_STEADY_MAILBOXES polled with no change at
    50 ms latency, reported as the worker's CPU share at a 5-minute interval."""
    n = int(os.environ.get("BENCH_SCALE_MAILBOXES", "1000"))
    per = int(os.environ.get("BENCH_SCALE_EVENTS", "1000"))
    # one count, or growing counts: "1000,3000,10000"
    steady = [int(x) for x in os.environ.get("BENCH_STEADY_MAILBOXES", "10000").split(",") if int(x) > 0]
    if steady != sorted(steady):
        raise SystemExit("BENCH_STEADY_MAILBOXES: counts in growing order")
    workers_n = int(os.environ.get("BENCH_WORKERS", "1"))
    if workers_n != 1:
        set_workers(workers_n)
    sql("ALTER SYSTEM SET m365sync.max_connections = %d" % CONNECTIONS)
    if n > 0 and per > 0:
        sim = Sim(os.environ["SIM_FAST"])
        t = time.time()
        ids = add_mailboxes(sim, "scale.example", n, per)
        print("setup: %d mailboxes x %d events (%.1f s)" % (n, per, time.time() - t))
        use_sim(os.environ["SIM_FAST"])
        time.sleep(1.5)
        secs, cpu, peak, reqs, bad = sync_all(ids)
        events = int(sql("SELECT count(*) FROM m365sync.events WHERE account_id BETWEEN %d AND %d" % (min(ids), max(ids))))
        print("scale initial sync: %d mailboxes, %d events in %.1f s (%.0f events/s), %d requests; worker CPU %.1f s"
              " (%.0f us/event); peak worker RssAnon %d kB; %d failed rounds"
              % (n, events, secs, events / secs, reqs, cpu, cpu * 1e6 / max(events, 1), peak, bad))
    if steady:
        # growth: the mailboxes are added in steps, each step polled in full
        sim = Sim(os.environ["SIM_SLOW"])
        use_sim(os.environ["SIM_SLOW"])
        ids = []
        per_mailbox = []
        for target in steady:
            t = time.time()
            new = add_mailboxes(sim, "steady%d.example" % target, target - len(ids), 1)
            ids += new
            print("setup: %d more mailboxes of 1 event, %d in all (%.1f s)" % (len(new), len(ids), time.time() - t))
            time.sleep(1.5)
            secs, cpu, peak, reqs, bad = sync_all(new)		# their initial sync
            print("  initial sync of the %d new mailboxes: %.1f s, %d requests, worker CPU %.2f s (%.0f us/mailbox)"
                  % (len(new), secs, reqs, cpu, cpu * 1e6 / len(new)))
            secs, cpu, peak, reqs, bad = sync_all(ids)
            bound = reqs * LATENCY / CONNECTIONS
            per_mailbox.append((len(ids), cpu * 1e6 / len(ids)))
            print("steady state: a no-change poll of %d mailboxes took %.1f s (latency-bound %.1f s, efficiency %.2f),"
                  " %d requests, worker CPU %.2f s (%.0f us/mailbox); polled every 5 minutes that is a worker CPU"
                  " share of %.2f%% of one core; peak worker RssAnon %d kB; %d failed rounds"
                  % (len(ids), secs, bound, bound / secs, reqs, cpu, cpu * 1e6 / len(ids), cpu / 300.0 * 100, peak, bad))
        if len(per_mailbox) > 1:
            print("growth of the poll's worker CPU per mailbox: %s (flat = linear growth)"
                  % ", ".join("%d mailboxes %.0f us" % p for p in per_mailbox))


print("== test/bench/pull (BENCH_EVENTS=%d BENCH_ACCOUNTS=%d)" % (N_EVENTS, N_ACCOUNTS))
parts = os.environ.get("BENCH_PARTS", "123")
if "1" in parts:
    part1()
if "2" in parts:
    part2()
if "3" in parts:
    part3()
if "4" in parts:
    part4()

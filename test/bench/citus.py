"""The measurements of test/bench/citus (run by it, as the server's OS user).

Part 1: CITUS_ACCOUNTS app-only mailboxes (one calendar each) polled with
no change at 50 ms simulated latency: every account made due at once, the
time from the first round's start to the last round's end, with one worker
node, then again after a second node was added and the shards rebalanced.
The latency-bound limit of a run is requests x latency / (max_connections x
nodes): what the nodes could do if every connection were always busy.

Part 2: events() for a one-week window of one user with CITUS_EVENTS events
over a year, through the coordinator against a single server holding the
same rows: pgbench, one client, the two servers taking turns for
CITUS_ROUNDS (3) rounds of 5 s each; the best round's mean time per call
of each, and the median call of all rounds. With CITUS_CPU=seconds, also the
CPU time per call of the servers' backends (the coordinator's and the
node's that serves it), which the machine's load sways less than the wall
time.
"""
import json
import os
import re
import subprocess
import time
import urllib.request
import ssl

CA = os.environ["CA"]
PSQL = os.environ["PSQL"]
N = int(os.environ["CITUS_ACCOUNTS"])
N_EVENTS = int(os.environ["CITUS_EVENTS"])
SIM = os.environ["SIM"]
PORT = {"coord": os.environ["PORT_COORD"], "w1": os.environ["PORT_W1"],
        "w2": os.environ["PORT_W2"], "single": os.environ["PORT_SINGLE"]}
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SECRET = "bench-secret"
LATENCY = 0.050
MAX_CONN = 8
CTX = ssl.create_default_context(cafile=CA)


def sql(node, q, stdin=None):
    r = subprocess.run([PSQL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-p", PORT[node], "-d", "postgres",
                        "-c", q], input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("psql (%s): %s" % (node, r.stderr))
    return r.stdout.strip()


def ctl(method, path, body=None):
    req = urllib.request.Request(SIM + "/_sim/" + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=CTX) as r:
        data = r.read()
    return json.loads(data) if data else None


def cluster():
    for n in ("coord", "w1", "w2"):
        sql(n, "CREATE EXTENSION citus")
    sql("coord", "SELECT citus_set_coordinator_host('127.0.0.1', %s)" % PORT["coord"])
    sql("coord", "SELECT citus_add_node('127.0.0.1', %s)" % PORT["w1"])
    sql("coord", "CREATE EXTENSION m365sync")
    sql("coord", "SELECT m365sync.distribute()")
    sql("single", "CREATE EXTENSION m365sync")


def accounts():
    ctl("POST", "tenants", {"tenant": "fabrikam.example"})
    ctl("POST", "apps", {"client_id": CLIENT_ID, "client_secret": SECRET,
                         "redirect_uris": ["https://flowagent.example/cb"]})
    ctl("POST", "consent", {"tenant": "fabrikam.example", "granted": True})
    t = time.time()
    users = ctl("POST", "bulk_users", {"tenant": "fabrikam.example", "count": N, "events_per_user": 1})["users"]
    rows = []
    for i, u in enumerate(users):
        cal = ctl("GET", "users/%s" % u["id"])["calendars"][0]["id"]
        rows.append("%d\t%s\t%s" % (1000 + i, u["id"], cal))
    token = ctl("POST", "tokens/issue", {"tenant": "fabrikam.example", "client_id": CLIENT_ID})["access_token"]
    sql("coord", "SELECT m365sync.configure('%s', '%s', 'https://flowagent.example/cb')" % (CLIENT_ID, SECRET))
    sql("coord", """CREATE TEMP TABLE bench_rows (account_id bigint, user_id text, cal_id text);
           COPY bench_rows FROM STDIN;
           INSERT INTO m365sync.tenants (tenant, consent_status) VALUES ('fabrikam.example', 'granted');
           INSERT INTO m365sync.accounts (account_id, flowagent_user, mode, ms_user_id, status, token_expires_at,
                                          next_sync_at, tenant_id, access_token)
             SELECT account_id, 'bench-' || account_id, 'application', user_id, 'connected', now() + interval '55 minutes',
                    'infinity', (SELECT tenant_id FROM m365sync.tenants WHERE tenant = 'fabrikam.example'),
                    m365sync._encrypt_text('accounts', 'access_token', account_id, account_id, '%s')
               FROM bench_rows;
           INSERT INTO m365sync.calendars (account_id, calendar_id, graph_id, is_default, sync_enabled)
             SELECT account_id, account_id, cal_id, true, true FROM bench_rows;""" % token,
        stdin="\n".join(rows) + "\n\\.\n")
    print("setup: %d app-only mailboxes (%.1f s)" % (N, time.time() - t))


def wake_workers():
    sql("coord", "SELECT run_command_on_workers('SELECT pg_reload_conf()')")


def poll_all():
    """Every account due now; wait for all rounds; (rounds, requests, seconds, failed)."""
    mark = sql("coord", "SELECT now()")
    sql("coord", "UPDATE m365sync.accounts SET next_sync_at = now() WHERE account_id >= 1000")
    wake_workers()
    q = "FROM m365sync.sync_run_log WHERE started_at >= '%s' AND account_id >= 1000" % mark
    while int(sql("coord", "SELECT count(*) %s AND finished_at IS NOT NULL" % q)) < N:
        time.sleep(0.5)
    out = sql("coord", "SELECT count(*), sum(http_requests), extract(epoch FROM max(finished_at) - min(started_at)),"
                       " count(*) FILTER (WHERE status <> 'ok') " + q)
    n, reqs, secs, bad = out.split("|")
    return int(n), int(reqs), float(secs), int(bad)


def part1():
    results = {}
    print("initial sync, one worker node: %d rounds, %d requests in %.1f s (%d failed)" % poll_all())
    for nodes in (1, 2):
        if nodes == 2:
            t = time.time()
            sql("coord", "SELECT citus_add_node('127.0.0.1', %s)" % PORT["w2"])
            sql("coord", "SELECT m365sync.distribute()")    # the new node's id ranges
            sql("coord", "SELECT citus_rebalance_start(shard_transfer_mode => 'block_writes')")
            sql("coord", "SELECT citus_rebalance_wait()")
            print("second worker node added and shards rebalanced (%.1f s): %s" % (time.time() - t, sql(
                "coord", "SELECT string_agg('port ' || nodeport || ': ' || n || ' shards', ', ') FROM"
                         " (SELECT n.nodeport, count(*) n FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)"
                         " JOIN pg_dist_node n USING (groupid) WHERE s.logicalrelid = 'm365sync.accounts'::regclass"
                         " GROUP BY 1 ORDER BY 1) x")))
            poll_all()    # the moved accounts' first rounds on their new node
        n, reqs, secs, bad = poll_all()
        bound = reqs * LATENCY / (MAX_CONN * nodes)
        results[nodes] = n / secs
        print("no-change poll, %d worker node(s), max_connections=%d each: %d mailboxes, %.2f requests per calendar,"
              " %.1f s = %.0f rounds/s (latency-bound %.1f s = %.0f rounds/s) -> %.2f of the limit, %d failed rounds"
              % (nodes, MAX_CONN, n, reqs / n, secs, n / secs, bound, n / bound, bound / secs, bad))
    print("two nodes : one node = %.2fx (goal >= 1.8x)" % (results[2] / results[1]))


def pgbench_ms(node, script, seconds=5):
    """(mean ms, sorted call times in ms) of script on node: pgbench, one client."""
    with open("events.sql", "w") as f:
        f.write(script)
    for old in os.listdir("."):
        if old.startswith("evlog."):
            os.unlink(old)
    r = subprocess.run([os.environ["PGBENCH"], "-n", "-c", "1", "-T", str(seconds), "-f", "events.sql", "-p", PORT[node],
                        "-l", "--log-prefix=evlog", "postgres"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("pgbench (%s): %s" % (node, r.stderr))
    us = []
    for name in os.listdir("."):
        if name.startswith("evlog."):
            with open(name) as f:
                us += [int(line.split()[2]) for line in f if line.strip()]
    return float(re.search(r"latency average = ([0-9.]+) ms", r.stdout).group(1)), sorted(u / 1000.0 for u in us)


def backend_pids(node):
    """The pgbench session's backend on node, and on the coordinator the
    worker node's backend that serves its routed calls (Citus keeps that
    connection for the session)."""
    pids = [sql(node, "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench'")]
    if node == "coord":
        pids.append(sql("w1", "SELECT string_agg(pid::text, ',') FROM pg_stat_activity"
                              " WHERE query LIKE '%_events_window%' AND pid <> pg_backend_pid()"))
    return [int(x) for p in pids for x in p.split(",") if x]


def cpu_ticks(pids):
    t = []
    for pid in pids:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        t.append(int(fields[11]) + int(fields[12]))    # utime, stime
    return t


def cpu_per_call(node, script, seconds):
    """CPU ms per call of the servers' backends (the coordinator's and the
    worker node's for the coordinator): pgbench for seconds, the backends'
    CPU time between 1 s after the start and 1 s before the end, over the
    calls that ended in between. With CITUS_HOLD the pids are printed and
    written to CITUS_HOLD's file first, for perf."""
    with open("events.sql", "w") as f:
        f.write(script)
    for old in os.listdir("."):
        if old.startswith("evlog."):
            os.unlink(old)
    run = subprocess.Popen([os.environ["PGBENCH"], "-n", "-c", "1", "-T", str(seconds), "-f", "events.sql",
                            "-p", PORT[node], "-l", "--log-prefix=evlog", "postgres"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    pids = backend_pids(node)
    if os.environ.get("CITUS_HOLD"):
        with open(os.environ["CITUS_HOLD"], "w") as f:
            f.write("%s %s\n" % (node, " ".join(map(str, pids))))
        print("  hold: %s backends %s" % (node, pids), flush=True)
    hz = os.sysconf("SC_CLK_TCK")
    t0, c0 = time.time(), cpu_ticks(pids)
    time.sleep(seconds - 2)
    t1, c1 = time.time(), cpu_ticks(pids)
    run.wait()
    n = 0
    for name in os.listdir("."):
        if name.startswith("evlog."):
            with open(name) as f:
                for line in f:
                    x = line.split()
                    end = int(x[4]) + int(x[5]) / 1e6
                    n += t0 <= end < t1
    return [(b - a) * 1000.0 / hz / max(n, 1) for a, b in zip(c0, c1)], n


def load():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def part2():
    # the same rows on both servers (times made once)
    t0 = time.time()
    stmts = "".join(
        "SELECT m365sync.upsert_event('{\"subject\": \"week %d\", \"body\": {\"contentType\": \"text\", \"content\": \"%s\"},"
        " \"start\": {\"dateTime\": \"%s\", \"timeZone\": \"UTC\"}, \"end\": {\"dateTime\": \"%s\", \"timeZone\": \"UTC\"}}');\n"
        % (i, "x" * 400, time.strftime("%Y-%m-%dT%H:00:00", time.gmtime(t0 + i * 365 * 86400 / N_EVENTS)),
           time.strftime("%Y-%m-%dT%H:30:00", time.gmtime(t0 + i * 365 * 86400 / N_EVENTS)))
        for i in range(N_EVENTS))
    for node in ("coord", "single"):
        if node == "single":
            sql(node, "SELECT m365sync.configure('%s', '%s', 'https://flowagent.example/cb')" % (CLIENT_ID, SECRET))
        # the worker never picks it: no Graph user id; user_accounts and
        # account_routes as m365_store_accounts_create writes them with every account
        sql(node, """INSERT INTO m365sync.accounts (account_id, flowagent_user, mode, status)
                       VALUES (1, 'bench-week', 'application', 'connected');
                     INSERT INTO m365sync.user_accounts (flowagent_user, account_id) VALUES ('bench-week', 1);
                     INSERT INTO m365sync.account_routes (account_id) VALUES (1);
                     INSERT INTO m365sync.calendars (account_id, calendar_id, graph_id, is_default, sync_enabled)
                       VALUES (1, 1, 'cal-1', true, false);""")
        subprocess.run([PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-p", PORT[node], "-d", "postgres"], check=True,
                       input="BEGIN;\nSET LOCAL m365sync.flowagent_user = 'bench-week';\n" + stmts + "COMMIT;\n",
                       text=True, capture_output=True)
    script = ("BEGIN;\nSET LOCAL m365sync.flowagent_user = 'bench-week';\n"
              "SELECT count(*) FROM m365sync.events(now() + interval '30 days', now() + interval '37 days');\nCOMMIT;\n")
    n = sql("single", "BEGIN; SET LOCAL m365sync.flowagent_user = 'bench-week';"
                      " SELECT count(*) FROM m365sync.events(now() + interval '30 days', now() + interval '37 days');"
                      " COMMIT;")
    # the same answer from both (event ids differ: each Citus node has its own range)
    # (one statement a line: Citus propagates a SET LOCAL as the text of the
    # query string it came in, so one string must hold nothing else)
    same = [subprocess.run([PSQL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-p", PORT[node], "-d", "postgres"],
                           input="BEGIN;\nSET LOCAL m365sync.flowagent_user = 'bench-week';\n"
                                 "SELECT json_agg(to_jsonb(e) - 'event_id' ORDER BY e.start_at, e.subject)"
                                 " FROM m365sync.events(to_timestamp(%d) + interval '30 days',"
                                 " to_timestamp(%d) + interval '37 days') e;\n"
                                 "COMMIT;\n" % (t0, t0), text=True, capture_output=True, check=True).stdout.strip()
            for node in ("single", "coord")]
    if same[0] != same[1] or int(n) == 0:
        a, b = (json.loads(x or "[]") for x in same)
        diff = next(((x, y) for x, y in zip(a, b) if x != y), (len(a), len(b)))
        raise SystemExit("events() differs between the single server and the coordinator (or is empty): %r"
                         % (diff,))
    print("  events() answers the same on both (%s events)" % n)
    # the two servers take turns, so a load that comes and goes on the
    # machine meets both alike
    rounds = int(os.environ.get("CITUS_ROUNDS", "3"))
    means = {"single": [], "coord": []}
    calls = {"single": [], "coord": []}
    for i in range(rounds):
        for node in ("single", "coord"):
            mean, ms = pgbench_ms(node, script)
            means[node].append(mean)
            calls[node] += ms
            print("  round %d, %s: mean %.2f ms, median %.2f ms of %d calls (load average %s)"
                  % (i + 1, node, mean, ms[len(ms) // 2], len(ms), load()))
    single = min(means["single"])
    coord = min(means["coord"])
    print("events() of a one-week window (%s events of %d), best round's mean: single server %.2f ms,"
          " Citus coordinator %.2f ms -> %.2fx (goal <= 1.5x)" % (n, N_EVENTS, single, coord, coord / single))
    med = {k: sorted(v)[len(v) // 2] for k, v in calls.items()}
    print("  median call of all rounds: single server %.2f ms (%d calls), coordinator %.2f ms (%d calls) -> %.2fx"
          % (med["single"], len(calls["single"]), med["coord"], len(calls["coord"]), med["coord"] / med["single"]))
    if os.environ.get("CITUS_CPU"):
        # CPU time per call, less sensitive to the machine's load than wall time
        secs = int(os.environ["CITUS_CPU"])
        cpu = {}
        for node in ("single", "coord"):
            each, n = cpu_per_call(node, script, secs)
            cpu[node] = sum(each)
            print("  CPU per call, %s: %.3f ms%s (%d calls, load average %s)"
                  % (node, cpu[node], "" if len(each) == 1 else " = coordinator %.3f + node %.3f" % tuple(each[:2]),
                     n, load()))
        print("  CPU per call: coordinator and node : single server = %.2fx" % (cpu["coord"] / cpu["single"]))
    # the same with one connection per node
    pool1, _ = pgbench_ms("coord", script.replace("BEGIN;\n", "BEGIN;\nSET LOCAL citus.max_adaptive_executor_pool_size = 1;\n", 1))
    print("  the same, citus.max_adaptive_executor_pool_size = 1: %.2f ms -> %.2fx" % (pool1, pool1 / single))


PARTS = os.environ.get("CITUS_PARTS", "12")
print("== test/bench/citus (CITUS_ACCOUNTS=%d CITUS_EVENTS=%d CITUS_PARTS=%s)" % (N, N_EVENTS, PARTS))
cluster()
if "1" in PARTS:
    accounts()
    part1()
if "2" in PARTS:
    part2()

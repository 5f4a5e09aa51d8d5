"""The measurements of test/bench/load (run by it, as the server's OS user).

Setup: LOAD_ACCOUNTS app-only mailboxes in one simulated tenant, made the way
an operator does it: m365sync.configure(), admin consent through the
simulator's consent page and admin_consent_complete(), then add_mailbox()
per mailbox; the simulator holds LOAD_EVENTS events per mailbox. The worker's
initial sync of all of them finishes before anything is measured.

Two modes, LOAD_SECONDS each, the same pgbench command (FlowAgent role,
prepared statements, LOAD_CLIENTS clients, the scripts of test/bench/load_sql
weighted by LOAD_WEIGHTS), each after a short read-only warm-up; with
LOAD_SEGMENTS > 1 the modes alternate in that many segments each (syncing,
idle, syncing, idle, ...), so that drifting load from other processes on the
machine hits both alike; after each idle segment but the last the worker
first pushes the backlog it left (unmeasured), so that syncing segments see
the steady state. The worker is preloaded in both:
  syncing  every account due once per LOAD_INTERVAL (spread), LOAD_CHANGES
           Outlook-side changes per second through the simulator's control
           API; the worker pulls them and pushes what pgbench writes.
  idle     every account parked (backoff_until = infinity), no Outlook-side
           changes: the worker wakes on FlowAgent's commits and finds nothing
           to do; the outbox fills and is drained afterwards.
Per mode, pooled over its segments: pgbench's failed transactions and
aborted clients, server log ERRORs, deadlocks and warnings, latency average
and percentiles from the per-transaction log (overall and per script), CPU
seconds of PostgreSQL (the worker apart), the simulator, pgbench and
everything else on the machine; for syncing what the worker did. At the end
whether the outbox drains and no round failed. Exit status 1 on any error.
"""
import glob
import http.client
import json
import os
import random
import re
import resource
import ssl
import subprocess
import threading
import time
import urllib.parse

WORK = os.environ["WORK"]
BIN = os.environ["BIN"]
SIM = os.environ["SIM"]
CA = os.environ["CA"]
SECONDS = int(os.environ["LOAD_SECONDS"])
CLIENTS = int(os.environ["LOAD_CLIENTS"])
N = int(os.environ["LOAD_ACCOUNTS"])
EVENTS = int(os.environ["LOAD_EVENTS"])
INTERVAL = os.environ["LOAD_INTERVAL"]
CHANGES = float(os.environ["LOAD_CHANGES"])
WEIGHTS = [w.split("=") for w in os.environ["LOAD_WEIGHTS"].split()]
SEGMENTS = int(os.environ.get("LOAD_SEGMENTS", "2"))
WARMUP = max(5, min(20, SECONDS // 10))
TENANT = "load.example"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SECRET = "load-secret-%08x" % random.getrandbits(32)
REDIRECT = "https://flowagent.example/m365/callback"
CTX = ssl.create_default_context(cafile=CA)


def sql(q, stdin=None, db_user="postgres"):
    r = subprocess.run([BIN + "/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-U", db_user,
                        "-d", "postgres", "-c", q] if stdin is None else
                       [BIN + "/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-U", db_user, "-d", "postgres"],
                       input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("psql: " + r.stderr[:2000])
    return r.stdout.strip()


def q_lit(s):
    return "'" + s.replace("'", "''") + "'"


class Sim:
    def __init__(self):
        u = urllib.parse.urlparse(SIM)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def req(self, method, path, body=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(self.host, self.port, context=CTX, timeout=60)
            try:
                self.conn.request(method, path, json.dumps(body) if body is not None else None,
                                  {"Content-Type": "application/json"})
                r = self.conn.getresponse()
                return r.status, r.getheader("Location"), r.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise

    def ctl(self, method, path, body=None):
        status, _, data = self.req(method, "/_sim/" + path, body)
        if status >= 300:
            raise SystemExit("sim %s %s: %s %s" % (method, path, status, data[:200]))
        return json.loads(data) if data else None


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))


def setup(sim):
    t0 = time.time()
    sim.ctl("POST", "config", {"log": False})
    sim.ctl("POST", "tenants", {"tenant": TENANT})
    sim.ctl("POST", "apps", {"client_id": CLIENT_ID, "client_secret": SECRET, "redirect_uris": [REDIRECT]})
    sql("SELECT m365sync.configure(%s, %s, %s)" % (q_lit(CLIENT_ID), q_lit(SECRET), q_lit(REDIRECT)))
    url = sql("SELECT m365sync.admin_consent_url(%s)" % q_lit(TENANT))
    u = urllib.parse.urlparse(url)
    status, loc, _ = sim.req("GET", u.path + "?" + u.query)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(loc or "").query))
    if status != 302 or q.get("admin_consent") != "True":
        raise SystemExit("admin consent: %s %s" % (status, q))
    sql("SELECT m365sync.admin_consent_complete(%s, %s, true)" % (q_lit(q["state"]), q_lit(q["tenant"])))
    start = iso((int(time.time()) // 3600 - 48) * 3600)
    users = sim.ctl("POST", "bulk_users", {"tenant": TENANT, "count": N, "events_per_user": EVENTS,
                                           "start": start, "prefix": "load", "interval_minutes": 480,
                                           "duration_minutes": 30})["users"]
    t1 = time.time()
    sql(None, stdin="".join("SELECT m365sync.add_mailbox('load-%d', %s, %s);\n" % (i + 1, q_lit(TENANT), q_lit(u["upn"]))
                            for i, u in enumerate(users)))
    t2 = time.time()
    print("setup: %d mailboxes x %d events in the simulator; configure, admin consent, %d x add_mailbox (%.1f s)"
          % (N, EVENTS, N, t2 - t1))
    while True:
        done, ev = sql("SELECT count(*) FILTER (WHERE last_sync_at IS NOT NULL), sum(events) FROM m365sync.account_status").split("|")
        if int(done) >= N and int(ev or 0) >= N * EVENTS:
            break
        if time.time() - t2 > 1800:
            raise SystemExit("initial sync did not finish: %s accounts, %s events" % (done, ev))
        time.sleep(1)
    print("initial sync by the worker: %d accounts, %s events (%.1f s); total setup %.1f s"
          % (N, ev, time.time() - t2, time.time() - t0))
    return users


class Changer(threading.Thread):
    """Outlook-side edits at CHANGES per second: rename (60%), create (25%), delete (15%)."""

    def __init__(self, users):
        super().__init__(daemon=True)
        self.users = users
        self.stop = threading.Event()
        self.done = {"rename": 0, "create": 0, "delete": 0}
        self.errors = 0
        self.rng = random.Random(11)

    def one(self, sim):
        u = self.rng.choice(self.users)
        kind = self.rng.choices(["rename", "create", "delete"], [60, 25, 15])[0]
        if kind == "create":
            st = (int(time.time()) // 3600 + self.rng.randint(1, 160)) * 3600
            body = {"subject": "Outlook side", "start": {"dateTime": iso(st), "timeZone": "UTC"},
                    "end": {"dateTime": iso(st + 1800), "timeZone": "UTC"}}
            sim.ctl("POST", "users/%s/events" % u["id"], body)
        else:
            evs = [e for e in sim.ctl("GET", "users/%s/truth" % u["id"])["events"] if not e.get("isCancelled")]
            if not evs:
                return
            e = self.rng.choice(evs)
            if kind == "rename":
                sim.ctl("PATCH", "users/%s/events/%s" % (u["id"], e["id"]), {"subject": "Renamed in Outlook"})
            else:
                status, _, _ = sim.req("DELETE", "/_sim/users/%s/events/%s" % (u["id"], e["id"]))
                if status != 204:
                    raise RuntimeError("delete %s" % status)
        self.done[kind] += 1

    def run(self):
        sim = Sim()
        nxt = time.time()
        while not self.stop.is_set():
            try:
                self.one(sim)
            except (Exception, SystemExit):
                self.errors += 1
            nxt += 1.0 / CHANGES
            self.stop.wait(max(0, nxt - time.time()))


def cpu_seconds(pid):
    try:
        with open("/proc/%s/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def machine_busy():
    """Busy CPU seconds of the whole machine (every session on it) from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def postgres_cpu():
    """CPU seconds of the postmaster, its live children and the children it has reaped."""
    with open(os.environ["PGDATA"] + "/postmaster.pid") as f:
        pm = f.readline().strip()
    with open("/proc/%s/stat" % pm) as f:
        st = f.read().rsplit(")", 1)[1].split()
    total = sum(int(x) for x in st[11:15]) / os.sysconf("SC_CLK_TCK")
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if st[1] == pm:
                total += (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")
    return total


def pgbench_cmd(seconds, scripts, log_prefix=None):
    cmd = [BIN + "/pgbench", "-n", "-U", "flowagent", "-M", "prepared", "-c", str(CLIENTS), "-j", "2",
           "-T", str(seconds), "-D", "nusers=%d" % N, "--failures-detailed", "-P", "30"]
    if log_prefix:
        cmd += ["--log", "--log-prefix", log_prefix]
    for name, w in scripts:
        cmd += ["-f", "%s/sql/%s.sql@%s" % (WORK, name, w)]
    return cmd


def pgbench(seconds, scripts, log_prefix=None):
    cmd = pgbench_cmd(seconds, scripts, log_prefix)
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=WORK)
    return r, cmd


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))]


def read_logs(prefix):
    """Latencies (ms) by script number and failures by kind from pgbench's per-transaction logs."""
    lat, fails = {}, {}
    for fn in glob.glob(prefix + ".*"):
        with open(fn) as f:
            for line in f:
                p = line.split()
                if len(p) < 6:
                    continue
                if p[2].isdigit():
                    lat.setdefault(int(p[3]), []).append(int(p[2]) / 1000.0)
                else:
                    fails[p[2]] = fails.get(p[2], 0) + 1
    return lat, fails


def stats(vals):
    v = sorted(vals)
    return {"n": len(v), "avg": sum(v) / len(v) if v else float("nan"),
            "p50": pct(v, 50), "p95": pct(v, 95), "p99": pct(v, 99), "max": v[-1] if v else float("nan")}


def fmt(s):
    return "avg %7.2f  p50 %7.2f  p95 %7.2f  p99 %7.2f  max %8.1f ms  (%d)" % (
        s["avg"], s["p50"], s["p95"], s["p99"], s["max"], s["n"])


def log_problems(text):
    lines = text.splitlines()
    errors = [l for l in lines if re.search(r"\b(ERROR|FATAL|PANIC):", l)]
    deadlocks = [l for l in lines if "deadlock" in l.lower()]
    lockwaits = [l for l in lines if "still waiting for" in l]
    warnings = [l for l in lines if "WARNING:" in l]
    return errors, deadlocks, lockwaits, warnings


def running_rounds():
    return int(sql("SELECT count(*) FROM m365sync.sync_run_log WHERE finished_at IS NULL"))


def set_mode(syncing):
    """syncing: every account due within one sync interval, as in steady state.
    idle: every account parked (backoff_until = infinity, which a finished
    round lifts, so park again until no round runs): the worker wakes on
    FlowAgent's commits but finds nothing to do. One account per statement:
    the worker's round holds several accounts' rows, so a bulk UPDATE
    could deadlock with it."""
    ids = sql("SELECT account_id FROM m365sync.accounts ORDER BY 1").split()
    if syncing:
        sql(None, stdin="".join("UPDATE m365sync.accounts SET backoff_until = NULL, next_sync_at = now() + "
                                "random() * %s::interval WHERE account_id = %s;\n" % (q_lit(INTERVAL), i) for i in ids))
        return
    while True:
        sql(None, stdin="".join("UPDATE m365sync.accounts SET backoff_until = 'infinity' WHERE account_id = %s;\n" % i
                                for i in ids))
        if running_rounds() == 0 and sql("SELECT count(*) FROM m365sync.accounts WHERE backoff_until < 'infinity' "
                                         "OR backoff_until IS NULL") == "0":
            return
        time.sleep(1)


def segment(mode, i, seconds, users):
    """One pgbench run of the given mode; returns its raw figures."""
    set_mode(mode == "syncing")
    pgbench(WARMUP, [("read", 1)])
    label = "%s_%d" % (mode, i)
    mark_ts = sql("SELECT clock_timestamp()")
    nf0 = int(sql("SELECT last_value FROM load.not_found"))
    log_off = os.path.getsize(WORK + "/server.log")
    wpid = sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'm365sync worker'")
    sim_pid = os.environ["SIM_PID"]
    time.sleep(1)				# the warm-up's backends are reaped
    cpu0 = (cpu_seconds(wpid), cpu_seconds(sim_pid), postgres_cpu(), machine_busy(),
            resource.getrusage(resource.RUSAGE_CHILDREN))
    changer = None
    if mode == "syncing" and CHANGES > 0:
        changer = Changer(users)
        changer.start()
    t0 = time.time()
    r, cmd = pgbench(seconds, WEIGHTS, log_prefix=WORK + "/pgb_" + label)
    wall = time.time() - t0
    end_ts = sql("SELECT clock_timestamp()")
    if changer:
        changer.stop.set()
        changer.join()
    time.sleep(1)
    cpu1 = (cpu_seconds(wpid), cpu_seconds(sim_pid), postgres_cpu(), machine_busy(),
            resource.getrusage(resource.RUSAGE_CHILDREN))
    with open(WORK + "/server.log", errors="replace") as f:
        f.seek(log_off)
        log_text = f.read()
    out = r.stdout
    m = lambda rx: (re.search(rx, out) or [None, "0"])[1]
    rounds = sql("SELECT count(*) FROM m365sync.sync_run_log WHERE started_at BETWEEN %s AND %s"
                 % (q_lit(mark_ts), q_lit(end_ts)))
    print("   %-8s segment %d: %s transactions, %s tps, %s failed, exit %d; %s rounds started"
          % (mode, i + 1, m(r"number of transactions actually processed: (\d+)"), m(r"tps = ([0-9.]+)"),
             m(r"number of failed transactions: (\d+)"), r.returncode, rounds))
    return {"rc": r.returncode, "cmd": cmd, "stderr": r.stderr, "wall": wall,
            "processed": int(m(r"number of transactions actually processed: (\d+)")),
            "failed": int(m(r"number of failed transactions: (\d+)")),
            "aborted": "aborted" in (out + r.stderr), "log": log_text, "prefix": WORK + "/pgb_" + label,
            "not_found": int(sql("SELECT last_value FROM load.not_found")) - nf0,
            "worker_cpu": cpu1[0] - cpu0[0], "sim_cpu": cpu1[1] - cpu0[1], "pg_cpu": cpu1[2] - cpu0[2],
            "machine_cpu": cpu1[3] - cpu0[3],
            "pgbench_cpu": (cpu1[4].ru_utime + cpu1[4].ru_stime) - (cpu0[4].ru_utime + cpu0[4].ru_stime),
            "window": (mark_ts, end_ts),
            "changes": dict(changer.done) if changer else {}, "change_errors": changer.errors if changer else 0}


def report(mode, segs):
    """Pooled figures of one mode's segments."""
    lat, fails = {}, {}
    for sg in segs:
        l, f = read_logs(sg["prefix"])
        for k, v in l.items():
            lat.setdefault(k, []).extend(v)
        for k, v in f.items():
            fails[k] = fails.get(k, 0) + v
    tot = lambda k: sum(sg[k] for sg in segs)
    errors, deadlocks, lockwaits, warnings = log_problems("\n".join(sg["log"] for sg in segs))
    res = {"all": stats([x for v in lat.values() for x in v]), "processed": tot("processed"),
           "failed": tot("failed") + sum(fails.values()), "aborted": any(sg["aborted"] for sg in segs),
           "rc": max(sg["rc"] for sg in segs), "errors": errors, "deadlocks": deadlocks,
           "tps": tot("processed") / tot("wall")}
    print("\n== %s (%d segment%s, %.0f s): %d transactions, %.1f tps, %d failed, clients aborted: %s"
          % (mode, len(segs), "" if len(segs) == 1 else "s", tot("wall"), res["processed"], res["tps"],
             res["failed"], "yes" if res["aborted"] else "no"))
    print("   all      " + fmt(res["all"]))
    for i, v in sorted(lat.items()):
        print("   %-8s %s" % (WEIGHTS[i][0], fmt(stats(v))))
    print("   not-found races handled like the app would (event deleted between read and write): %d" % tot("not_found"))
    print("   server log: %d ERROR/FATAL/PANIC, %d deadlock lines, %d lock waits > deadlock_timeout, %d WARNING"
          % (len(errors), len(deadlocks), len(lockwaits), len(warnings)))
    for l in (errors + deadlocks + lockwaits + warnings)[:10]:
        print("     " + l[:300])
    for sg in segs:
        if sg["rc"] != 0 or sg["aborted"]:
            print("   pgbench stderr (tail):\n" + "\n".join("     " + l for l in sg["stderr"].splitlines()[-15:]))
    ncpu = os.cpu_count()
    other = tot("machine_cpu") - tot("pg_cpu") - tot("sim_cpu") - tot("pgbench_cpu")
    per_tx = 1000.0 * (tot("pg_cpu") - tot("worker_cpu")) / max(1, res["processed"])
    print("   CPU seconds (%.0f available on %d CPUs): PostgreSQL %.1f (worker %.1f; the other processes %.2f ms per"
          " transaction), simulator %.1f, pgbench %.1f, everything else on the machine %.1f"
          % (tot("wall") * ncpu, ncpu, tot("pg_cpu"), tot("worker_cpu"), per_tx, tot("sim_cpu"),
             tot("pgbench_cpu"), other))
    if mode == "syncing":
        r = sql("""SELECT count(*), coalesce(sum(applied), 0), coalesce(sum(deleted), 0), coalesce(sum(pushed), 0),
                          coalesce(sum(http_requests), 0) FROM m365sync.sync_run_log WHERE %s"""
                % " OR ".join("started_at BETWEEN %s AND %s" % (q_lit(a), q_lit(b)) for a, b in
                              (sg["window"] for sg in segs)))
        print("   worker, rounds started during the segments: %s rounds, %s events applied, %s deleted, "
              "%s changes pushed, %s HTTP requests" % tuple(r.split("|")))
        ch = {}
        for sg in segs:
            for k, v in sg["changes"].items():
                ch[k] = ch.get(k, 0) + v
        print("   Outlook-side changes applied to the simulator: %s (%d control API errors)"
              % (", ".join("%s %d" % kv for kv in sorted(ch.items())), tot("change_errors")))
    return res


def catch_up():
    """Between an idle segment and the next syncing one, unmeasured: the
    worker pushes what the idle segment queued, so that syncing segments
    measure the steady state, not a catch-up of a backlog."""
    set_mode(True)
    t = time.time()
    n = sql("SELECT count(*) FROM m365sync.outbox WHERE state = 'pending'")
    while sql("SELECT count(*) FROM m365sync.outbox WHERE state = 'pending'") != "0" and time.time() - t < 600:
        time.sleep(1)
    print("   (unmeasured: the worker pushed the %s changes the idle segment queued in %.0f s)" % (n, time.time() - t))


def drain():
    """After the last segment: every account due again; wait until the outbox is empty."""
    set_mode(True)
    t1 = time.time()
    while True:
        pend, failed_push = sql("SELECT count(*) FILTER (WHERE state = 'pending'), "
                                "count(*) FILTER (WHERE state = 'failed') FROM m365sync.outbox").split("|")
        if int(pend) == 0 or time.time() - t1 > 600:
            break
        time.sleep(1)
    while running_rounds() and time.time() - t1 < 660:
        time.sleep(1)
    conflicts = sql("SELECT count(*) FROM m365sync.conflicts WHERE resolved_at IS NULL")
    errs = sql("SELECT coalesce(string_agg(format('%s x %s', n, coalesce(error_code, '?')), ', '), 'none') FROM "
               "(SELECT error_code, count(*) n FROM m365sync.sync_run_log WHERE status NOT IN ('ok', 'running') "
               "GROUP BY 1) e")
    bad_rounds = int(sql("SELECT count(*) FROM m365sync.sync_run_log WHERE status NOT IN ('ok', 'running')"))
    print("\n== after the runs: outbox %s pending, %s failed (drained in %.0f s); rounds with an error since setup: %s;"
          " %s conflicts kept (settled by policy, listed by conflicts())"
          % (pend, failed_push, time.time() - t1, errs, conflicts))
    return int(pend) + int(failed_push) + bad_rounds


def main():
    print("== test/bench/load: %d accounts, %d clients, %d s per mode in %d segment(s), weights %s, sync_interval %s, "
          "%.1f Outlook-side changes/s, %s ms simulated latency"
          % (N, CLIENTS, SECONDS, SEGMENTS, os.environ["LOAD_WEIGHTS"], INTERVAL, CHANGES, os.environ["LOAD_LATENCY_MS"]))
    sim = Sim()
    users = setup(sim)
    segs = {"syncing": [], "idle": []}
    print("pgbench per segment: " + " ".join(os.path.basename(c) if c.startswith(WORK) else c
                                             for c in pgbench_cmd(SECONDS // SEGMENTS, WEIGHTS, "pgb")))
    for i in range(SEGMENTS):
        for mode in ("syncing", "idle"):
            segs[mode].append(segment(mode, i, SECONDS // SEGMENTS, users))
        if i + 1 < SEGMENTS:
            catch_up()
    bad = drain()
    syncing = report("syncing", segs["syncing"])
    idle = report("idle", segs["idle"])
    print("\n== latency with the worker syncing / with it idle (ratio)")
    for k in ("avg", "p50", "p95", "p99"):
        a, b = syncing["all"][k], idle["all"][k]
        print("   %-4s %8.2f ms / %8.2f ms = %.2fx" % (k, a, b, a / b if b else float("nan")))
    print("   tps  %8.1f    / %8.1f    = %.2fx" % (syncing["tps"], idle["tps"], syncing["tps"] / idle["tps"]))
    for r in (syncing, idle):
        bad += (r["rc"] != 0) + r["aborted"] + r["failed"] + len(r["errors"]) + len(r["deadlocks"])
    print("\nresult: %s" % ("0 errors, no deadlock" if bad == 0 else "%d problems (see above)" % bad))
    print("reproduce: LOAD_SECONDS=%d LOAD_SEGMENTS=%d LOAD_CLIENTS=%d LOAD_ACCOUNTS=%d test/bench/load"
          % (SECONDS, SEGMENTS, CLIENTS, N))
    return 1 if bad else 0


raise SystemExit(main())

"""The measurements of test/bench/load (run by it, as the server's OS user).

Setup: LOAD_ACCOUNTS app-only mailboxes in one simulated tenant, made the way
an operator does it: m365sync.configure(), admin consent through the
simulator's consent page and admin_consent_complete(), then add_mailbox()
per mailbox; the simulator holds LOAD_EVENTS events per mailbox. The worker's
initial sync of all of them finishes before anything is measured.

Two measured runs of LOAD_SECONDS each, the same pgbench command (FlowAgent
role, prepared statements, LOAD_CLIENTS clients, the scripts of
test/bench/load_sql weighted by LOAD_WEIGHTS), each after a restart and a
short read-only warm-up:
  syncing  shared_preload_libraries = 'm365sync', sync_interval LOAD_INTERVAL,
           LOAD_CHANGES Outlook-side changes per second through the
           simulator's control API; the worker pulls them and pushes what
           pgbench writes.
  idle     shared_preload_libraries = '' (no worker at all), no Outlook-side
           changes; the functions load in each pgbench backend.
Per run: pgbench's failed transactions and aborted clients, server log
ERRORs and deadlocks of that run, latency average and percentiles from the
per-transaction log (overall and per script), and for the syncing run what
the worker did (rounds by status, pulled, pushed, CPU) and whether the
outbox drains afterwards. Exit status 1 when any run had an error.
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


def restart(preload):
    # postgresql.conf has no shared_preload_libraries: ALTER SYSTEM SET ... = ''
    # would make the postmaster look for a library named "".
    sql("ALTER SYSTEM SET shared_preload_libraries = 'm365sync'" if preload else
        "ALTER SYSTEM RESET shared_preload_libraries")
    r = subprocess.run([BIN + "/pg_ctl", "-D", os.environ["PGDATA"], "-l", WORK + "/server.log", "-w",
                        "-m", "fast", "restart"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("restart: " + r.stderr)


def pgbench(seconds, scripts, log_prefix=None):
    cmd = [BIN + "/pgbench", "-n", "-U", "flowagent", "-M", "prepared", "-c", str(CLIENTS), "-j", "2",
           "-T", str(seconds), "-D", "nusers=%d" % N, "--failures-detailed", "-P", "30"]
    if log_prefix:
        cmd += ["--log", "--log-prefix", log_prefix]
    for name, w in scripts:
        cmd += ["-f", "%s/sql/%s.sql@%s" % (WORK, name, w)]
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
    errors = [l for l in text.splitlines() if re.search(r"\b(ERROR|FATAL|PANIC):", l)]
    deadlocks = [l for l in text.splitlines() if "deadlock" in l.lower()]
    lockwaits = [l for l in text.splitlines() if "still waiting for" in l]
    return errors, deadlocks, lockwaits


def one_run(label, preload, users):
    restart(preload)
    time.sleep(2)
    warm = max(5, min(20, SECONDS // 10))
    pgbench(warm, [("read", 1)])
    mark_ts = sql("SELECT clock_timestamp()")
    nf0 = int(sql("SELECT last_value FROM load.not_found"))
    log_off = os.path.getsize(WORK + "/server.log")
    wpid = sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'm365sync worker'") if preload else ""
    sim_pid = os.environ["SIM_PID"]
    time.sleep(1)				# the warm-up's backends are reaped
    cpu0 = (cpu_seconds(wpid) if wpid else 0.0, cpu_seconds(sim_pid), postgres_cpu(), machine_busy(),
            resource.getrusage(resource.RUSAGE_CHILDREN))
    changer = None
    if preload and CHANGES > 0:
        changer = Changer(users)
        changer.start()
    t0 = time.time()
    r, cmd = pgbench(SECONDS, WEIGHTS, log_prefix=WORK + "/pgb_" + label)
    wall = time.time() - t0
    end_ts = sql("SELECT clock_timestamp()")
    if changer:
        changer.stop.set()
        changer.join()
    time.sleep(1)
    cpu1 = (cpu_seconds(wpid) if wpid else 0.0, cpu_seconds(sim_pid), postgres_cpu(), machine_busy(),
            resource.getrusage(resource.RUSAGE_CHILDREN))
    pgb_cpu = (cpu1[4].ru_utime + cpu1[4].ru_stime) - (cpu0[4].ru_utime + cpu0[4].ru_stime)
    with open(WORK + "/server.log", errors="replace") as f:
        f.seek(log_off)
        log_text = f.read()
    errors, deadlocks, lockwaits = log_problems(log_text)
    out = r.stdout
    m = lambda rx: (re.search(rx, out) or [None, "?"])[1]
    lat, fails = read_logs(WORK + "/pgb_" + label)
    allv = [x for v in lat.values() for x in v]
    res = {"label": label, "rc": r.returncode, "tps": m(r"tps = ([0-9.]+)"),
           "processed": m(r"number of transactions actually processed: (\d+)"),
           "failed": m(r"number of failed transactions: (\d+)"), "aborted": "aborted" in (out + r.stderr),
           "all": stats(allv), "scripts": {i: stats(v) for i, v in sorted(lat.items())}, "log_fails": fails,
           "errors": errors, "deadlocks": deadlocks, "lockwaits": lockwaits, "cmd": cmd,
           "not_found": int(sql("SELECT last_value FROM load.not_found")) - nf0, "wall": wall,
           "worker_cpu": cpu1[0] - cpu0[0], "sim_cpu": cpu1[1] - cpu0[1], "pg_cpu": cpu1[2] - cpu0[2],
           "machine_cpu": cpu1[3] - cpu0[3], "pgbench_cpu": pgb_cpu, "stderr": r.stderr}
    print("\n== %s: pgbench %s" % (label, " ".join(os.path.basename(c) if c.startswith(WORK) else c for c in cmd)))
    print("   %s transactions, %s failed, %s tps, clients aborted: %s, exit %d"
          % (res["processed"], res["failed"], res["tps"], "yes" if res["aborted"] else "no", r.returncode))
    print("   all      " + fmt(res["all"]))
    for i, s in res["scripts"].items():
        print("   %-8s %s" % (WEIGHTS[i][0], fmt(s)))
    print("   not-found races handled like the app would (event deleted between read and write): %d" % res["not_found"])
    print("   server log during the run: %d ERROR/FATAL/PANIC, %d deadlock lines, %d lock waits > deadlock_timeout"
          % (len(errors), len(deadlocks), len(lockwaits)))
    for l in (errors + deadlocks + lockwaits)[:10]:
        print("     " + l[:300])
    if r.returncode != 0 or res["aborted"]:
        print("   pgbench stderr (tail):\n" + "\n".join("     " + l for l in r.stderr.splitlines()[-15:]))
    ncpu = os.cpu_count()
    other = res["machine_cpu"] - res["pg_cpu"] - res["sim_cpu"] - res["pgbench_cpu"]
    try:
        per_tx = 1000.0 * (res["pg_cpu"] - res["worker_cpu"]) / int(res["processed"])
    except (ValueError, ZeroDivisionError):
        per_tx = float("nan")
    print("   CPU seconds in %.0f s on %d CPUs (%.0f available): PostgreSQL %.1f (worker %.1f; backends %.2f ms per"
          " transaction), simulator %.1f, pgbench %.1f, everything else on the machine %.1f"
          % (wall, ncpu, wall * ncpu, res["pg_cpu"], res["worker_cpu"], per_tx, res["sim_cpu"], res["pgbench_cpu"], other))
    if preload:
        if changer:
            print("   Outlook-side changes applied to the simulator: %s (%d control API errors)"
                  % (", ".join("%s %d" % kv for kv in changer.done.items()), changer.errors))
        t1 = time.time()
        while True:
            pend, failed_push, running = sql("""SELECT (SELECT count(*) FILTER (WHERE state = 'pending') FROM m365sync.outbox),
                                                       (SELECT count(*) FILTER (WHERE state = 'failed') FROM m365sync.outbox),
                                                       (SELECT count(*) FROM m365sync.sync_run_log WHERE finished_at IS NULL AND started_at BETWEEN %s AND %s)""" % (q_lit(mark_ts), q_lit(end_ts))).split("|")
            if (int(pend) == 0 and int(running) == 0) or time.time() - t1 > 300:
                break
            time.sleep(1)
        conflicts = sql("SELECT count(*) FROM m365sync.conflicts WHERE resolved_at IS NULL")
        print("   after the run: outbox %s pending, %s failed, %s of its rounds unfinished (waited %.0f s); "
              "%s conflicts kept (settled by policy, listed)" % (pend, failed_push, running, time.time() - t1, conflicts))
        rounds = sql("""SELECT status, count(*), sum(pages), sum(applied), sum(deleted), sum(pushed), sum(http_requests),
                               round(avg(extract(epoch FROM finished_at - started_at))::numeric, 2)
                          FROM m365sync.sync_run_log WHERE started_at BETWEEN %s AND %s GROUP BY 1 ORDER BY 1""" % (q_lit(mark_ts), q_lit(end_ts)))
        print("   worker rounds started during the run"
              " (status|rounds|pages|applied|deleted|pushed|http requests|avg s):")
        for l in rounds.splitlines():
            print("     " + l)
        errs = sql("""SELECT error_code, count(*) FROM m365sync.sync_run_log
                       WHERE started_at >= %s AND status NOT IN ('ok', 'running') GROUP BY 1""" % q_lit(mark_ts))  # the drain's too
        for l in errs.splitlines():
            print("     error rounds: " + l)
        res["bad_rounds"] = sum(int(l.split("|")[1]) for l in errs.splitlines())
        res["pending"], res["failed_push"] = int(pend), int(failed_push)
    return res


def main():
    print("== test/bench/load: %d accounts, %d clients, %d s per run, weights %s, sync_interval %s, "
          "%.1f Outlook-side changes/s, %s ms simulated latency"
          % (N, CLIENTS, SECONDS, os.environ["LOAD_WEIGHTS"], INTERVAL, CHANGES, os.environ["LOAD_LATENCY_MS"]))
    sim = Sim()
    restart(True)
    users = setup(sim)
    syncing = one_run("syncing", True, users)
    idle = one_run("idle", False, users)
    print("\n== latency with the worker syncing / without a worker (ratio)")
    for k in ("avg", "p50", "p95", "p99"):
        a, b = syncing["all"][k], idle["all"][k]
        print("   %-4s %8.2f ms / %8.2f ms = %.2fx" % (k, a, b, a / b if b else float("nan")))
    try:
        print("   tps  %8.1f    / %8.1f    = %.2fx" % (float(syncing["tps"]), float(idle["tps"]),
                                                      float(syncing["tps"]) / float(idle["tps"])))
    except ValueError:
        pass
    bad = 0
    for r in (syncing, idle):
        bad += (r["rc"] != 0) + r["aborted"] + (r["failed"] not in ("0",)) + len(r["errors"]) + len(r["deadlocks"])
    bad += syncing.get("bad_rounds", 0) + syncing.get("failed_push", 0) + (syncing.get("pending", 0) > 0)
    print("\nresult: %s" % ("0 errors, no deadlock" if bad == 0 else "%d problems (see above)" % bad))
    print("reproduce: LOAD_SECONDS=%d LOAD_CLIENTS=%d LOAD_ACCOUNTS=%d test/bench/load" % (SECONDS, CLIENTS, N))
    return 1 if bad else 0


raise SystemExit(main())

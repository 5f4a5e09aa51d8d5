"""Reads memcheck's logs for test/valgrind/run and prints the figures.

Usage: parse.py LOGDIR WORKER_PID SRC_DIR

Each log (one per process, vg.<pid>.log; run with --fullpath-after= so
frames carry full source paths) is split into error records. A record is
one of: invalid access (read, write, free, unaddressable), use of
uninitialised values (conditional jump, use of value, syscall parameter), a
definite leak, or other. Frames are ours (a file under SRC_DIR, or
m365sync.so), PostgreSQL's (the postgres binary) or a library's. A record
is "ours" when the innermost frame of its own stack (the access, or the
allocation of a leak) that is not a library's is ours: a library called by
our code counts as us, PostgreSQL called by our code does not. Records with
one of our frames further out are counted as "in stack" for review.
Prints per kind the totals, ours and in stack, for the worker and for the
other processes, then every record of ours in full. Exit status 1 when ours
is not zero or the worker's log is missing or has no leak summary.
"""
import glob
import os
import re
import sys

logdir, worker_pid, src = sys.argv[1], sys.argv[2].strip(), sys.argv[3]
SRC = os.path.realpath(src) + "/"
FRAME = re.compile(r"^\s*(?:at|by) 0x[0-9A-F]+: .*?\((?:in )?([^():]+)(?::\d+)?\)\s*$")
KINDS = [("invalid", re.compile(r"^(Invalid (read|write|free)|Mismatched free|Source and destination overlap|"
                                 r"Argument .* of function .* has a fishy|.*unaddressable)")),
         ("uninitialised", re.compile(r"uninitialised")),
         ("definitely lost", re.compile(r"are definitely lost in loss record"))]


def records(path):
    """Error records of one log as lists of lines (without the ==pid== prefix)."""
    out, cur = [], []
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"^==\d+== ?(.*)$", line.rstrip("\n"))
            if not m:
                continue			# suppression templates (gen-suppressions) and the like
            text = m.group(1)
            if text.strip() == "":
                if cur:
                    out.append(cur)
                cur = []
            else:
                cur.append(text)
    if cur:
        out.append(cur)
    return out


def kind(rec):
    for name, rx in KINDS:
        if rx.search(rec[0]):
            return name
    return None


def frame_owner(loc):
    if loc.startswith(SRC) or loc.endswith("/m365sync.so"):
        return "ours"
    if loc.endswith("/bin/postgres"):
        return "postgres"
    return "library"


def ours(rec):
    """(ours, in stack) for one record: see the module comment."""
    own = []
    for l in rec[1:]:
        m = FRAME.search(l)
        if not m:
            break				# "Address ... ", "Uninitialised value was created ..."
        own.append(frame_owner(m.group(1)))
    first = next((o for o in own if o != "library"), None)
    anywhere = any(frame_owner(m.group(1)) == "ours" for m in (FRAME.search(l) for l in rec) if m)
    return first == "ours", anywhere


def main():
    logs = sorted(glob.glob(logdir + "/vg.*.log"))
    worker_log = os.path.join(logdir, "vg.%s.log" % worker_pid)
    totals = {}
    mine = []
    summary_seen = False
    for path in logs:
        who = "worker" if path == worker_log else "others"
        for rec in records(path):
            if who == "worker" and rec[0].startswith("LEAK SUMMARY"):
                summary_seen = True
            k = kind(rec)
            if k is None:
                continue
            o, anywhere = ours(rec)
            t = totals.setdefault((who, k), [0, 0, 0])
            t[0] += 1
            t[1] += o
            t[2] += anywhere and not o
            if o:
                mine.append((path, rec))
    print("\n== valgrind memcheck: %d process logs; the worker's is %s%s" % (
        len(logs), os.path.basename(worker_log), "" if os.path.exists(worker_log) else " (MISSING)"))
    print("   %-16s %-8s %8s %8s %9s" % ("kind", "process", "records", "ours", "in stack"))
    for who in ("worker", "others"):
        for k, _ in KINDS:
            t = totals.get((who, k), [0, 0, 0])
            print("   %-16s %-8s %8d %8d %9d" % (k, who, t[0], t[1], t[2]))
    err_summary = []
    if os.path.exists(worker_log):
        with open(worker_log, errors="replace") as f:
            err_summary = [l.strip() for l in f if "ERROR SUMMARY" in l or "definitely lost:" in l
                           or "indirectly lost:" in l]
    for l in err_summary:
        print("   worker: " + re.sub(r"^==\d+== ", "", l))
    for path, rec in mine:
        print("\n-- ours, in %s:" % os.path.basename(path))
        print("\n".join("   " + l for l in rec[:45]))
    ok = os.path.exists(worker_log) and summary_seen and not mine
    if not summary_seen:
        print("   the worker's log has no LEAK SUMMARY: it did not exit through exit()")
    print("valgrind: %s" % ("0 findings in our code" if ok else "FINDINGS (see above)"))
    return 0 if ok else 1


sys.exit(main())

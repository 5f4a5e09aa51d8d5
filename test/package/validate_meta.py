#!/usr/bin/env python3
"""Validate META.json against the PGXN Meta Spec 1.0.0, and against m365sync.

The spec's rules (https://pgxn.org/meta/spec.txt; the same rules as the JSON
schemas in pgxn/meta, schema/v1) are checked by hand with the standard library
only, so that the check runs on a bare Debian machine without pip:

  - the required keys (name, version, abstract, maintainer, license, provides,
    meta-spec) and no unknown key outside the custom "x_"/"X_" prefix;
  - the shape of every optional key (prereqs, no_index, resources, tags, ...);
  - versions are SemVer, version ranges follow the spec's grammar.

Then what only this project knows:

  - version and provides agree with m365sync.control (default_version), the
    provided file is m365sync--<version>.sql, its docfile exists;
  - prereqs name PostgreSQL 15 (runtime) and x_requires names the C libraries
    (libcurl, libcjson, libssl): the spec keeps anything not distributed on
    PGXN or with PostgreSQL out of prereqs, so they live in a custom key;
  - with --zip: the release zip has one top directory m365sync-<version>/
    with META.json and the control file at its top, agreeing with this META.

Prints "ok N - ..." / "not ok N - ..." lines (one per rule group) and exits
non-zero when any fails.
"""

import argparse
import json
import os
import re
import sys
import zipfile

SEMVER = (r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
          r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
          r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
          r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?")
SEMVER_RE = re.compile("^" + SEMVER + "$")
RANGE_PART_RE = re.compile(r"^\s*(==|!=|<=|>=|<|>)?\s*(" + SEMVER + r")\s*$")
# A term: two or more characters, none of them a slash, backslash, space or
# control character.
TERM_RE = re.compile(r"^[^/\\\s\x00-\x1f\x7f]{2,}$")
TAG_RE = re.compile(r"^[^/\\\x00-\x1f\x7f]{2,255}$")
URI_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:[^\s]+$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

LICENSES = {
    "agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd",
    "freebsd", "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1",
    "lgpl_3_0", "mit", "mozilla_1_0", "mozilla_1_1", "openssl", "perl_5",
    "postgresql", "qpl_1_0", "ssleay", "sun", "zlib", "open_source",
    "restricted", "unrestricted", "unknown",
}
PHASES = ("configure", "build", "test", "runtime", "develop")
RELATIONSHIPS = ("requires", "recommends", "suggests", "conflicts")
TOP_KEYS = {"name", "version", "abstract", "maintainer", "license", "provides",
            "meta-spec", "description", "generated_by", "tags", "no_index",
            "prereqs", "release_status", "resources"}
REQUIRED_TOP = ("name", "version", "abstract", "maintainer", "license",
                "provides", "meta-spec")
C_LIBRARIES = ("libcurl", "libcjson", "libssl")


def is_custom(key):
    return len(key) > 2 and key[:2] in ("x_", "X_")


class Problems:
    """Collects what is wrong under a JSON path, e.g. prereqs.runtime."""

    def __init__(self):
        self.items = []

    def add(self, where, what):
        self.items.append("%s: %s" % (where or "(top)", what))


def check_keys(obj, where, allowed, problems, required=(), any_of=()):
    if not isinstance(obj, dict):
        problems.add(where, "must be an object")
        return False
    for key in obj:
        if key not in allowed and not is_custom(key):
            problems.add(where, "unknown key %r (custom keys start with x_)" % key)
    for key in required:
        if key not in obj:
            problems.add(where, "required key %r is missing" % key)
    if any_of and not any(k in obj for k in any_of):
        problems.add(where, "needs at least one of %s" % ", ".join(any_of))
    return True


def check_string(value, where, problems, min_len=1):
    if not isinstance(value, str) or len(value) < min_len:
        problems.add(where, "must be a string of at least %d character(s)" % min_len)
        return False
    return True


def check_term(value, where, problems):
    if not isinstance(value, str) or not TERM_RE.match(value):
        problems.add(where, "%r is not a term (2+ characters, no slash, backslash, space or control character)" % (value,))


def check_version(value, where, problems):
    if not isinstance(value, str) or not SEMVER_RE.match(value):
        problems.add(where, "%r is not a semantic version (x.y.z)" % (value,))


def parse_range(value):
    """A version range as a list of (operator, version tuple); None if invalid."""
    if value == 0:
        return []
    if not isinstance(value, str):
        return None
    if value.strip() == "0":
        return []
    parts = []
    for piece in value.split(","):
        m = RANGE_PART_RE.match(piece)
        if not m:
            return None
        op = m.group(1) or ">="   # a bare version means "at least"
        ver = tuple(int(m.group(i)) for i in (3, 4, 5))
        parts.append((op, ver))
    return parts


def range_admits(parts, version):
    ops = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b,
           "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
           ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
    return all(ops[op](version, ver) for op, ver in parts)


def check_path(value, where, problems):
    if (not isinstance(value, str) or len(value) < 2 or value.startswith("/")
            or "\\" in value or ".." in value.split("/")):
        problems.add(where, "%r is not a relative path inside the distribution" % (value,))


def check_uri(value, where, problems):
    if not isinstance(value, str) or not URI_RE.match(value):
        problems.add(where, "%r is not a URI" % (value,))


def check_relationship(obj, where, problems):
    if not isinstance(obj, dict) or not obj:
        problems.add(where, "must be a non-empty object of name: version range")
        return
    for name, rng in obj.items():
        check_term(name, where, problems)
        if parse_range(rng) is None:
            problems.add("%s.%s" % (where, name), "%r is not a version range" % (rng,))


def check_prereqs(obj, where, problems):
    if not check_keys(obj, where, set(PHASES), problems, any_of=PHASES):
        return
    for phase in PHASES:
        if phase not in obj:
            continue
        pw = "%s.%s" % (where, phase)
        if not check_keys(obj[phase], pw, set(RELATIONSHIPS), problems, any_of=RELATIONSHIPS):
            continue
        for rel in RELATIONSHIPS:
            if rel in obj[phase]:
                check_relationship(obj[phase][rel], "%s.%s" % (pw, rel), problems)


def check_spec(meta):
    """The PGXN Meta Spec 1.0.0, key by key."""
    p = Problems()
    if not check_keys(meta, "", TOP_KEYS, p, required=REQUIRED_TOP):
        return p
    if "name" in meta:
        check_term(meta["name"], "name", p)
    if "version" in meta:
        check_version(meta["version"], "version", p)
    for key in ("abstract", "description", "generated_by"):
        if key in meta:
            check_string(meta[key], key, p)
    if "maintainer" in meta:
        m = meta["maintainer"]
        if isinstance(m, list):
            if not m or len(set(map(str, m))) != len(m):
                p.add("maintainer", "must be a non-empty list of distinct strings")
            for i, one in enumerate(m):
                check_string(one, "maintainer[%d]" % i, p)
        else:
            check_string(m, "maintainer", p)
    if "license" in meta:
        lic = meta["license"]
        if isinstance(lic, str):
            if lic not in LICENSES:
                p.add("license", "%r is not one of the spec's license strings" % lic)
        elif isinstance(lic, list):
            if not lic or len(set(map(str, lic))) != len(lic) or any(x not in LICENSES for x in lic):
                p.add("license", "must list distinct license strings of the spec")
        elif isinstance(lic, dict):
            if not lic:
                p.add("license", "must name at least one license")
            for name, uri in lic.items():
                check_uri(uri, "license.%s" % name, p)
        else:
            p.add("license", "must be a string, a list or an object")
    if "provides" in meta:
        prov = meta["provides"]
        if not isinstance(prov, dict) or not prov:
            p.add("provides", "must be a non-empty object of extension: {file, version}")
        else:
            for ext, spec in prov.items():
                w = "provides.%s" % ext
                check_term(ext, w, p)
                if not check_keys(spec, w, {"file", "version", "abstract", "docfile", "docpath"},
                                  p, required=("file", "version")):
                    continue
                if "file" in spec:
                    check_path(spec["file"], w + ".file", p)
                if "version" in spec:
                    check_version(spec["version"], w + ".version", p)
                if "docfile" in spec:
                    check_path(spec["docfile"], w + ".docfile", p)
                for key in ("abstract", "docpath"):
                    if key in spec:
                        check_string(spec[key], "%s.%s" % (w, key), p)
    if "meta-spec" in meta:
        ms = meta["meta-spec"]
        if check_keys(ms, "meta-spec", {"version", "url"}, p, required=("version",)):
            if not re.match(r"^1\.0\.\d+$", str(ms.get("version", ""))):
                p.add("meta-spec.version", "must be 1.0.x for this spec")
            if "url" in ms and ms["url"] not in ("https://pgxn.org/meta/spec.txt",
                                                 "http://pgxn.org/meta/spec.txt"):
                p.add("meta-spec.url", "must be https://pgxn.org/meta/spec.txt")
    if "tags" in meta:
        tags = meta["tags"]
        if not isinstance(tags, list) or not tags or len(set(map(str, tags))) != len(tags):
            p.add("tags", "must be a non-empty list of distinct tags")
        else:
            for i, tag in enumerate(tags):
                if not isinstance(tag, str) or not TAG_RE.match(tag):
                    p.add("tags[%d]" % i, "%r is not a tag (2-255 characters, no slash or backslash)" % (tag,))
    if "no_index" in meta:
        ni = meta["no_index"]
        if check_keys(ni, "no_index", {"file", "directory"}, p, any_of=("file", "directory")):
            for key in ("file", "directory"):
                if key not in ni:
                    continue
                val = ni[key]
                vals = val if isinstance(val, list) else [val]
                if not vals or len(set(map(str, vals))) != len(vals):
                    p.add("no_index." + key, "must be a path or a non-empty list of distinct paths")
                for v in vals:
                    check_path(v, "no_index." + key, p)
    if "prereqs" in meta:
        check_prereqs(meta["prereqs"], "prereqs", p)
    if "release_status" in meta and meta["release_status"] not in ("stable", "testing", "unstable"):
        p.add("release_status", "must be stable, testing or unstable")
    if "resources" in meta:
        res = meta["resources"]
        if check_keys(res, "resources", {"homepage", "bugtracker", "repository"}, p,
                      any_of=("homepage", "bugtracker", "repository")):
            if "homepage" in res:
                check_uri(res["homepage"], "resources.homepage", p)
            bt = res.get("bugtracker")
            if bt is not None and check_keys(bt, "resources.bugtracker", {"web", "mailto"}, p,
                                             any_of=("web", "mailto")):
                if "web" in bt:
                    check_uri(bt["web"], "resources.bugtracker.web", p)
                if "mailto" in bt and not EMAIL_RE.match(str(bt["mailto"])):
                    p.add("resources.bugtracker.mailto", "is not an e-mail address")
            repo = res.get("repository")
            if repo is not None and check_keys(repo, "resources.repository", {"url", "web", "type"}, p):
                if not ("web" in repo or ("url" in repo and "type" in repo)):
                    p.add("resources.repository", "needs web, or url and type")
                for key in ("url", "web"):
                    if key in repo:
                        check_uri(repo[key], "resources.repository." + key, p)
                if "type" in repo and not re.match(r"^[a-z]+$", str(repo["type"])):
                    p.add("resources.repository.type", "must be lower-case letters")
    return p


def control_version(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^\s*default_version\s*=\s*'([^']+)'", line)
            if m:
                return m.group(1)
    return None


def check_project(meta, control, top):
    """What META.json must say about this extension."""
    p = Problems()
    ext = os.path.basename(control)[:-len(".control")]
    version = control_version(control)
    if version is None:
        p.add(control, "no default_version")
        return p
    if meta.get("name") != ext:
        p.add("name", "%r, but the extension is %r" % (meta.get("name"), ext))
    if meta.get("version") != version:
        p.add("version", "%r, but %s says %r" % (meta.get("version"), os.path.basename(control), version))
    prov = meta.get("provides", {}).get(ext) if isinstance(meta.get("provides"), dict) else None
    if not isinstance(prov, dict):
        p.add("provides", "does not provide extension %r" % ext)
    else:
        want = "%s--%s.sql" % (ext, version)
        if prov.get("file") != want:
            p.add("provides.%s.file" % ext, "%r, expected %r" % (prov.get("file"), want))
        if prov.get("version") != version:
            p.add("provides.%s.version" % ext, "%r, but the control file says %r" % (prov.get("version"), version))
        doc = prov.get("docfile")
        if doc and not os.path.isfile(os.path.join(top, doc)):
            p.add("provides.%s.docfile" % ext, "%r does not exist" % doc)
    return p


def check_prereq_names(meta):
    """PostgreSQL 15 in prereqs; the C libraries in x_requires."""
    p = Problems()
    try:
        rng = meta["prereqs"]["runtime"]["requires"]["PostgreSQL"]
    except (KeyError, TypeError):
        p.add("prereqs.runtime.requires", "does not name PostgreSQL")
    else:
        parts = parse_range(rng)
        if parts is None or not range_admits(parts, (15, 0, 0)):
            p.add("prereqs.runtime.requires.PostgreSQL", "%r does not admit PostgreSQL 15" % (rng,))
    xr = meta.get("x_requires")
    if not isinstance(xr, dict):
        p.add("x_requires", "missing: the C libraries m365sync needs")
        return p
    for phase in ("build", "runtime"):
        try:
            libs = xr[phase]["requires"]
        except (KeyError, TypeError):
            libs = None
        if not isinstance(libs, dict):
            p.add("x_requires.%s.requires" % phase, "missing")
            continue
        for lib in C_LIBRARIES:
            if lib not in libs:
                p.add("x_requires.%s.requires" % phase, "does not name %s" % lib)
            elif parse_range(libs[lib]) is None:
                p.add("x_requires.%s.requires.%s" % (phase, lib), "%r is not a version range" % (libs[lib],))
    prereqs = meta.get("prereqs")
    for key in PHASES:
        # The spec keeps non-PGXN prerequisites out of prereqs.
        phase = prereqs.get(key) if isinstance(prereqs, dict) else None
        for rel in RELATIONSHIPS:
            names = phase.get(rel) if isinstance(phase, dict) else None
            for lib in C_LIBRARIES:
                if isinstance(names, dict) and lib in names:
                    p.add("prereqs.%s.%s" % (key, rel), "names %s, which is not on PGXN (use x_requires)" % lib)
    return p


def check_zip(path, meta, version, ext):
    """The release file as PGXN expects it."""
    p = Problems()
    top = "%s-%s/" % (ext, version)
    want = "%s-%s.zip" % (ext, version)
    if os.path.basename(path) != want:
        p.add(path, "is not named %s" % want)
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            bad = [n for n in names if not n.startswith(top)]
            if bad:
                p.add(path, "%d entries outside %s, e.g. %s" % (len(bad), top, bad[0]))
            for need in ("META.json", ext + ".control", "Makefile", "README.md"):
                if top + need not in names:
                    p.add(path, "has no %s%s" % (top, need))
            if top + "META.json" in names:
                inner = json.loads(z.read(top + "META.json").decode("utf-8"))
                if inner != meta:
                    p.add(path, "its META.json differs from this META.json")
            if top + ext + ".control" in names:
                m = re.search(r"^\s*default_version\s*=\s*'([^']+)'",
                              z.read(top + ext + ".control").decode("utf-8"), re.M)
                if not m or m.group(1) != version:
                    p.add(path, "its control file's default_version is not %s" % version)
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        p.add(path, "cannot be read as a zip with a JSON META.json (%s)" % e)
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("meta", help="META.json")
    ap.add_argument("--control", help="the extension's control file (default: <name>.control beside META.json)")
    ap.add_argument("--zip", help="also check this release zip (make dist)")
    args = ap.parse_args()

    top = os.path.dirname(os.path.abspath(args.meta))
    n = 0
    failed = 0

    def report(ok, what, problems=()):
        nonlocal n, failed
        n += 1
        print("%s %d - %s" % ("ok" if ok else "not ok", n, what))
        for line in problems:
            print("#   " + line)
        if not ok:
            failed += 1

    try:
        with open(args.meta, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        report(False, "META.json is JSON", [str(e)])
        return 1
    report(isinstance(meta, dict), "META.json is a JSON object")
    if not isinstance(meta, dict):
        return 1

    p = check_spec(meta)
    report(not p.items, "META.json follows the PGXN Meta Spec 1.0.0", p.items)

    control = args.control or os.path.join(top, "%s.control" % meta.get("name", ""))
    if not os.path.isfile(control):
        report(False, "control file %s exists" % control)
        return 1
    p = check_project(meta, control, top)
    report(not p.items, "version and provides agree with %s" % os.path.basename(control), p.items)

    p = check_prereq_names(meta)
    report(not p.items, "prereqs name PostgreSQL 15; x_requires names %s" % ", ".join(C_LIBRARIES), p.items)

    if args.zip:
        ext = os.path.basename(control)[:-len(".control")]
        p = check_zip(args.zip, meta, control_version(control), ext)
        report(not p.items, "%s: one top directory with META.json and the control file" % os.path.basename(args.zip), p.items)

    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

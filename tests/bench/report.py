#!/usr/bin/env python3
"""Report of `make bench`, made on the host from what the guest wrote.

    report.py --guest DIR --out DIR [--meta KEY=VALUE]...

DIR/manifest.tsv and DIR/fio/*.json come from tests/bench/guest-bench.sh. Writes
OUT/results.json (every run's numbers, the medians with min/max, ratios to loop,
the paired BPF, in-flight table and module costs, goal verdicts), OUT/results.md (a table
per job, a Goals section, the paired runs) and OUT/results.png (gnuplot: ratio to
loop per job and path).

The BPF collectors' cost is measured in CPU time, on randread-4k-qd32 in pairs of
runs on one dmuser-N device without and with the collectors: in each "on" run,
with kernel.bpf_stats_enabled, the run time of the collectors' BPF programs over
the fio run (bpftool's run_time_ns) per request the device completed (ns per
request), and that as a share of the guest's busy CPU time over the same run
(share of the CPU time per request); the medians over the pairs are the two BPF
goals. The IOPS are a second view (informational, no verdict): 1 - on / off per
pair and the median over pairs (or, with fewer than MIN_PAIRS complete pairs, 1 -
median IOPS of dmuser-N-bpf over dmuser-N's, two paths set up in different
repetitions; that path-median cost is listed per job too).

The in-flight table's cost is measured the same way, by its own pairs of runs on
another dmuser-N device, without and with bpf/dmuser-inflight polled beside fio
(reported, no goal).

The kernel module's cost (make bench with BENCH_BASE_REF) the same way too, by
pairs of runs with the module of a base git ref (A, "base") and the module under
test (B, "head"), swapped between runs, each on a device of its own: cost = 1 -
head / base IOPS, and the change of guest CPU time per request, head / base - 1
(reported, no goal).

Where the time goes: the stages pass of the guest (BENCH_STAGES) ran one job on a
path with `bpf/dmuser-lat -p <daemon> -S all --json` attached; each run's stages
(requests, p50, p99 and mean = sum_ns / count) are a table in results.md, in the
pipeline's order, and in results.json ("stages"). A failed stages run is said
there and on stderr; it does not change the exit status.

Exit status: 0 when every requested path ran every job; 1 when a run or a job
failed (the report is still written and says which); 2 on bad input.
"""

import argparse
import collections
import json
import math
import os
import re
import statistics
import subprocess
import sys
from typing import NamedTuple, Optional

EMULATED = ("Absolute numbers are emulated-guest numbers (QEMU TCG, no KVM): "
            "compare only ratios taken in the same guest run.")
BASELINE = "loop"
# The paths of the goals. dmuser-N is dmuserd at N threads.
DMU, DMU_1, DMU_BPF, NBD = "dmuser-N", "dmuser-1", "dmuser-N-bpf", "nbd"
GOAL_JOB = "randread-4k-qd32"
# The remote backends' goals (BENCH_SET=nbd, BENCH_SET=rbd): a dmuserd backend
# against another client of the same remote store, on each REMOTE_JOBS job:
# (dmuserd's path, the other path, the minimum ratio of median IOPS, what the two
# share), checked only when dmuserd's path ran.
DMU_NBD = "dmuser-nbd"
DMU_RBD, RBD_NBD, KRBD = "dmuser-rbd", "rbd-nbd", "krbd"
REMOTE_JOBS = ("randread-4k-qd32", "randwrite-4k-qd32")
REMOTE_GOALS = (
    (DMU_NBD, NBD, 1.0, "one nbdkit export, one connection each"),
    (DMU_RBD, RBD_NBD, 1.0, "one RBD image, librbd in both, its cache off"),
    (DMU_RBD, KRBD, 0.8, "one RBD image; krbd is the kernel's own RBD client"),
)
QD1_JOBS = ("randread-4k-qd1", "randwrite-4k-qd1")
# Issue #19's goals, checked when dmuser-1 ran (the local set): dmuser-N at least
# dmuser-1 on every job; dmuser-1 at least LARGE_MIN of the file on the large
# sequential jobs; dmuser-1's iodepth-1 p50 at most loop's; and, in a run with at
# least SCALE_CPUS vCPUs (BENCH_SMP), dmuser-N above dmuser-1 on GOAL_JOB.
FILE = "file"
THREADS_MIN = 1.0
LARGE_JOBS = ("read-128k-seq", "write-128k-seq")
LARGE_MIN = 0.85
SCALE_CPUS = 4
# dmuser-lat's stages in the order a request goes through them: the kernel's
# (queue, daemon, total) and, with -p, libdmuser's (queue, handoff, pickup,
# backend, reply, total); any other stage after these.
STAGE_ORDER = ("queue", "handoff", "pickup", "backend", "reply", "daemon", "total")
STAGES_REF = "Where the time goes"
STAGES_TITLE = STAGES_REF + " (dmuser-lat -S all)"
# The BPF goals: the collectors' BPF program time per request (ns), and its share
# of the CPU time per request. BPF_COST_MAX: the IOPS view's reference (its goal
# before the CPU-time goals; now informational).
BPF_NS_MAX = 1000.0
BPF_SHARE_MAX = 0.03
BPF_COST_MAX = 0.05
# The paired BPF runs: their job (guest-bench.sh runs the same), the modes of a
# pair (without, with the collectors), and how many complete pairs the goal needs.
PAIR_JOB = GOAL_JOB
PAIR_MODES = ("off", "on")
MIN_PAIRS = 3


class Series(NamedTuple):
    """A series of paired runs: its manifest lines (`<line> p A|B ...` per run, A
    and B its modes, `<line>s ok|failed` for its device, if poll_line `<poll_line>
    p polls lines` for a B run, and if cpu_line `<cpu_line> p A|B busy ios` for
    each run, and if bpf_line `<bpf_line> p id name ns cnt` per BPF program of a
    B run), its meta keys (<meta>, <meta>_skipped, ...), its key in
    results.json and what its B runs add (on) or what its modes are (how: the
    sentence after the job in results.md, {on}, {a} and {b} filled in). device: what
    its `<line>s` line is about."""
    line: str
    poll_line: Optional[str]
    meta: str
    result_key: str
    label: str
    title: str
    on: str
    modes: tuple = PAIR_MODES
    cpu_line: Optional[str] = None
    bpf_line: Optional[str] = None
    how: str = (f"on one {DMU} device (set up once), run alternately without (off) and with (on)"
                " {on}, in ABBA order (pair 1 off then on, pair 2 on then off, ...); cost = 1 − on"
                " / off IOPS of each pair.")
    device: str = f"the shared {DMU} device"


BPF = Series("pair", None, "bpf_pairs", "bpf_cost_paired", "BPF pair", "BPF cost, paired",
             "both BPF collectors attached", cpu_line="pcpu", bpf_line="pbpf",
             how=(f"on one {DMU} device (set up once), run alternately without (off) and with (on)"
                  " {on}, in ABBA order (pair 1 off then on, pair 2 on then off, ...); cost = 1 − on"
                  " / off IOPS of each pair. CPU µs/req: the guest's busy CPU time (all vCPUs: user,"
                  " nice, system, irq, softirq, steal) over the fio run per I/O the device completed"
                  " in it; CPU/req change = on / off − 1. BPF ns/req: in the on run, with"
                  " kernel.bpf_stats_enabled, the run time of the collectors' BPF programs"
                  " (bpftool's run_time_ns) over the fio run per I/O; BPF runs/req: their runs"
                  " (run_cnt) per I/O; BPF share of CPU: that run time over the on run's busy CPU"
                  " time."))
INFLIGHT = Series("ipair", "ipoll", "inflight_pairs", "inflight_cost_paired", "in-flight pair",
                  "In-flight table cost, paired",
                  "a poller beside fio that runs bpf/dmuser-inflight on the device and sleeps"
                  " 0.1 s, over and over (at most 10 polls a second, as `watch -n 0.1`)")
MODULE = Series("mpair", None, "module_pairs", "module_cost_paired", "module pair",
                "Module A/B, paired", "the module under test", modes=("base", "head"),
                cpu_line="mcpu",
                how=(f"on a {DMU} device set up afresh for each run, after dm_user is unloaded and"
                     " the run's module loaded: base (A) {a}, head (B) {b}; in ABBA order (pair 1"
                     " base then head, pair 2 head then base, ...); cost = 1 − head / base IOPS of"
                     " each pair, and CPU/req change = head / base − 1 of the guest's busy CPU time"
                     " (all vCPUs: user, nice, system, irq, softirq) over the fio run per I/O the"
                     " device completed in it."),
                device="reloading the module under test after the pairs")
SERIES = (BPF, INFLIGHT, MODULE)


class BadInput(Exception):
    pass


# ---- input -------------------------------------------------------------------

def _count(s):
    """s as an integer >= 1, or None."""
    return int(s) if re.fullmatch(r"[1-9][0-9]*", s) else None


def _parse_pair_line(series, pairs, polls, f, lineno):
    """One manifest line of the series into pairs (its runs and device) or polls
    ({p: (polls, lines)} of poll lines, {(p, mode): (busy, ios)} of cpu lines,
    {("bpf", p): [{"id", "name", "ns", "cnt"}, ...]} of bpf lines); False if the
    line is none of the series'."""
    if (f[0] == series.line and len(f) == 6 and _count(f[1]) and f[2] in series.modes
            and f[3] in ("ok", "failed")):
        p = int(f[1])
        if any(r["pair"] == p and r["mode"] == f[2] for r in pairs["runs"]):
            raise BadInput(f"manifest line {lineno}: {series.line} {p} {f[2]} recorded twice")
        pairs["runs"].append({"pair": p, "mode": f[2], "status": f[3],
                              "file": f[4], "message": f[5]})
    elif f[0] == series.line + "s" and len(f) == 3 and f[1] in ("ok", "failed"):
        if pairs["device"] is not None:
            raise BadInput(f"manifest line {lineno}: a second '{series.line}s' line")
        pairs["device"] = {"status": f[1], "message": f[2]}
    elif (series.poll_line and f[0] == series.poll_line and len(f) == 4 and _count(f[1])
          and all(re.fullmatch(r"[0-9]+", v) for v in f[2:])):
        if int(f[1]) in polls:
            raise BadInput(f"manifest line {lineno}: {series.poll_line} {f[1]} recorded twice")
        polls[int(f[1])] = (int(f[2]), int(f[3]))
    elif (series.cpu_line and f[0] == series.cpu_line and len(f) == 5 and _count(f[1])
          and f[2] in series.modes and all(re.fullmatch(r"[0-9]+", v) for v in f[3:])):
        if (int(f[1]), f[2]) in polls:
            raise BadInput(f"manifest line {lineno}: {series.cpu_line} {f[1]} {f[2]} recorded twice")
        polls[(int(f[1]), f[2])] = (int(f[3]), int(f[4]))
    elif (series.bpf_line and f[0] == series.bpf_line and len(f) == 6 and _count(f[1])
          and _count(f[2]) and f[3] and all(re.fullmatch(r"[0-9]+", v) for v in f[4:])):
        progs = polls.setdefault(("bpf", int(f[1])), [])
        if any(pr["id"] == int(f[2]) for pr in progs):
            raise BadInput(f"manifest line {lineno}: {series.bpf_line} {f[1]} {f[2]} recorded twice")
        progs.append({"id": int(f[2]), "name": f[3], "ns": int(f[4]), "cnt": int(f[5])})
    else:
        return False
    return True


def load_manifest(text):
    """Parse manifest.tsv: meta, per-path notes, the runs in order, and the paired
    runs of each series (BPF, in-flight, module): {"runs": [pair runs in order],
    "device": None or the status of their shared device (the `pairs`, `ipairs` or
    `mpairs` line)}; an in-flight "on" run has "polls" and "lines" from its ipoll
    line, a module or BPF pair run "busy" (CPU ticks) and "ios" from its mcpu or
    pcpu line, a BPF "on" run "bpf" (its programs) from its pbpf lines."""
    meta, notes, runs = {}, {}, []
    series = {s: ({"runs": [], "device": None}, {}) for s in SERIES}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        f = line.split("\t")
        if f[0] == "meta" and len(f) == 3:
            meta[f[1]] = f[2]
        elif f[0] == "note" and len(f) == 4:
            notes.setdefault(f[1], {})[f[2]] = f[3]
        elif f[0] == "run" and len(f) == 6 and _count(f[1]) and f[3] in ("ok", "failed"):
            runs.append({"rep": int(f[1]), "path": f[2], "status": f[3],
                         "file": f[4], "message": f[5]})
        elif _stage_line(f):
            pass  # load_stages's
        elif not any(_parse_pair_line(s, pairs, polls, f, lineno)
                     for s, (pairs, polls) in series.items()):
            raise BadInput(f"manifest line {lineno}: cannot parse {line!r}")
    # A poll line without its run (the guest stopped in between) is left out:
    # the missing run is reported.
    for s, (pairs, polls) in series.items():
        for r in pairs["runs"]:
            if s.cpu_line and (r["pair"], r["mode"]) in polls:
                r["busy"], r["ios"] = polls[(r["pair"], r["mode"])]
            elif s.poll_line and r["mode"] == "on" and r["pair"] in polls:
                r["polls"], r["lines"] = polls[r["pair"]]
            if s.bpf_line and r["mode"] == s.modes[1] and ("bpf", r["pair"]) in polls:
                r["bpf"] = polls[("bpf", r["pair"])]
    return (meta, notes, runs) + tuple(series[s][0] for s in SERIES)


def _stage_line(f):
    """The fields of a `stage <path> <job> ok|failed <json file> <message>` line
    as a dict, or None if f is not one."""
    if f[0] == "stage" and len(f) == 6 and f[1] and f[2] and f[3] in ("ok", "failed"):
        return {"path": f[1], "job": f[2], "status": f[3], "file": f[4], "message": f[5]}
    return None


def load_stages(text):
    """The stages pass's runs of manifest.tsv, in order (load_manifest checks the
    rest of the lines): [{"path", "job", "status", "file", "message"}]."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        st = _stage_line(line.split("\t"))
        if st is None:
            continue
        if any(o["path"] == st["path"] and o["job"] == st["job"] for o in out):
            raise BadInput(f"manifest line {lineno}: stage {st['path']} {st['job']} recorded twice")
        out.append(st)
    return out


def parse_stages_json(text):
    """dmuser-lat --json's output (one JSON object per line; the last is taken:
    without an interval it prints one, at SIGINT) as {"unit", "stages": [{"stage",
    "count", "p50_us", "p99_us", "mean_us", "sum_ns"}] in STAGE_ORDER, "requests"}.
    p50/p99 are dmuser-lat's estimates, in µs whatever its unit; mean_us is
    sum_ns / count (None without sum_ns: the kernel's stages have none)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise BadInput("dmuser-lat printed nothing")
    try:
        doc = json.loads(lines[-1])
    except ValueError as e:
        raise BadInput(f"dmuser-lat's output is not JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("latency"), list):
        raise BadInput("dmuser-lat's output has no latency array")
    scale = {"usecs": 1.0, "msecs": 1000.0}.get(doc.get("unit"))
    if scale is None:
        raise BadInput(f"dmuser-lat's unit is {doc.get('unit')!r}, not usecs or msecs")
    stages = []
    for e in doc["latency"]:
        name = e.get("stage")
        if not isinstance(name, str) or not isinstance(e.get("count"), int):
            raise BadInput(f"dmuser-lat's latency entry lacks a stage or a count: {e!r}")
        if "op" in e or "device" in e:
            raise BadInput("dmuser-lat's output is per op or per device (-O, -D): not one"
                           " histogram per stage")
        if any(st["stage"] == name for st in stages):
            raise BadInput(f"dmuser-lat's output has stage {name!r} twice")
        count, sum_ns = e["count"], e.get("sum_ns")
        stages.append({"stage": name, "count": count,
                       "p50_us": None if e.get("p50") is None else e["p50"] * scale,
                       "p99_us": None if e.get("p99") is None else e["p99"] * scale,
                       "sum_ns": sum_ns,
                       "mean_us": sum_ns / count / 1000.0 if sum_ns is not None and count else None})
    rank = {n: i for i, n in enumerate(STAGE_ORDER)}
    stages.sort(key=lambda st: rank.get(st["stage"], len(STAGE_ORDER)))  # stable: others keep theirs
    return {"unit": doc["unit"], "stages": stages, "requests": doc.get("requests")}


def collect_stages(entries, load_text):
    """Each stages run with its stages (parse_stages_json of load_text(run)), or
    "error": why it has none (the run failed, its JSON is missing or bad)."""
    out = []
    for st in entries:
        st = dict(st)
        if st["status"] != "ok":
            st["error"] = st["message"] or "failed"
        else:
            try:
                st.update(parse_stages_json(load_text(st)))
            except (OSError, BadInput) as e:
                st["error"] = f"{st['file']}: {e}"
        out.append(st)
    return out


def requested_pairs(meta, series=BPF):
    """How many pairs of the series the guest was to run (meta bpf_pairs or
    inflight_pairs; 0 if absent)."""
    v = meta.get(series.meta, "0")
    if not re.fullmatch(r"[0-9]+", v):
        raise BadInput(f"meta {series.meta} is not a count: {v!r}")
    return int(v)


def parse_fio_json(text):
    """fio's JSON output (anything fio printed before the '{' is skipped)."""
    start = text.find("{")
    if start < 0:
        raise BadInput("no JSON object in fio output")
    return json.loads(text[start:])


def _clat_us(side, pct):
    p = side.get("clat_ns", {}).get("percentile", {})
    v = p.get(pct)
    return None if v is None else v / 1000.0


def job_metrics(fio_job):
    """One fio job's numbers: IOPS and bytes/s summed over reads and writes;
    completion latency percentiles of reads, or of writes for a write-only job."""
    rd, wr = fio_job.get("read", {}), fio_job.get("write", {})
    lat_dir = "read" if rd.get("total_ios", 0) > 0 or wr.get("total_ios", 0) == 0 else "write"
    side = rd if lat_dir == "read" else wr
    return {
        "iops": rd.get("iops", 0.0) + wr.get("iops", 0.0),
        "bw_bytes": rd.get("bw_bytes", 0) + wr.get("bw_bytes", 0),
        "clat_dir": lat_dir,
        "clat_p50_us": _clat_us(side, "50.000000"),
        "clat_p99_us": _clat_us(side, "99.000000"),
        "error": fio_job.get("error", 0),
    }


# ---- numbers -----------------------------------------------------------------

def spread(values):
    """median, min and max of the values that are not None (None if none)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def ratio(num, den):
    if num is None or den is None or den == 0:
        return None
    return num / den


def collect(runs, paths, jobs, repeat, load_fio):
    """Attach each run's per-job numbers; return (runs, failures).

    load_fio(run) returns the parsed fio JSON of an ok run (or raises). A job
    that is missing from fio's output or has an error fails that run's job; a
    (repetition, path) with no run line at all (the guest died) is a failure."""
    failures = []
    seen = {(r["rep"], r["path"]) for r in runs}
    for rep in range(1, repeat + 1):
        for path in paths:
            if (rep, path) not in seen:
                failures.append({"rep": rep, "path": path, "job": None,
                                 "message": "no run recorded (the guest stopped before it)"})
    for run in runs:
        run["jobs"] = {}
        if run["status"] != "ok":
            failures.append({"rep": run["rep"], "path": run["path"], "job": None,
                             "message": run["message"] or "failed"})
            continue
        try:
            fio_jobs = load_fio(run).get("jobs", [])
        except (OSError, ValueError, BadInput) as e:
            run["status"] = "failed"
            failures.append({"rep": run["rep"], "path": run["path"], "job": None,
                             "message": f"fio output: {e}"})
            continue
        by_name = {j["jobname"]: j for j in fio_jobs}
        count = collections.Counter(j["jobname"] for j in fio_jobs)
        for job in jobs:
            if job not in by_name:
                failures.append({"rep": run["rep"], "path": run["path"], "job": job,
                                 "message": "not in fio's output"})
                continue
            if count[job] > 1:
                # numjobs without group_reporting: one entry per process, and
                # any one of them would be a fraction of the job's IOPS.
                failures.append({"rep": run["rep"], "path": run["path"], "job": job,
                                 "message": f"{count[job]} entries in fio's output"
                                            " (numjobs without group_reporting)"})
                continue
            m = job_metrics(by_name[job])
            if m["error"]:
                failures.append({"rep": run["rep"], "path": run["path"], "job": job,
                                 "message": f"fio error {m['error']}"})
                continue
            run["jobs"][job] = m
    return runs, failures


def collect_pairs(pairs, n_pairs, load_fio, job=PAIR_JOB, series=BPF):
    """Attach each pair run's IOPS of the job ("iops", None when it has none);
    return the failures: a failed run, a job missing or in error, the shared
    device's set-up or teardown, and (unless that device failed, which explains
    them) runs of pairs 1..n_pairs with no line at all (the guest stopped). In a
    series with poll lines, an ok "on" run without polls (no poll line, or 0
    polls) failed too: its poller did not run; in one with bpf lines, an ok "on"
    run without them (the guest fails a run whose programs it cannot find). Each
    ok run also gets "fio_ios", the job's reads + writes as fio counted them (after
    the ramp)."""
    failures = []

    def fail(run, message, with_job=False):
        failures.append({"series": series.line, "pair": run and run["pair"],
                         "mode": run and run["mode"], "path": DMU,
                         "job": job if with_job else None, "message": message})

    device = pairs["device"]
    if device is not None and device["status"] != "ok":
        fail(None, series.device + ": " + (device["message"] or "failed"))
    else:
        seen = {(r["pair"], r["mode"]) for r in pairs["runs"]}
        for p in range(1, n_pairs + 1):
            for mode in series.modes:
                if (p, mode) not in seen:
                    fail({"pair": p, "mode": mode}, "no run recorded (the guest stopped before it)")
    for run in pairs["runs"]:
        run["iops"] = None
        if run["status"] != "ok":
            fail(run, run["message"] or "failed")
            continue
        if series.poll_line and run["mode"] == "on" and not run.get("polls"):
            run["status"] = "failed"
            fail(run, f"the poller did not run (no {series.poll_line} line, or 0 polls)")
            continue
        if series.bpf_line and run["mode"] == series.modes[1] and not run.get("bpf"):
            run["status"] = "failed"
            fail(run, f"no BPF program statistics (no {series.bpf_line} line)")
            continue
        try:
            by_name = {j["jobname"]: j for j in load_fio(run).get("jobs", [])}
        except (OSError, ValueError, BadInput) as e:
            run["status"] = "failed"
            fail(run, f"fio output: {e}")
            continue
        if job not in by_name:
            fail(run, "not in fio's output", with_job=True)
            continue
        m = job_metrics(by_name[job])
        if m["error"]:
            fail(run, f"fio error {m['error']}", with_job=True)
            continue
        run["iops"] = m["iops"]
        rd, wr = by_name[job].get("read", {}), by_name[job].get("write", {})
        run["fio_ios"] = rd.get("total_ios", 0) + wr.get("total_ios", 0)
    return failures


def cpu_per_request_us(run, clk_tck):
    """A module or BPF pair run's guest CPU µs per request: its busy CPU ticks over
    the fio run (1/clk_tck s each) per I/O the device completed meanwhile; None
    without an mcpu or pcpu line, a tick length, or I/Os."""
    if run.get("ios") in (None, 0) or not clk_tck:
        return None
    return run["busy"] * 1e6 / clk_tck / run["ios"]


def paired_cost(pair_runs, n_pairs, job=PAIR_JOB, series=BPF, clk_tck=None):
    """The cost of what the series' second mode (B: "on", "head") adds from the
    pair runs (after collect_pairs): per complete pair (both runs ok with the
    job's IOPS) cost = 1 - B / A IOPS, each pair keyed by its modes ("off", "on"
    or "base", "head"); the median, min and max over those pairs (None when there
    are none). An incomplete pair is dropped, with the reason. When the "on" runs
    were polled, each pair has its "polls" and "lines", and the result their
    totals over the complete pairs (else these totals are None). In a series with
    cpu lines, each pair has "<mode>_cpu_us" (cpu_per_request_us, clk_tck ticks a
    second) and "cpu_change" = B / A - 1 of them (None unless both are known), and
    the result "cpu_median", "cpu_min" and "cpu_max" of the changes. In a series
    with bpf lines, each pair has "bpf_progs" (the B run's programs), "bpf_ns" and
    "bpf_runs" (their run time and runs over the fio run), "bpf_ns_per_req" (per
    I/O the device completed), "bpf_runs_per_req" and "bpf_share" (bpf_ns over the
    busy CPU time of that run), each None when unknown, and the result
    "bpf_n" (pairs with bpf_ns_per_req), "bpf_ns" and "bpf_share" (spreads over
    the pairs: median, min, max; None without)."""
    a, b = series.modes
    by_pair = {}
    for r in pair_runs:
        by_pair.setdefault(r["pair"], []).append(r)
    complete, dropped = [], []
    for p in sorted(by_pair):
        runs = {r["mode"]: r for r in by_pair[p]}
        why = []
        for mode in series.modes:
            r = runs.get(mode)
            if r is None:
                why.append(f"{mode} not run")
            elif r["status"] != "ok":
                why.append(f"{mode} failed")
            elif r.get("iops") is None:
                why.append(f"{mode} has no {job} result")
        if not why and runs[a]["iops"] <= 0:
            why.append(f"{a} gave 0 IOPS")
        if why:
            dropped.append({"pair": p, "order": [r["mode"] for r in by_pair[p]],
                            "why": ", ".join(why)})
            continue
        ia, ib = runs[a]["iops"], runs[b]["iops"]
        complete.append({"pair": p, "order": [r["mode"] for r in by_pair[p]],
                         a: ia, b: ib, "cost": 1.0 - ib / ia})
        if "polls" in runs[b]:
            complete[-1].update(polls=runs[b]["polls"], lines=runs[b]["lines"])
        if series.cpu_line:
            ca, cb = (cpu_per_request_us(runs[m], clk_tck) for m in series.modes)
            complete[-1].update({f"{a}_cpu_us": ca, f"{b}_cpu_us": cb,
                                 "cpu_change": cb / ca - 1.0 if ca and cb is not None else None})
        if series.bpf_line:
            complete[-1].update(bpf_cost_of_run(runs[b], clk_tck))
    s = spread([c["cost"] for c in complete]) or {"median": None, "min": None, "max": None}
    polled = [c for c in complete if "polls" in c]
    res = {"job": job, "requested": n_pairs, "n": len(complete), "pairs": complete,
           "dropped": dropped, "median": s["median"], "min": s["min"], "max": s["max"],
           "polls": sum(c["polls"] for c in polled) if polled else None,
           "lines": sum(c["lines"] for c in polled) if polled else None}
    if series.cpu_line:
        cs = [c["cpu_change"] for c in complete if c["cpu_change"] is not None]
        sc = spread(cs) or {"median": None, "min": None, "max": None}
        res.update(modes=list(series.modes), cpu_n=len(cs), cpu_median=sc["median"],
                   cpu_min=sc["min"], cpu_max=sc["max"])
    if series.bpf_line:
        with_ns = [c for c in complete if c["bpf_ns_per_req"] is not None]
        res.update(bpf_n=len(with_ns), bpf_ns=spread([c["bpf_ns_per_req"] for c in with_ns]),
                   bpf_share=spread([c["bpf_share"] for c in with_ns]),
                   bpf_runs_per_req=spread([c["bpf_runs_per_req"] for c in with_ns]))
    return res


def bpf_cost_of_run(run, clk_tck):
    """An "on" run's BPF cost in CPU time (see paired_cost): the sums over its
    programs, per I/O the device completed, and as a share of its busy CPU time."""
    progs = run.get("bpf") or []
    ns, runs = sum(p["ns"] for p in progs), sum(p["cnt"] for p in progs)
    ios, busy = run.get("ios"), run.get("busy")
    busy_ns = busy * 1e9 / clk_tck if busy and clk_tck else None
    known = bool(progs and ios)
    return {"bpf_progs": progs, "bpf_ns": ns if progs else None,
            "bpf_runs": runs if progs else None,
            "bpf_ns_per_req": ns / ios if known else None,
            "bpf_runs_per_req": runs / ios if known else None,
            "bpf_share": ns / busy_ns if known and busy_ns else None}


def summarize(runs, paths, jobs):
    """summary[job][path]: n, iops/mbps/p50/p99 spreads, ratio to loop (medians).
    A path with no successful run of a job has no entry for it."""
    summary = {}
    for job in jobs:
        per_path = {}
        for path in paths:
            ms = [r["jobs"][job] for r in runs if r["path"] == path and job in r["jobs"]]
            if not ms:
                continue
            per_path[path] = {
                "n": len(ms),
                "iops": spread([m["iops"] for m in ms]),
                "mbps": spread([m["bw_bytes"] / 1e6 for m in ms]),
                "clat_dir": ms[0]["clat_dir"],
                "clat_p50_us": spread([m["clat_p50_us"] for m in ms]),
                "clat_p99_us": spread([m["clat_p99_us"] for m in ms]),
            }
        base = per_path.get(BASELINE)
        for entry in per_path.values():
            entry["ratio_to_loop"] = ratio(entry["iops"]["median"],
                                           base["iops"]["median"] if base else None)
        summary[job] = per_path
    return summary


def _median_iops(summary, job, path):
    e = summary.get(job, {}).get(path)
    return e["iops"]["median"] if e else None


def goals(summary, paired=None, meta=None):
    """The issue's goals on randread-4k-qd32, each PASS, FAIL or N/A (a path or
    the job did not run, no BPF pair measured). Thresholds are inclusive. The BPF
    goals use the medians over the paired runs of the collectors' BPF time per
    request and its share of the CPU time per request (see paired_cost)."""
    iops = {p: _median_iops(summary, GOAL_JOB, p) for p in (DMU, DMU_1, BASELINE, NBD, DMU_BPF)}

    def ratio_goal(num, den, threshold):
        r = ratio(iops[num], iops[den])
        gone = [p for p in (num, den) if iops[p] is None]
        ok = r is not None and round(r, 9) >= threshold
        if gone:
            detail = f"not measured: no {GOAL_JOB} result for {', '.join(gone)}"
        else:
            detail = f"{num} {iops[num]:.0f} IOPS, {den} {iops[den]:.0f} IOPS"
            r1 = ratio(iops[DMU_1], iops[den])
            if num == DMU and r1 is not None:
                detail += f" ({DMU_1}: {r1:.2f})"
        return {"goal": f"{GOAL_JOB}: {num} / {den} >= {threshold:g}", "value": r,
                "threshold": threshold, "fmt": "{:.2f}",
                "verdict": "N/A" if r is None else ("PASS" if ok else "FAIL"), "detail": detail}

    def bpf_goal(key, threshold, name, fmt, show_threshold):
        n = sum(1 for c in paired["pairs"] if c.get(key) is not None) if paired else 0
        s = spread([c.get(key) for c in paired["pairs"]]) if paired else None
        what = (f"{GOAL_JOB}: collectors' {name}, median of {n} paired run{'s' if n != 1 else ''}"
                f" <= {show_threshold}")
        if s is None:
            skipped = (meta or {}).get(BPF.meta + "_skipped")
            if skipped:
                why = skipped
            elif not paired or not (paired["pairs"] or paired["dropped"]):
                why = "no paired runs"
            elif not paired["pairs"]:
                why = "no complete pair"
            else:
                why = "no complete pair has the numbers (BPF statistics, I/Os, CPU time)"
            return {"goal": f"{GOAL_JOB}: collectors' {name} <= {show_threshold}", "value": None,
                    "threshold": threshold, "fmt": fmt, "verdict": "N/A",
                    "detail": f"not measured: {why}"}
        ok = round(s["median"], 9) <= threshold
        if key == "bpf_ns_per_req":
            detail = (f"the collectors' programs' run_time_ns (kernel.bpf_stats_enabled) over each"
                      f" on run per request the device completed, from {fmt.format(s['min'])} to"
                      f" {fmt.format(s['max'])}")
            rp = paired.get("bpf_runs_per_req")
            if rp:
                detail += f"; {rp['median']:.2f} program runs per request"
        else:
            detail = (f"the collectors' programs' run_time_ns over each on run / the guest's busy"
                      f" CPU time over it (all vCPUs), from {fmt.format(s['min'])} to"
                      f" {fmt.format(s['max'])}")
        return {"goal": what, "value": s["median"], "threshold": threshold, "fmt": fmt,
                "verdict": "PASS" if ok else "FAIL", "detail": detail}

    res = [ratio_goal(DMU, BASELINE, 0.8), ratio_goal(DMU, NBD, 3.0),
           bpf_goal("bpf_ns_per_req", BPF_NS_MAX, "BPF time per request", "{:.0f} ns",
                    f"{BPF_NS_MAX / 1000:g} µs"),
           bpf_goal("bpf_share", BPF_SHARE_MAX, "BPF time as a share of the CPU time per request",
                    "{:.2%}", f"{BPF_SHARE_MAX:.0%}")]
    return res + local_goals(summary, meta) + remote_goals(summary)


def local_goals(summary, meta=None):
    """Issue #19's goals, when dmuser-1 ran: per job dmuser-N / dmuser-1 >= 1; on
    LARGE_JOBS dmuser-1 / file >= LARGE_MIN; on QD1_JOBS dmuser-1's median p50 over
    loop's <= 1; and dmuser-N / dmuser-1 > 1 on GOAL_JOB with SCALE_CPUS vCPUs or
    more (N/A in a smaller guest: that is a BENCH_SMP run of its own)."""
    if not any(DMU_1 in paths for paths in summary.values()):
        return []

    def row(job, name, num, den, a, b, value, ok, unit="IOPS", fmt="{:.0f}"):
        gone = [p for p, v in ((num, a), (den, b)) if v is None]
        if gone or value is None:
            why = f"no {job} result for {', '.join(gone)}" if gone else f"{den}'s is 0"
            return {"goal": name, "job": job, "path": num, "value": None, "fmt": "{:.2f}",
                    "verdict": "N/A", "detail": f"not measured: {why}"}
        return {"goal": name, "job": job, "path": num, "value": value, "fmt": "{:.2f}",
                "verdict": "PASS" if ok(round(value, 9)) else "FAIL",
                "detail": f"{num} {fmt.format(a)} {unit}, {den} {fmt.format(b)} {unit}"}

    def iops_row(job, num, den, least, strict=False, name=None):
        a, b = _median_iops(summary, job, num), _median_iops(summary, job, den)
        r = ratio(a, b)
        name = name or f"{job}: {num} / {den} {'>' if strict else '>='} {least:g}"
        return row(job, name, num, den, a, b, r,
                   (lambda v: v > least) if strict else (lambda v: v >= least))

    res = [iops_row(job, DMU, DMU_1, THREADS_MIN) for job in summary]
    res += [iops_row(job, DMU_1, FILE, LARGE_MIN) for job in LARGE_JOBS]
    for job in QD1_JOBS:
        e1, el = summary.get(job, {}).get(DMU_1), summary.get(job, {}).get(BASELINE)
        a = e1["clat_p50_us"]["median"] if e1 and e1["clat_p50_us"] else None
        b = el["clat_p50_us"]["median"] if el and el["clat_p50_us"] else None
        res.append(row(job, f"{job}: {DMU_1} p50 / {BASELINE} p50 <= 1", DMU_1, BASELINE, a, b,
                       ratio(a, b), lambda v: v <= 1.0, unit="µs", fmt="{:.1f}"))
    name = f"{GOAL_JOB} with {SCALE_CPUS}+ vCPUs: {DMU} / {DMU_1} > 1"
    try:
        cpus = int((meta or {}).get("cpus"))
    except (TypeError, ValueError):
        cpus = None
    if cpus is None or cpus < SCALE_CPUS:
        had = f"this run had {cpus} vCPUs" if cpus is not None else "this run's vCPUs are not known"
        res.append({"goal": name, "job": GOAL_JOB, "path": DMU, "value": None, "fmt": "{:.2f}",
                    "verdict": "N/A",
                    "detail": f"not measured: needs BENCH_SMP={SCALE_CPUS} or more ({had})"})
    else:
        res.append(iops_row(GOAL_JOB, DMU, DMU_1, 1.0, strict=True, name=name))
    return res


def remote_goals(summary):
    """Each REMOTE_GOALS goal whose dmuserd path ran (BENCH_SET=nbd: dmuser-nbd
    against the kernel's nbd client; BENCH_SET=rbd: dmuser-rbd against rbd-nbd and
    krbd), per REMOTE_JOBS job."""
    res = []
    for num, den, least, shared in REMOTE_GOALS:
        if not any(num in paths for paths in summary.values()):
            continue
        for job in REMOTE_JOBS:
            a, b = _median_iops(summary, job, num), _median_iops(summary, job, den)
            r = ratio(a, b)
            gone = [p for p, v in ((num, a), (den, b)) if v is None]
            detail = (f"not measured: no {job} result for {', '.join(gone)}" if gone else
                      f"{num} {a:.0f} IOPS, {den} {b:.0f} IOPS ({shared})")
            res.append({"goal": f"{job}: {num} / {den} >= {least:g}", "job": job, "path": num,
                        "value": r, "threshold": least, "fmt": "{:.2f}",
                        "verdict": "N/A" if r is None else
                        ("PASS" if round(r, 9) >= least else "FAIL"),
                        "detail": detail})
    return res


def bpf_iops_view(summary, paired=None):
    """The collectors' cost in IOPS, the second view (informational, no verdict):
    the median cost over the paired runs when there are at least MIN_PAIRS
    complete pairs, else 1 - the ratio of dmuser-N-bpf's and dmuser-N's median
    IOPS; "within" says whether it is within BPF_COST_MAX (its goal before the
    CPU-time goals; None when not measured)."""
    a, b = _median_iops(summary, GOAL_JOB, DMU_BPF), _median_iops(summary, GOAL_JOB, DMU)
    r = ratio(a, b)
    by_paths = None if r is None else 1.0 - r
    n = paired["n"] if paired else 0
    if n < MIN_PAIRS:
        why = ("no paired runs" if not paired or not (paired["pairs"] or paired["dropped"])
               else f"{n} complete pair{'s' if n != 1 else ''}, {MIN_PAIRS} needed")
        gone = [p for p, v in ((DMU_BPF, a), (DMU, b)) if v is None]
        detail = (f"not measured: no {GOAL_JOB} result for {', '.join(gone)}" if gone else
                  f"{DMU_BPF} {a:.0f} IOPS, {DMU} {b:.0f} IOPS")
        detail += f" (the median of each path's runs, not pairs: {why})"
        name, value = f"{GOAL_JOB}: BPF cost 1 - {DMU_BPF} / {DMU} (IOPS)", by_paths
    else:
        value = paired["median"]
        detail = (f"pairs of {paired['job']} runs on one {DMU} device without/with both"
                  f" collectors, cost 1 - on / off IOPS from {paired['min']:.1%} to"
                  f" {paired['max']:.1%}")
        if paired["dropped"]:
            detail += (f" ({len(paired['dropped'])} incomplete pair"
                       f"{'s' if len(paired['dropped']) != 1 else ''} dropped)")
        if by_paths is not None:
            detail += f"; from the path medians ({DMU_BPF} / {DMU}) it would be {by_paths:.1%}"
        name = f"{GOAL_JOB}: BPF cost, median of {n} paired runs without/with the collectors (IOPS)"
    return {"view": name, "value": value, "reference": BPF_COST_MAX,
            "within": None if value is None else round(value, 9) <= BPF_COST_MAX, "detail": detail}


def bpf_costs(summary, jobs):
    """1 - dmuser-N-bpf / dmuser-N for every job where both ran (informational)."""
    out = {}
    for job in jobs:
        r = ratio(_median_iops(summary, job, DMU_BPF), _median_iops(summary, job, DMU))
        if r is not None:
            out[job] = 1.0 - r
    return out


def clk_tck(meta, series=MODULE):
    """The guest's USER_HZ (meta <series meta>_clk_tck: module_pairs_clk_tck,
    bpf_pairs_clk_tck), None if absent or bad."""
    v = meta.get(series.meta + "_clk_tck", "")
    return int(v) if _count(v) else None


def build_results(meta, notes, runs, failures, paths, jobs, pairs=None, ipairs=None, mpairs=None,
                  stages=None):
    """pairs, ipairs, mpairs: load_manifest's paired BPF, in-flight and module runs
    after collect_pairs (None: none); stages: the stages runs after collect_stages.
    A FAILed remote goal whose job has a stages run on its dmuserd path points to it."""
    summary = summarize(runs, paths, jobs)
    stages = stages or []
    pairs = pairs or {"runs": [], "device": None}
    ipairs = ipairs or {"runs": [], "device": None}
    mpairs = mpairs or {"runs": [], "device": None}
    paired = paired_cost(pairs["runs"], requested_pairs(meta), clk_tck=clk_tck(meta, BPF))
    gl = goals(summary, paired, meta)
    for g in gl:
        if g["verdict"] == "FAIL" and g.get("job") and any(
                st["path"] == g["path"] and st["job"] == g["job"] for st in stages):
            g["detail"] += f"; see {STAGES_REF} ({g['path']} {g['job']})"
    return {
        "emulated": True,
        "emulated_note": EMULATED,
        "meta": meta,
        "paths": paths,
        "jobs": jobs,
        "notes": notes,
        "runs": runs,
        "failures": failures,
        "summary": summary,
        "goals": gl,
        "bpf_iops_view": bpf_iops_view(summary, paired),
        "bpf_cost": bpf_costs(summary, jobs),
        "pair_runs": pairs["runs"],
        "pairs_device": pairs["device"],
        "bpf_cost_paired": paired,
        "inflight_pair_runs": ipairs["runs"],
        "inflight_pairs_device": ipairs["device"],
        "inflight_cost_paired": paired_cost(ipairs["runs"], requested_pairs(meta, INFLIGHT)),
        "module_pair_runs": mpairs["runs"],
        "module_pairs_device": mpairs["device"],
        "module_cost_paired": paired_cost(mpairs["runs"], requested_pairs(meta, MODULE),
                                          series=MODULE, clk_tck=clk_tck(meta)),
        "stages": stages,
    }


# ---- rendering ---------------------------------------------------------------

def _num(v, fmt="{:.0f}"):
    return "–" if v is None else fmt.format(v)


def _spread_num(s, key="median", fmt="{:.0f}"):
    return "–" if s is None else _num(s[key], fmt)


def failure_label(f):
    """'rep 2 loop randread-4k-qd1', 'BPF pair 3 on', 'BPF pairs' (their device),
    'in-flight pair 2 off', 'in-flight pairs', 'module pair 1 head', 'module pairs'."""
    job = f" {f['job']}" if f.get("job") else ""
    if "pair" in f:
        label = next(s.label for s in SERIES if s.line == f.get("series", BPF.line))
        return f"{label}s" if f["pair"] is None else f"{label} {f['pair']} {f['mode']}{job}"
    return f"rep {f['rep']} {f['path']}{job}"


def _module_refs(m):
    """The two modules of the module pairs, from the metas: (A, B) descriptions."""
    base = f"`{m.get('module_base_ref', '?')}` ({m.get('module_base_commit', '?')})"
    head = f"the module under test, HEAD ({m.get('module_head_commit', '?')})"
    return base, head


def render_paired(res, series=BPF):
    """The series' section, "BPF cost, paired", "In-flight table cost, paired" or
    "Module A/B, paired" (empty when the guest did not say)."""
    pc, m, title = res[series.result_key], res["meta"], "## " + series.title
    a, b = series.modes
    if not pc["pairs"] and not pc["dropped"] and not pc["requested"]:
        skipped = m.get(series.meta + "_skipped")
        return [title, "", f"Not run: {skipped}.", ""] if skipped else []
    runtime, cpus, poll = (m.get(f"{series.meta}_{k}") for k in ("runtime_s", "cpus", "poll"))
    ma, mb = _module_refs(m)
    lines = [title, "",
             f"{pc['job']} " + series.how.format(on=series.on, a=ma, b=mb)
             + (f" Each run {runtime} s after the ramp." if runtime else "")
             + (f" CPUs: {cpus}." if cpus else "")
             + (f" Poller: {poll}." if poll else ""), ""]
    polled = pc["polls"] is not None
    cpu = series.cpu_line is not None
    bpf = series.bpf_line is not None

    def extra(c):
        if cpu:
            return (f" {_num(c[a + '_cpu_us'], '{:.1f}')} | {_num(c[b + '_cpu_us'], '{:.1f}')} |"
                    f" {_num(c['cpu_change'], '{:+.1%}')} |"
                    + (f" {_num(c['bpf_ns_per_req'])} | {_num(c['bpf_runs_per_req'], '{:.2f}')} |"
                       f" {_num(c['bpf_share'], '{:.2%}')} |" if bpf else ""))
        return f" {c['polls']} | {c['lines']} |" if polled else ""
    more = polled or cpu
    ncols = (3 if cpu else 2) + (3 if bpf else 0)
    blanks = " – |" * ncols
    rows = [(c["pair"], f"| {c['pair']} | {', '.join(c['order'])} | {c[a]:.0f} | {c[b]:.0f}"
                        f" | {c['cost']:.1%} |" + extra(c)) for c in pc["pairs"]]
    rows += [(d["pair"], f"| {d['pair']} | {', '.join(d['order'])} | – | – | dropped: {d['why']} |"
                         + (blanks if more else "")) for d in pc["dropped"]]
    if rows:
        head = f"| pair | order | {a} IOPS | {b} IOPS | cost |"
        if cpu:
            head += f" {a} CPU µs/req | {b} CPU µs/req | CPU/req change |"
            if bpf:
                head += " BPF ns/req | BPF runs/req | BPF share of CPU |"
        elif polled:
            head += " polls | lines |"
        lines += [head, "|---:|---|---:|---:|---:|" + ("---:|" * ncols if more else "")]
        lines += [row for _, row in sorted(rows)] + [""]
    if pc["n"]:
        text = (f"Median cost **{pc['median']:.1%}** over {pc['n']} complete pair"
                f"{'s' if pc['n'] != 1 else ''} of {pc['requested']} (min {pc['min']:.1%},"
                f" max {pc['max']:.1%})")
        if series is BPF:
            text += ("; the IOPS view (informational) uses it" if pc["n"] >= MIN_PAIRS else
                     f"; too few for the IOPS view ({MIN_PAIRS} needed), which uses the path medians")
        if cpu and pc["cpu_n"]:
            text += (f"; CPU per request: median change **{pc['cpu_median']:+.1%}** over"
                     f" {pc['cpu_n']} pair{'s' if pc['cpu_n'] != 1 else ''} (min"
                     f" {pc['cpu_min']:+.1%}, max {pc['cpu_max']:+.1%}), {b} / {a} − 1.")
        elif cpu:
            text += "; no CPU per request (no pair has both runs' CPU time and I/Os)."
        else:
            text += "."
        if bpf and pc["bpf_n"]:
            ns, sh, rp = pc["bpf_ns"], pc["bpf_share"], pc["bpf_runs_per_req"]
            names = sorted({pr["name"] for c in pc["pairs"] for pr in c["bpf_progs"]})
            nprogs = sorted({len(c["bpf_progs"]) for c in pc["pairs"] if c["bpf_progs"]})
            text += (f" The collectors' BPF programs ({'/'.join(map(str, nprogs))} per on run:"
                     f" {', '.join(names)}) ran **{ns['median']:.0f} ns per request** (median over"
                     f" {pc['bpf_n']} pair{'s' if pc['bpf_n'] != 1 else ''}; min {ns['min']:.0f},"
                     f" max {ns['max']:.0f}), {rp['median']:.2f} program runs per request")
            text += (f", **{sh['median']:.2%} of the CPU time per request** (min {sh['min']:.2%},"
                     f" max {sh['max']:.2%})." if sh else "; no share of the CPU time (no CPU time).")
        elif bpf:
            text += " No complete pair has the collectors' BPF program time."
        if polled:
            text += (f" In their on runs: **{pc['polls']} polls, {pc['lines']} lines seen**"
                     f" (dmuser-inflight's request lines)")
            try:
                secs = pc["n"] * (int(runtime) + int(m["ramp_s"]))
                text += f", about {pc['polls'] / secs:.1f} polls a second of fio ({secs} s)."
            except (KeyError, TypeError, ValueError, ZeroDivisionError):
                text += "."
        lines.append(text)
    else:
        lines.append(f"No complete pair of {pc['requested']}"
                     + (": the IOPS view uses the path medians; no BPF time per request."
                        if series is BPF else "."))
    lines.append("")
    return lines


def render_stages(res):
    """The section "Where the time goes": a table per stages run (empty when the
    guest ran none and said nothing)."""
    m, runs = res["meta"], res.get("stages") or []
    skipped = m.get("stages_skipped")
    if not runs and not skipped:
        return []
    lines = ["## " + STAGES_TITLE, "",
             "Each run: the path set up afresh, one fio of the job with `bpf/dmuser-lat -p <daemon"
             " pid> -S all --json` on the device (libdmuser's USDT stages of that daemon), stopped"
             " with SIGINT after fio. Stages in the order a request goes through them (queue +"
             " handoff + pickup + backend + reply = total, per request); p50/p99 are dmuser-lat's"
             " estimates from its log2 buckets, mean = sum_ns / requests (exact). Ramp included.", ""]
    if skipped:
        lines += [f"{'Skipped' if runs else 'Not run'}: {skipped}.", ""]
    for st in runs:
        lines += [f"### {st['path']} {st['job']}", ""]
        if "error" in st:
            lines += [f"FAILED (not in the exit status): {st['error']}", ""]
            continue
        lines += ["| stage | requests | p50 µs | p99 µs | mean µs |", "|---|---:|---:|---:|---:|"]
        for s in st["stages"]:
            lines.append(f"| {s['stage']} | {s['count']} | {_num(s['p50_us'], '{:.1f}')} |"
                         f" {_num(s['p99_us'], '{:.1f}')} | {_num(s['mean_us'], '{:.1f}')} |")
        rq = st.get("requests")
        if isinstance(rq, dict) and "completed" in rq:
            lines.append("")
            lines.append(f"Requests: {rq['completed']} completed, " + ", ".join(
                f"{k.replace('_', ' ')} {v}" for k, v in rq.items() if k != "completed") + ".")
        lines.append("")
    return lines


def render_md(res):
    m = res["meta"]
    lines = ["# dm-user benchmark", "",
             f"**{res['emulated_note']}**", "",
             f"Kernel {m.get('kernel', '?')}, {m.get('cpus', '?')} vCPUs"
             f" ({m.get('accel', '?')}), guest memory {m.get('guest_mem_mib', '?')} MiB;"
             f" backing file {m.get('file', '?')}.",
             f"fio {m.get('fio', '?')}, libaio; each job {m.get('runtime_s', '?')} s after"
             f" {m.get('ramp_s', '?')} s ramp, {m.get('repeat', '?')} repetitions"
             f" ({m.get('order', '?')}). dmuser-N: N = {m.get('threads', '?')} daemon threads."
             + (f" ASLR {m['aslr']}." if "aslr" in m else "")
             + (f" Guest clocksource {m['clocksource']}." if "clocksource" in m else ""),
             "Median of the repetitions, [min–max] of IOPS; latency is fio's completion"
             " latency (clat) of reads, of writes for write-only jobs; × loop is the ratio"
             " of median IOPS to loop's.", ""]
    if res["notes"]:
        lines.append("Paths as run: " + "; ".join(
            f"{p}: " + ", ".join(f"{k}={v}" for k, v in kv.items())
            for p, kv in res["notes"].items()) + ".")
        lines.append("")
    for job in res["jobs"]:
        lines += [f"## {job}", "",
                  "| path | IOPS | min–max | MB/s | p50 µs | p99 µs | × loop |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for path in res["paths"]:
            e = res["summary"].get(job, {}).get(path)
            if e is None:
                lines.append(f"| {path} | not run | | | | | |")
                continue
            lines.append(
                f"| {path} | {_spread_num(e['iops'])} |"
                f" {_spread_num(e['iops'], 'min')}–{_spread_num(e['iops'], 'max')} |"
                f" {_spread_num(e['mbps'], fmt='{:.1f}')} |"
                f" {_spread_num(e['clat_p50_us'], fmt='{:.1f}')} |"
                f" {_spread_num(e['clat_p99_us'], fmt='{:.1f}')} |"
                f" {_num(e['ratio_to_loop'], '{:.2f}')} |")
        lines.append("")
    lines += ["## Goals", "", "| goal | value | verdict | numbers |", "|---|---:|---|---|"]
    for g in res["goals"]:
        lines.append(f"| {g['goal']} | {_num(g['value'], g.get('fmt', '{:.2f}'))} |"
                     f" **{g['verdict']}** | {g['detail']} |")
    lines.append("")
    v = res.get("bpf_iops_view")
    if v:
        lines.append(f"Second view, informational (no verdict): {v['view']}: **{_num(v['value'], '{:.1%}')}**"
                     + ("" if v["within"] is None else
                        f" ({'within' if v['within'] else 'over'} {v['reference']:.0%}, its goal before"
                        " the CPU-time goals)")
                     + f"; {v['detail']}.")
        lines.append("")
    if res["bpf_cost"]:
        lines.append("BPF cost per job (1 − dmuser-N-bpf / dmuser-N, median IOPS): " + ", ".join(
            f"{j} {c:.1%}" for j, c in res["bpf_cost"].items()) + ".")
        lines.append("")
    lines += render_paired(res) + render_paired(res, INFLIGHT) + render_paired(res, MODULE)
    lines += ["iodepth 1 latency per path (clat, median of the repetitions):", "",
              "| path | " + " | ".join(f"{j} p50 µs | {j} p99 µs" for j in QD1_JOBS) + " |",
              "|---|" + "---:|" * (2 * len(QD1_JOBS))]
    for path in res["paths"]:
        cells = []
        for j in QD1_JOBS:
            e = res["summary"].get(j, {}).get(path)
            cells += [_spread_num(e and e["clat_p50_us"], fmt="{:.1f}"),
                      _spread_num(e and e["clat_p99_us"], fmt="{:.1f}")]
        lines.append(f"| {path} | " + " | ".join(cells) + " |")
    lines.append("")
    qd1 = [f"{st['path']} {st['job']}" for st in res.get("stages") or []
           if st["job"] in QD1_JOBS and "error" not in st]
    if qd1:
        lines += [f"Per stage at iodepth 1: see {STAGES_REF} ({', '.join(qd1)}).", ""]
    lines += render_stages(res)
    if res["failures"]:
        lines += ["## Failed runs", ""]
        for f in res["failures"]:
            lines.append(f"- {failure_label(f)}: {f['message']}")
        lines.append("")
    return "\n".join(lines)


def _plots_ratio(res):
    """Whether the chart shows ratios to loop (some path has one) or, without
    loop, median IOPS."""
    return any(e and e.get("ratio_to_loop") is not None
               and not math.isnan(e["ratio_to_loop"])
               for by_path in res["summary"].values() for e in by_path.values())


def gnuplot_data(res):
    """Rows: job, then each path's ratio to loop, or its median IOPS when loop did
    not run (NaN when missing)."""
    ratio = _plots_ratio(res)
    rows = ["job " + " ".join(res["paths"])]
    for job in res["jobs"]:
        vals = []
        for path in res["paths"]:
            e = res["summary"].get(job, {}).get(path)
            v = (e["ratio_to_loop"] if ratio else e["iops"]["median"]) if e else None
            vals.append("NaN" if v is None or math.isnan(v) else f"{v:.4f}")
        rows.append(job + " " + " ".join(vals))
    return "\n".join(rows) + "\n"


def gnuplot_script(res, data, png):
    m = res["meta"]
    n = len(res["paths"])
    ratio = _plots_ratio(res)
    what = "median IOPS relative to loop" if ratio else "median IOPS (loop did not run)"
    return "\n".join([
        "set terminal pngcairo size 1200,600 noenhanced" if _has_cairo() else
        "set terminal png size 1200,600 noenhanced",
        f"set output '{png}'",
        f"set title 'dm-user bench: {what}, kernel {m.get('kernel', '?')}"
        " (emulated QEMU TCG guest numbers)'",
        "set style data histograms",
        "set style histogram clustered gap 1",
        "set style fill solid 0.8 border -1",
        "set boxwidth 0.9",
        "set key outside right top vertical",
        "set offsets 0, 0, graph 0.08, 0",
        "set grid ytics",
        # Ratios span from nbd's fraction of loop to the file's 100x: log scale.
        "set ylabel '" + ("IOPS / loop IOPS" if ratio else "IOPS") + " (log scale)'",
        "set logscale y",
        "set yrange [" + ("0.01" if ratio else "1") + ":*]",
        "set xtics rotate by -20 nomirror",
        "set datafile missing 'NaN'",
    ] + (["set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2"] if ratio else []) + [
        f"plot for [i=2:{n + 1}] '{data}' using i:xtic(1) title columnheader(i)",
        ""])


def _has_cairo():
    try:
        out = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True,
                             text=True, check=False)
        return "pngcairo" in out.stdout + out.stderr
    except OSError:
        return False


def write_png(res, out_dir):
    data = os.path.join(out_dir, "results.dat")
    gp = os.path.join(out_dir, "results.gp")
    png = os.path.join(out_dir, "results.png")
    with open(data, "w") as f:
        f.write(gnuplot_data(res))
    with open(gp, "w") as f:
        f.write(gnuplot_script(res, data, png))
    # gnuplot warns about a path with no point at all (it did not run): the
    # report already says so.
    done = subprocess.run(["gnuplot", gp], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"gnuplot {gp} failed: {done.stderr.strip()}")


# ---- main --------------------------------------------------------------------

def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guest", required=True, help="directory the guest wrote")
    ap.add_argument("--out", required=True, help="where results.* go")
    ap.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    try:
        with open(os.path.join(args.guest, "manifest.tsv")) as f:
            text = f.read()
        meta, notes, runs, pairs, ipairs, mpairs = load_manifest(text)
        stage_runs = load_stages(text)
        for kv in args.meta:
            k, sep, v = kv.partition("=")
            if not sep:
                raise BadInput(f"--meta wants KEY=VALUE, got {kv!r}")
            meta[k] = v
        paths, jobs = meta.get("paths", "").split(), meta.get("jobs", "").split()
        if not paths or not jobs or not meta.get("repeat", "").isdigit():
            raise BadInput("the manifest lacks a 'paths', 'jobs' or 'repeat' meta line")
        repeat = int(meta["repeat"])
        n_pairs = requested_pairs(meta)
        n_ipairs = requested_pairs(meta, INFLIGHT)
        n_mpairs = requested_pairs(meta, MODULE)
    except (OSError, BadInput) as e:
        print(f"report.py: {e}", file=sys.stderr)
        return 2

    def load_fio(run):
        with open(os.path.join(args.guest, run["file"])) as f:
            return parse_fio_json(f.read())

    runs, failures = collect(runs, paths, jobs, repeat, load_fio)
    failures += collect_pairs(pairs, n_pairs, load_fio)
    failures += collect_pairs(ipairs, n_ipairs, load_fio, series=INFLIGHT)
    failures += collect_pairs(mpairs, n_mpairs, load_fio, series=MODULE)
    def load_text(run):
        with open(os.path.join(args.guest, run["file"])) as f:
            return f.read()

    stages = collect_stages(stage_runs, load_text)
    res = build_results(meta, notes, runs, failures, paths, jobs, pairs, ipairs, mpairs, stages)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(render_md(res))
    write_png(res, args.out)
    for fl in failures:
        print(f"report.py: {failure_label(fl)} failed: {fl['message']}", file=sys.stderr)
    for st in stages:
        if "error" in st:
            print(f"report.py: stages {st['path']} {st['job']} failed (exit status unchanged):"
                  f" {st['error']}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

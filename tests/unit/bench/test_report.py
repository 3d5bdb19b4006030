#!/usr/bin/env python3
"""Host unit tests of tests/bench/report.py (the `make bench` report).

    python3 test_report.py [NAME-SUBSTRING]     prints "N passed, N failed, N skipped"
"""

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import unitrun  # noqa: E402  (tests/unit/unitrun.py)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench"))
import report  # noqa: E402

JOBS = ["randread-4k-qd1", "randread-4k-qd32"]
PATHS = ["file", "loop", "nbd", "dmuser-1", "dmuser-N", "dmuser-N-bpf"]


def fio_job(name, riops=0.0, wiops=0.0, bs=4096, p50_ns=20000, p99_ns=90000, error=0):
    def side(iops):
        return {"iops": iops, "bw_bytes": int(iops * bs), "total_ios": int(iops * 3),
                "clat_ns": {"percentile": {"50.000000": p50_ns, "99.000000": p99_ns}}}
    return {"jobname": name, "error": error, "read": side(riops), "write": side(wiops)}


def fio_out(iops_by_job, **kw):
    return {"fio version": "fio-3.33",
            "jobs": [fio_job(j, riops=v, **kw) for j, v in iops_by_job.items()]}


def manifest(paths=PATHS, jobs=JOBS, repeat=3, runs=None):
    lines = [f"meta\tkernel\t6.12.117+deb12-amd64", f"meta\tpaths\t{' '.join(paths)}",
             f"meta\tjobs\t{' '.join(jobs)}", f"meta\trepeat\t{repeat}",
             "note\tloop\tdio\t1"]
    for rep, path, status, msg in runs or []:
        lines.append(f"run\t{rep}\t{path}\t{status}\tfio/{rep}-{path}.json\t{msg}")
    return "\n".join(lines) + "\n"


def results_from(iops, paths=PATHS, jobs=JOBS, repeat=3, failed=(), p50=None, cpus=None):
    """iops[path] = list of per-repetition IOPS (the same for every job); p50[path]:
    its clat p50 in ns (default fio_job's); cpus: the meta's vCPUs."""
    runs = [(rep, p, "failed" if (rep, p) in failed else "ok", "exit 1: boom" if (rep, p) in failed else "")
            for rep in range(1, repeat + 1) for p in paths if rep <= len(iops.get(p, []))]
    text = manifest(paths, jobs, repeat, runs) + (f"meta\tcpus\t{cpus}\n" if cpus else "")
    meta, notes, mruns, *_ = report.load_manifest(text)

    def load(run):
        kw = {"p50_ns": p50[run["path"]]} if p50 and run["path"] in p50 else {}
        return fio_out({j: iops[run["path"]][run["rep"] - 1] for j in jobs}, **kw)
    mruns, failures = report.collect(mruns, paths, jobs, repeat, load)
    return report.build_results(meta, notes, mruns, failures, paths, jobs)


def goal(res, word):
    return next(g for g in res["goals"] if word in g["goal"])


def view(res):
    """The IOPS view of the BPF cost (informational)."""
    return res["bpf_iops_view"]


# The BPF pairs' default pcpu (busy ticks, I/Os) of each run, and pbpf (id, name,
# run_time_ns, run_cnt) of each on run: 100 ticks a second, so 30 µs of CPU per
# request; two programs of 25 ms over 100000 requests each: 500 ns, 2 program runs
# per request, 1/60 of the CPU time.
PCPU = (300, 100000)
PBPF = [(11, "dmu_complete_bt", 25_000_000, 100_000), (12, "dmu_complete_bt", 25_000_000, 100_000)]


def pair_lines(pairs, failed=(), device="ok", kind="pair", polls=None, cpu=None, bpf=None):
    """Manifest lines of len(pairs) pairs run in ABBA order (pair 1 off then on,
    pair 2 on then off, ...); failed: the (pair, mode) runs that failed; device:
    the status of the `pairs` line (None: no such line). kind "pair": each run
    after its pcpu line, each on run's pcpu line after its pbpf lines; bpf[p - 1]
    = (pcpu of off, pcpu of on, pbpf list of on) of pair p (default PCPU, PCPU,
    PBPF; None for a pcpu: no such line; [] for the list: no pbpf line). kind "ipair": in-flight
    pairs, whose "on" runs come after their ipoll line, polls[p - 1] = (polls,
    lines) of pair p (default (50, 10); None in polls: no ipoll line). kind
    "mpair": module pairs, modes base and head, each run after its mcpu line,
    cpu[p - 1] = ((busy, ios) of base, (busy, ios) of head) (default (300, 1000)
    each; None for a run: no mcpu line)."""
    lines = []
    a, b = ("base", "head") if kind == "mpair" else ("off", "on")
    for p in range(1, len(pairs) + 1):
        for mode in ((a, b) if p % 2 else (b, a)):
            bad = (p, mode) in failed
            if kind == "ipair" and mode == "on":
                pl = polls[p - 1] if polls else (50, 10)
                if pl is not None:
                    lines.append(f"ipoll\t{p}\t{pl[0]}\t{pl[1]}")
            if kind == "mpair":
                c = cpu[p - 1][mode == "head"] if cpu else (300, 1000)
                if c is not None:
                    lines.append(f"mcpu\t{p}\t{mode}\t{c[0]}\t{c[1]}")
            if kind == "pair":
                off_cpu, on_cpu, progs = bpf[p - 1] if bpf else (PCPU, PCPU, PBPF)
                if mode == "on":
                    lines += [f"pbpf\t{p}\t{i}\t{n}\t{ns}\t{c}" for i, n, ns, c in progs]
                c = on_cpu if mode == "on" else off_cpu
                if c is not None:
                    lines.append(f"pcpu\t{p}\t{mode}\t{c[0]}\t{c[1]}")
            lines.append(f"{kind}\t{p}\t{mode}\t{'failed' if bad else 'ok'}\tfio/{kind}-{p}-{mode}.json"
                         f"\t{'exit 1: dmuser-top exited 3' if bad else ''}")
    if device:
        lines.append(f"{kind}s\t{device}\t{'' if device == 'ok' else 'exit 1: dmuserd exited 1'}")
    return lines


def paired_results(pairs, failed=(), device="ok", requested=None, iops=None, fio_jobs=None,
                   ipairs=(), ifailed=(), idevice="ok", irequested=None, polls=None,
                   mpairs=(), mfailed=(), mdevice="ok", mrequested=None, cpu=None,
                   clk_tck="100", bpf=None):
    """Results of a run of every path (IOPS as Summary.IOPS unless given) plus the
    paired runs: pairs[p - 1] = (off IOPS, on IOPS) of pair p. fio_jobs(run):
    the jobs in that pair run's fio output (default: the pair job). ipairs,
    ifailed, idevice, irequested and polls: the same for the in-flight pairs
    (none unless ipairs or irequested; polls as for pair_lines); mpairs (base,
    head IOPS), mfailed, mdevice, mrequested and cpu: for the module pairs (cpu as
    for pair_lines; clk_tck the meta module_pairs_clk_tck and bpf_pairs_clk_tck,
    None: none); bpf: the BPF pairs' pcpu and pbpf lines, as for pair_lines."""
    iops = iops or Summary.IOPS
    runs = [(rep, p, "ok", "") for rep in (1, 2, 3) for p in PATHS]
    text = manifest(PATHS, JOBS, 3, runs)
    text += f"meta\tbpf_pairs\t{len(pairs) if requested is None else requested}\n"
    if clk_tck is not None:
        text += f"meta\tbpf_pairs_clk_tck\t{clk_tck}\n"
    text += "".join(line + "\n" for line in pair_lines(pairs, failed, device, bpf=bpf))
    if ipairs or irequested:
        text += f"meta\tinflight_pairs\t{len(ipairs) if irequested is None else irequested}\n"
        text += "".join(line + "\n" for line in pair_lines(ipairs, ifailed, idevice, "ipair", polls))
    if mpairs or mrequested:
        text += f"meta\tmodule_pairs\t{len(mpairs) if mrequested is None else mrequested}\n"
        if clk_tck is not None:
            text += f"meta\tmodule_pairs_clk_tck\t{clk_tck}\n"
        text += "".join(line + "\n" for line in pair_lines(mpairs, mfailed, mdevice, "mpair", cpu=cpu))
    meta, notes, mruns, mpairs_, mipairs, mmpairs = report.load_manifest(text)

    def load(run):
        if "pair" in run:
            v = {"ipair": ipairs, "mpair": mpairs, "pair": pairs}[
                run["file"].split("/")[1].split("-")[0]][run["pair"] - 1]
            return fio_out({j: v[run["mode"] in ("on", "head")]
                            for j in (fio_jobs(run) if fio_jobs else [report.PAIR_JOB])})
        return fio_out({j: iops[run["path"]][run["rep"] - 1] for j in JOBS})
    mruns, failures = report.collect(mruns, PATHS, JOBS, 3, load)
    failures += report.collect_pairs(mpairs_, report.requested_pairs(meta), load)
    failures += report.collect_pairs(mipairs, report.requested_pairs(meta, report.INFLIGHT), load,
                                     series=report.INFLIGHT)
    failures += report.collect_pairs(mmpairs, report.requested_pairs(meta, report.MODULE), load,
                                     series=report.MODULE)
    return report.build_results(meta, notes, mruns, failures, PATHS, JOBS, mpairs_, mipairs, mmpairs)


class Numbers(unittest.TestCase):
    def test_spread_odd_count(self):
        self.assertEqual(report.spread([5, 1, 3]), {"median": 3, "min": 1, "max": 5})

    def test_spread_even_count_averages_the_middle(self):
        self.assertEqual(report.spread([4, 1, 3, 10]), {"median": 3.5, "min": 1, "max": 10})

    def test_spread_ignores_none_and_empty_is_none(self):
        self.assertEqual(report.spread([None, 2]), {"median": 2, "min": 2, "max": 2})
        self.assertIsNone(report.spread([None]))

    def test_job_metrics_sums_directions_and_takes_read_latency(self):
        m = report.job_metrics(fio_job("mix", riops=700, wiops=300, p50_ns=15000))
        self.assertAlmostEqual(m["iops"], 1000)
        self.assertEqual(m["bw_bytes"], 1000 * 4096)
        self.assertEqual(m["clat_dir"], "read")
        self.assertAlmostEqual(m["clat_p50_us"], 15.0)

    def test_job_metrics_write_only_takes_write_latency(self):
        j = fio_job("w", wiops=100)
        j["write"]["clat_ns"]["percentile"]["99.000000"] = 123456
        self.assertEqual(report.job_metrics(j)["clat_dir"], "write")
        self.assertAlmostEqual(report.job_metrics(j)["clat_p99_us"], 123.456)

    def test_fio_json_with_leading_noise(self):
        self.assertEqual(report.parse_fio_json('note: x\n{"jobs": []}')["jobs"], [])
        with self.assertRaises(report.BadInput):
            report.parse_fio_json("fio: no output")


class Summary(unittest.TestCase):
    IOPS = {"file": [100, 110, 90], "loop": [50, 40, 60], "nbd": [10, 12, 11],
            "dmuser-1": [30, 30, 30], "dmuser-N": [45, 41, 44], "dmuser-N-bpf": [43, 44, 42]}

    def test_median_min_max_over_repetitions(self):
        e = results_from(self.IOPS)["summary"]["randread-4k-qd32"]["dmuser-N"]
        self.assertEqual(e["n"], 3)
        self.assertEqual(e["iops"], {"median": 44, "min": 41, "max": 45})

    def test_ratio_to_loop_uses_medians(self):
        s = results_from(self.IOPS)["summary"]["randread-4k-qd32"]
        self.assertAlmostEqual(s["loop"]["ratio_to_loop"], 1.0)
        self.assertAlmostEqual(s["file"]["ratio_to_loop"], 2.0)
        self.assertAlmostEqual(s["nbd"]["ratio_to_loop"], 11 / 50)

    def test_goals_pass(self):
        res = results_from(self.IOPS)
        self.assertEqual(goal(res, "/ loop")["verdict"], "PASS")    # 44/50 = 0.88
        self.assertAlmostEqual(goal(res, "/ loop")["value"], 0.88)
        self.assertEqual(goal(res, "/ nbd")["verdict"], "PASS")     # 44/11 = 4
        self.assertEqual(view(res)["within"], True)                 # 1 - 43/44 = 2.3%
        self.assertAlmostEqual(view(res)["value"], 1 - 43 / 44)
        # no pairs: the CPU-time goals are not measured
        self.assertEqual(goal(res, "BPF time per request")["verdict"], "N/A")
        self.assertEqual(goal(res, "share of the CPU time")["verdict"], "N/A")
        self.assertIn("not measured: no paired runs", goal(res, "BPF time per request")["detail"])

    def test_goals_fail(self):
        iops = dict(self.IOPS, **{"dmuser-N": [30, 30, 30], "dmuser-N-bpf": [20, 20, 20]})
        res = results_from(iops)
        self.assertEqual(goal(res, "/ loop")["verdict"], "FAIL")    # 30/50 = 0.6
        self.assertEqual(goal(res, "/ nbd")["verdict"], "FAIL")     # 30/11 < 3
        self.assertEqual(view(res)["within"], False)                # 33%

    def test_goal_thresholds_are_inclusive(self):
        iops = dict(self.IOPS, **{"loop": [50] * 3, "nbd": [10] * 3, "dmuser-N": [40] * 3,
                                  "dmuser-N-bpf": [38] * 3})
        res = results_from(iops)
        self.assertEqual([g["verdict"] for g in res["goals"][:4]], ["PASS", "PASS", "N/A", "N/A"])
        self.assertEqual(view(res)["within"], True)

    def test_no_failures_when_all_ran(self):
        self.assertEqual(results_from(self.IOPS)["failures"], [])


class LocalGoals(unittest.TestCase):
    """Issue #19's goals: dmuser-N >= dmuser-1 per job, dmuser-1 >= 0.85 x the file on
    the 128k jobs, dmuser-1's iodepth-1 p50 <= loop's, dmuser-N > dmuser-1 with 4+ vCPUs."""
    JOBS = ["randread-4k-qd1", "randread-4k-qd32", "randwrite-4k-qd1", "read-128k-seq",
            "write-128k-seq"]
    PATHS = ["file", "loop", "dmuser-1", "dmuser-N"]
    IOPS = {"file": [100, 100, 100], "loop": [50, 50, 50], "dmuser-1": [85, 86, 84],
            "dmuser-N": [85, 90, 80]}
    P50 = {"loop": 80_000, "dmuser-1": 80_000}

    def local(self, res):
        return [g for g in res["goals"] if g["goal"].split(": ", 1)[1].startswith(
            ("dmuser-N / dmuser-1", "dmuser-1 / file", "dmuser-1 p50")) or "vCPUs" in g["goal"]]

    def test_goals_in_order_and_at_their_thresholds(self):
        res = results_from(self.IOPS, paths=self.PATHS, jobs=self.JOBS, p50=self.P50, cpus=2)
        gs = self.local(res)
        self.assertEqual([g["goal"] for g in gs], [
            "randread-4k-qd1: dmuser-N / dmuser-1 >= 1", "randread-4k-qd32: dmuser-N / dmuser-1 >= 1",
            "randwrite-4k-qd1: dmuser-N / dmuser-1 >= 1", "read-128k-seq: dmuser-N / dmuser-1 >= 1",
            "write-128k-seq: dmuser-N / dmuser-1 >= 1",
            "read-128k-seq: dmuser-1 / file >= 0.85", "write-128k-seq: dmuser-1 / file >= 0.85",
            "randread-4k-qd1: dmuser-1 p50 / loop p50 <= 1",
            "randwrite-4k-qd1: dmuser-1 p50 / loop p50 <= 1",
            "randread-4k-qd32 with 4+ vCPUs: dmuser-N / dmuser-1 > 1"])
        # 85/85 = 1 and 85/100 = 0.85, p50 80 against 80: all inclusive; 2 vCPUs: N/A
        self.assertEqual([g["verdict"] for g in gs], ["PASS"] * 9 + ["N/A"])
        self.assertAlmostEqual(gs[0]["value"], 1.0)
        self.assertAlmostEqual(gs[5]["value"], 0.85)
        self.assertIn("dmuser-1 85 IOPS, file 100 IOPS", gs[5]["detail"])
        self.assertIn("dmuser-1 80.0 µs, loop 80.0 µs", gs[7]["detail"])
        self.assertIn("needs BENCH_SMP=4 or more (this run had 2 vCPUs)", gs[9]["detail"])
        md = report.render_md(res)
        self.assertIn("| read-128k-seq: dmuser-1 / file >= 0.85 | 0.85 | **PASS** |", md)

    def test_just_past_each_threshold_fails(self):
        iops = dict(self.IOPS, **{"dmuser-N": [84.9] * 3, "dmuser-1": [84.99, 85, 84.98]})
        res = results_from(iops, paths=self.PATHS, jobs=self.JOBS,
                           p50={"loop": 80_000, "dmuser-1": 80_100}, cpus=2)
        self.assertEqual([g["verdict"] for g in self.local(res)], ["FAIL"] * 9 + ["N/A"])

    def test_scaling_goal_needs_4_vcpus_and_is_strict(self):
        gs = self.local(results_from(self.IOPS, paths=self.PATHS, jobs=self.JOBS, cpus=4))
        self.assertEqual(gs[-1]["verdict"], "FAIL")     # 85 / 85 is not above 1
        self.assertIn("dmuser-N 85 IOPS, dmuser-1 85 IOPS", gs[-1]["detail"])
        iops = dict(self.IOPS, **{"dmuser-N": [90] * 3})
        gs = self.local(results_from(iops, paths=self.PATHS, jobs=self.JOBS, cpus=4))
        self.assertEqual(gs[-1]["verdict"], "PASS")
        self.assertAlmostEqual(gs[-1]["value"], 90 / 85)

    def test_a_path_or_job_not_run_is_not_measured(self):
        res = results_from({p: v for p, v in self.IOPS.items() if p != "file"},
                           paths=["loop", "dmuser-1", "dmuser-N"], jobs=["randread-4k-qd32"])
        gs = self.local(res)
        by = {g["goal"]: g for g in gs}
        self.assertEqual(by["randread-4k-qd32: dmuser-N / dmuser-1 >= 1"]["verdict"], "PASS")
        g = by["read-128k-seq: dmuser-1 / file >= 0.85"]
        self.assertEqual(g["verdict"], "N/A")
        self.assertIn("not measured: no read-128k-seq result for dmuser-1, file", g["detail"])
        self.assertEqual(by["randread-4k-qd1: dmuser-1 p50 / loop p50 <= 1"]["verdict"], "N/A")
        self.assertIn("vCPUs are not known", gs[-1]["detail"])

    def test_no_local_goal_without_dmuser_1(self):
        res = results_from({"nbd": [10] * 3, "dmuser-nbd": [12] * 3}, paths=["nbd", "dmuser-nbd"],
                           jobs=["randread-4k-qd32"])
        self.assertEqual(self.local(res), [])


class RemoteGoals(unittest.TestCase):
    """BENCH_SET=nbd: dmuserd's NBD backend against the kernel's nbd client."""
    JOBS = ["randread-4k-qd32", "randwrite-4k-qd32"]
    PATHS = ["nbd", "dmuser-nbd"]

    def remote(self, res):
        return [g for g in res["goals"] if "dmuser-nbd / nbd" in g["goal"]]

    def test_one_goal_per_job_at_or_above_1_passes(self):
        res = results_from({"nbd": [10, 11, 9], "dmuser-nbd": [12, 13, 11]},
                           paths=self.PATHS, jobs=self.JOBS)
        gs = self.remote(res)
        self.assertEqual([g["goal"] for g in gs], ["randread-4k-qd32: dmuser-nbd / nbd >= 1",
                                                   "randwrite-4k-qd32: dmuser-nbd / nbd >= 1"])
        self.assertEqual([g["verdict"] for g in gs], ["PASS", "PASS"])
        self.assertAlmostEqual(gs[0]["value"], 12 / 10)    # the medians

    def test_equal_passes_below_fails(self):
        res = results_from({"nbd": [10] * 3, "dmuser-nbd": [10] * 3}, paths=self.PATHS, jobs=self.JOBS)
        self.assertEqual([g["verdict"] for g in self.remote(res)], ["PASS", "PASS"])
        res = results_from({"nbd": [10] * 3, "dmuser-nbd": [9.9] * 3}, paths=self.PATHS, jobs=self.JOBS)
        self.assertEqual([g["verdict"] for g in self.remote(res)], ["FAIL", "FAIL"])

    def test_a_job_not_run_is_not_measured(self):
        res = results_from({"nbd": [10] * 3, "dmuser-nbd": [12] * 3}, paths=self.PATHS,
                           jobs=["randread-4k-qd32"])
        gs = self.remote(res)
        self.assertEqual([g["verdict"] for g in gs], ["PASS", "N/A"])
        self.assertIn("not measured: no randwrite-4k-qd32 result", gs[1]["detail"])

    def test_no_remote_goal_without_the_path(self):
        res = results_from(Summary.IOPS)
        self.assertEqual(self.remote(res), [])


class RbdGoals(unittest.TestCase):
    """BENCH_SET=rbd: dmuserd's RBD backend against rbd-nbd (>= 1) and krbd (>= 0.8)."""
    JOBS = ["randread-4k-qd32", "randwrite-4k-qd32"]
    PATHS = ["krbd", "rbd-nbd", "dmuser-rbd"]

    def rbd(self, res):
        return [g for g in res["goals"] if "dmuser-rbd /" in g["goal"]]

    def test_two_goals_per_job_in_order(self):
        res = results_from({"krbd": [100, 90, 110], "rbd-nbd": [50, 40, 60], "dmuser-rbd": [80, 81, 79]},
                           paths=self.PATHS, jobs=self.JOBS)
        gs = self.rbd(res)
        self.assertEqual([g["goal"] for g in gs], ["randread-4k-qd32: dmuser-rbd / rbd-nbd >= 1",
                                                   "randwrite-4k-qd32: dmuser-rbd / rbd-nbd >= 1",
                                                   "randread-4k-qd32: dmuser-rbd / krbd >= 0.8",
                                                   "randwrite-4k-qd32: dmuser-rbd / krbd >= 0.8"])
        self.assertEqual([g["verdict"] for g in gs], ["PASS", "PASS", "PASS", "PASS"])
        self.assertAlmostEqual(gs[0]["value"], 80 / 50)    # the medians
        self.assertAlmostEqual(gs[2]["value"], 80 / 100)   # 0.8 exactly: inclusive
        self.assertIn("dmuser-rbd 80 IOPS, krbd 100 IOPS", gs[2]["detail"])
        # no nbd goal in the rbd set, and the local goals are N/A
        self.assertEqual([g for g in res["goals"] if "dmuser-nbd" in g["goal"]], [])
        self.assertEqual(goal(res, "dmuser-N / loop")["verdict"], "N/A")
        md = report.render_md(res)
        self.assertIn("| randwrite-4k-qd32: dmuser-rbd / krbd >= 0.8 | 0.80 | **PASS** |", md)

    def test_thresholds_fail_just_below(self):
        res = results_from({"krbd": [100] * 3, "rbd-nbd": [79] * 3, "dmuser-rbd": [79.9] * 3},
                           paths=self.PATHS, jobs=self.JOBS)
        self.assertEqual([g["verdict"] for g in self.rbd(res)], ["PASS", "PASS", "FAIL", "FAIL"])
        res = results_from({"krbd": [10] * 3, "rbd-nbd": [100] * 3, "dmuser-rbd": [99] * 3},
                           paths=self.PATHS, jobs=self.JOBS)
        self.assertEqual([g["verdict"] for g in self.rbd(res)], ["FAIL", "FAIL", "PASS", "PASS"])

    def test_a_path_not_run_is_not_measured(self):
        res = results_from({"rbd-nbd": [10] * 3, "dmuser-rbd": [12] * 3},
                           paths=["rbd-nbd", "dmuser-rbd"], jobs=self.JOBS)
        gs = self.rbd(res)
        self.assertEqual([g["verdict"] for g in gs], ["PASS", "PASS", "N/A", "N/A"])
        self.assertIn("not measured: no randread-4k-qd32 result for krbd", gs[2]["detail"])

    def test_no_rbd_goal_without_dmuser_rbd(self):
        res = results_from({"krbd": [10] * 3, "rbd-nbd": [10] * 3}, paths=["krbd", "rbd-nbd"],
                           jobs=self.JOBS)
        self.assertEqual(self.rbd(res), [])


class MissingPaths(unittest.TestCase):
    def test_path_not_requested_gives_na_not_fail(self):
        paths = ["file", "loop", "dmuser-N"]
        res = results_from({"file": [1] * 3, "loop": [2] * 3, "dmuser-N": [2] * 3}, paths=paths)
        self.assertEqual(res["failures"], [])
        self.assertEqual(goal(res, "/ loop")["verdict"], "PASS")
        self.assertEqual(goal(res, "/ nbd")["verdict"], "N/A")
        self.assertIn("nbd", goal(res, "/ nbd")["detail"])
        self.assertEqual(goal(res, "BPF")["verdict"], "N/A")
        self.assertNotIn("nbd", res["summary"]["randread-4k-qd32"])
        md = report.render_md(res)
        self.assertIn("| randread-4k-qd32: dmuser-N / nbd >= 3 | – | **N/A** |", md)

    def test_path_that_failed_every_repetition(self):
        iops = {p: [10] * 3 for p in PATHS}
        failed = {(r, "loop") for r in (1, 2, 3)}
        res = results_from(iops, failed=failed)
        self.assertEqual(len(res["failures"]), 3)
        self.assertNotIn("loop", res["summary"]["randread-4k-qd32"])
        self.assertIsNone(res["summary"]["randread-4k-qd32"]["file"]["ratio_to_loop"])
        self.assertEqual(goal(res, "/ loop")["verdict"], "N/A")
        md = report.render_md(res)
        self.assertIn("| loop | not run |", md)
        self.assertIn("## Failed runs", md)
        self.assertIn("rep 2 loop: exit 1: boom", md)

    def test_one_failed_repetition_leaves_the_median_of_the_rest(self):
        iops = {p: [10, 20, 40] for p in PATHS}
        res = results_from(iops, failed={(3, "nbd")})
        e = res["summary"]["randread-4k-qd1"]["nbd"]
        self.assertEqual((e["n"], e["iops"]["median"]), (2, 15))
        self.assertEqual(len(res["failures"]), 1)

    def test_run_missing_from_manifest_is_a_failure(self):
        iops = {p: [10] * 3 for p in PATHS}
        iops["dmuser-N-bpf"] = [10, 10]       # the guest died before rep 3 of it
        res = results_from(iops)
        self.assertEqual([(f["rep"], f["path"]) for f in res["failures"]], [(3, "dmuser-N-bpf")])

    def test_job_missing_from_fio_output_or_with_error(self):
        meta, notes, runs, *_ = report.load_manifest(
            manifest(["loop"], JOBS, 1, [(1, "loop", "ok", "")]))
        out = {"jobs": [fio_job("randread-4k-qd1", riops=5, error=5)]}
        runs, failures = report.collect(runs, ["loop"], JOBS, 1, lambda r: out)
        self.assertEqual(sorted(f["job"] for f in failures), JOBS)
        self.assertEqual(runs[0]["jobs"], {})

    DEEP = ["randread-4k-qd256", "randread-4k-16j-qd32"]

    def test_deep_queue_jobs_reported_like_the_others(self):
        # The 16-job job as fio reports it with group_reporting: one entry, the
        # group's IOPS.
        res = results_from({p: [100, 110, 120] for p in PATHS}, jobs=JOBS + self.DEEP)
        self.assertEqual(res["failures"], [])
        for job in self.DEEP:
            self.assertEqual(res["summary"][job]["dmuser-N"]["iops"]["median"], 110)
            md = report.render_md(res)
            self.assertIn(f"## {job}\n", md)
            self.assertIn("| dmuser-N | 110 | 100–120 |", md)

    def test_job_reported_per_process_is_a_failure(self):
        # numjobs without group_reporting: 16 entries of one name, each a
        # sixteenth of the job; none of them may stand for the job.
        meta, notes, runs, *_ = report.load_manifest(
            manifest(["loop"], ["randread-4k-16j-qd32"], 1, [(1, "loop", "ok", "")]))
        out = {"jobs": [fio_job("randread-4k-16j-qd32", riops=5) for _ in range(16)]}
        runs, failures = report.collect(runs, ["loop"], ["randread-4k-16j-qd32"], 1,
                                         lambda r: out)
        self.assertEqual([(f["job"], f["message"]) for f in failures],
                         [("randread-4k-16j-qd32",
                           "16 entries in fio's output (numjobs without group_reporting)")])
        self.assertEqual(runs[0]["jobs"], {})

    def test_jobs_file_has_the_deep_jobs_and_groups_every_multi_job(self):
        path = os.path.join(HERE, "..", "..", "bench", "jobs.fio")
        sections, cur = {}, None
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("[") and line.endswith("]"):
                    cur = sections.setdefault(line[1:-1], {})
                elif cur is not None and "=" in line and not line.startswith(";"):
                    k, v = line.split("=", 1)
                    cur[k] = v
        self.assertEqual(sections["randread-4k-qd256"].get("iodepth"), "256")
        deep = sections["randread-4k-16j-qd32"]
        self.assertEqual((deep.get("numjobs"), deep.get("iodepth")), ("16", "32"))
        for name, opts in sections.items():
            if int(opts.get("numjobs", "1")) > 1:
                self.assertEqual(opts.get("group_reporting"), "1", name)


class PairedBpfCost(unittest.TestCase):
    # Costs 2%, 4%, 1%, 10%, 3%: median 3%, min 1%, max 10%.
    PAIRS = [(100, 98), (100, 96), (100, 99), (100, 90), (100, 97)]
    # The path medians alone give 1 - 20 / 44 = 55%.
    BIMODAL = dict(Summary.IOPS, **{"dmuser-N-bpf": [20, 20, 43]})

    def test_pair_lines_parse_in_order(self):
        text = manifest(runs=[]) + "meta\tbpf_pairs\t2\n" + "\n".join(pair_lines([(1, 1)] * 2)) + "\n"
        meta, _, runs, pairs, ipairs, _ = report.load_manifest(text)
        self.assertEqual(runs, [])
        self.assertEqual(report.requested_pairs(meta), 2)
        self.assertEqual([(r["pair"], r["mode"], r["status"]) for r in pairs["runs"]],
                         [(1, "off", "ok"), (1, "on", "ok"), (2, "on", "ok"), (2, "off", "ok")])
        self.assertEqual(pairs["runs"][3]["file"], "fio/pair-2-off.json")
        self.assertEqual(pairs["device"], {"status": "ok", "message": ""})
        self.assertEqual(ipairs, {"runs": [], "device": None})

    def test_no_pair_lines_means_no_pairs(self):
        meta, _, _, pairs, ipairs, mpairs = report.load_manifest(manifest(runs=[]))
        self.assertEqual(pairs, {"runs": [], "device": None})
        self.assertEqual(ipairs, {"runs": [], "device": None})
        self.assertEqual(report.requested_pairs(meta), 0)
        self.assertEqual(report.requested_pairs(meta, report.INFLIGHT), 0)
        self.assertEqual(mpairs, {"runs": [], "device": None})
        self.assertEqual(report.requested_pairs(meta, report.MODULE), 0)

    def test_median_min_max_over_pairs(self):
        pc = paired_results(self.PAIRS)["bpf_cost_paired"]
        self.assertEqual((pc["job"], pc["requested"], pc["n"], pc["dropped"]),
                         ("randread-4k-qd32", 5, 5, []))
        self.assertAlmostEqual(pc["median"], 0.03)
        self.assertAlmostEqual(pc["min"], 0.01)
        self.assertAlmostEqual(pc["max"], 0.10)
        self.assertEqual({k: pc["pairs"][1][k] for k in ("pair", "order", "off", "on")},
                         {"pair": 2, "order": ["on", "off"], "off": 100, "on": 96})
        self.assertAlmostEqual(pc["pairs"][1]["cost"], 0.04)

    def test_abba_pair_with_a_failed_run_is_dropped(self):
        res = paired_results(self.PAIRS, failed={(2, "on")})
        pc = res["bpf_cost_paired"]
        self.assertEqual([c["pair"] for c in pc["pairs"]], [1, 3, 4, 5])
        self.assertEqual(pc["dropped"], [{"pair": 2, "order": ["on", "off"], "why": "on failed"}])
        self.assertAlmostEqual(pc["median"], 0.025)     # of 2%, 1%, 10%, 3%
        self.assertEqual([(f["pair"], f["mode"]) for f in res["failures"]], [(2, "on")])
        self.assertEqual(report.failure_label(res["failures"][0]), "BPF pair 2 on")

    def test_pair_run_without_the_job_drops_the_pair(self):
        res = paired_results(self.PAIRS[:3], fio_jobs=lambda r: (
            ["randread-4k-qd1"] if (r["pair"], r["mode"]) == (3, "off") else [report.PAIR_JOB]))
        pc = res["bpf_cost_paired"]
        self.assertEqual(pc["dropped"][0]["why"], "off has no randread-4k-qd32 result")
        self.assertEqual(report.failure_label(res["failures"][0]), "BPF pair 3 off randread-4k-qd32")

    def test_iops_view_uses_the_pairs_when_3_are_complete(self):
        res = paired_results(self.PAIRS, iops=self.BIMODAL)
        g = view(res)
        self.assertEqual(g["view"], "randread-4k-qd32: BPF cost, median of 5 paired runs"
                                    " without/with the collectors (IOPS)")
        self.assertAlmostEqual(g["value"], 0.03)
        self.assertEqual(g["within"], True)
        self.assertIn("from 1.0% to 10.0%", g["detail"])
        self.assertIn("from the path medians (dmuser-N-bpf / dmuser-N) it would be 54.5%", g["detail"])
        self.assertAlmostEqual(res["bpf_cost"]["randread-4k-qd32"], 1 - 20 / 44)  # per job: paths

    def test_iops_view_is_over_above_and_within_at_5_percent_and_decides_no_goal(self):
        res = paired_results([(100, 80)] * 3)
        self.assertEqual(view(res)["within"], False)
        self.assertEqual([g["verdict"] for g in res["goals"][:4]], ["PASS", "PASS", "PASS", "PASS"])
        self.assertIn("Second view, informational (no verdict): randread-4k-qd32: BPF cost, median"
                      " of 3 paired runs without/with the collectors (IOPS): **20.0%** (over 5%,"
                      " its goal before the CPU-time goals);", report.render_md(res))
        g = view(paired_results([(100, 95), (100, 90), (100, 99)]))
        self.assertEqual((g["within"], g["reference"]), (True, 0.05))
        self.assertAlmostEqual(g["value"], 0.05)

    def test_fallback_to_path_medians_with_fewer_than_3_pairs(self):
        res = paired_results(self.PAIRS[:3], failed={(3, "on")}, iops=self.BIMODAL)
        g = view(res)
        self.assertEqual(res["bpf_cost_paired"]["n"], 2)
        self.assertEqual(g["view"], "randread-4k-qd32: BPF cost 1 - dmuser-N-bpf / dmuser-N (IOPS)")
        self.assertAlmostEqual(g["value"], 1 - 20 / 44)
        self.assertEqual(g["within"], False)
        self.assertIn("not pairs: 2 complete pairs, 3 needed", g["detail"])

    def test_fallback_without_pairs_says_so(self):
        g = view(results_from(Summary.IOPS))
        self.assertIn("BPF cost 1 - dmuser-N-bpf / dmuser-N", g["view"])
        self.assertIn("not pairs: no paired runs", g["detail"])

    def test_runs_missing_from_the_manifest_are_failures(self):
        res = paired_results(self.PAIRS[:1], requested=3, device=None)
        self.assertEqual([(f["pair"], f["mode"]) for f in res["failures"]],
                         [(2, "off"), (2, "on"), (3, "off"), (3, "on")])
        self.assertIn("no run recorded", res["failures"][0]["message"])
        self.assertEqual(res["bpf_cost_paired"]["n"], 1)

    def test_failed_shared_device_is_one_failure(self):
        res = paired_results([], requested=6, device="failed")
        self.assertEqual(len(res["failures"]), 1)
        self.assertEqual(report.failure_label(res["failures"][0]), "BPF pairs")
        self.assertIn("dmuserd exited 1", res["failures"][0]["message"])
        self.assertIn("No complete pair of 6", report.render_md(res))

    def test_garbage_pair_lines_are_rejected(self):
        ok = "pair\t1\toff\tok\tfio/pair-1-off.json\t"
        for bad in ["pair\t0\toff\tok\tf\t", "pair\tone\toff\tok\tf\t", "pair\t-1\toff\tok\tf\t",
                    "pair\t1\tmaybe\tok\tf\t", "pair\t1\toff\tfine\tf\t", "pair\t1\toff\tok\tf",
                    "pair\t1\toff\tok\tf\tmsg\textra", "pair 1 off ok f", ok + "\n" + ok,
                    "pairs\tmaybe\t", "pairs\tok", "pairs\tok\t\npairs\tok\t",
                    "run\tx\tloop\tok\tf\t"]:
            with self.subTest(bad=bad), self.assertRaises(report.BadInput):
                report.load_manifest(manifest(runs=[]) + bad + "\n")
        with self.assertRaises(report.BadInput):
            report.requested_pairs({"bpf_pairs": "six"})

    def test_markdown_paired_section(self):
        md = report.render_md(paired_results(self.PAIRS, failed={(4, "off")}))
        self.assertIn("## BPF cost, paired", md)
        self.assertIn("| 2 | on, off | 100 | 96 | 4.0% |", md)
        self.assertIn("Median cost **2.5%** over 4 complete pairs of 5 (min 1.0%, max 4.0%);"
                      " the IOPS view (informational) uses it; CPU per request: median change"
                      " **+0.0%** over 4 pairs (min +0.0%, max +0.0%), on / off − 1. The collectors'"
                      " BPF programs (2 per on run: dmu_complete_bt) ran **500 ns per request**"
                      " (median over 4 pairs; min 500, max 500), 2.00 program runs per request,"
                      " **1.67% of the CPU time per request** (min 1.67%, max 1.67%).", md)
        self.assertIn("| 1 | off, on | 100 | 98 | 2.0% | 30.0 | 30.0 | +0.0% | 500 | 2.00 | 1.67% |", md)
        self.assertIn("| 4 | on, off | – | – | dropped: off failed | – | – | – | – | – | – |", md)
        self.assertIn("| randread-4k-qd32: collectors' BPF time per request, median of 4 paired runs"
                      " <= 1 µs | 500 ns | **PASS** |", md)
        self.assertIn("| randread-4k-qd32: collectors' BPF time as a share of the CPU time per"
                      " request, median of 4 paired runs <= 3% | 1.67% | **PASS** |", md)
        self.assertIn("Second view, informational (no verdict): randread-4k-qd32: BPF cost, median"
                      " of 4 paired runs without/with the collectors (IOPS): **2.5%** (within 5%", md)
        self.assertIn("- BPF pair 4 off: exit 1: dmuser-top exited 3", md)
        self.assertIn("BPF cost per job (1 − dmuser-N-bpf / dmuser-N, median IOPS)", md)

    def test_markdown_states_how_the_runs_were_made(self):
        res = paired_results(self.PAIRS)
        self.assertNotIn("ASLR", report.render_md(res))
        res["meta"].update({"aslr": "off for fio (setarch -R)", "clocksource": "tsc",
                            "bpf_pairs_runtime_s": "4",
                            "bpf_pairs_cpus": "fio on vCPU 0, dmuserd on vCPU 1"})
        md = report.render_md(res)
        self.assertIn("ASLR off for fio (setarch -R). Guest clocksource tsc.", md)
        self.assertIn("Each run 4 s after the ramp. CPUs: fio on vCPU 0, dmuserd on vCPU 1.", md)

    def test_markdown_says_why_pairs_did_not_run(self):
        res = results_from(Summary.IOPS)
        self.assertNotIn("BPF cost, paired", report.render_md(res))
        res["meta"]["bpf_pairs_skipped"] = "no paired runs: BENCH_JOBS lacks randread-4k-qd32"
        self.assertIn("Not run: no paired runs: BENCH_JOBS lacks randread-4k-qd32.",
                      report.render_md(res))


def bpf_pair(on_busy, on_ios, *ns, cnt=None, off=PCPU):
    """pair_lines' bpf entry of one pair: the on run's pcpu (on_busy ticks, on_ios
    I/Os) and one program of each run time in ns (ids 11, 12, ...; cnt runs each,
    default on_ios)."""
    return (off, (on_busy, on_ios),
            [(11 + i, "dmu_complete_bt", n, on_ios if cnt is None else cnt) for i, n in enumerate(ns)])


class PairedBpfCpuCost(unittest.TestCase):
    # 100 ticks a second. On runs: 400, 600 and 1200 ns of BPF time per request
    # (median 600 ns); shares 40 ms / 3 s, 60 ms / 3 s, 120 ms / 2 s: 1.33%, 2%, 6%
    # (median 2%).
    BPF3 = [bpf_pair(300, 100000, 15_000_000, 25_000_000),
            bpf_pair(300, 100000, 30_000_000, 30_000_000),
            bpf_pair(200, 100000, 60_000_000, 60_000_000, cnt=50000)]
    PAIRS3 = PairedBpfCost.PAIRS[:3]

    def results(self, **kw):
        kw.setdefault("bpf", self.BPF3)
        return paired_results(self.PAIRS3, **kw)

    def test_pcpu_and_pbpf_lines_parse_onto_their_runs(self):
        text = (manifest(runs=[]) + "meta\tbpf_pairs\t2\n"
                + "\n".join(pair_lines([(1, 1)] * 2, bpf=[bpf_pair(7, 70, 5, 6), (None, (9, 90), [])]))
                + "\n")
        _, _, _, pairs, _, _ = report.load_manifest(text)
        self.assertEqual([(r["pair"], r["mode"], r.get("busy"), r.get("ios"), r.get("bpf"))
                          for r in pairs["runs"]],
                         [(1, "off", 300, 100000, None),
                          (1, "on", 7, 70, [{"id": 11, "name": "dmu_complete_bt", "ns": 5, "cnt": 70},
                                            {"id": 12, "name": "dmu_complete_bt", "ns": 6, "cnt": 70}]),
                          (2, "on", 9, 90, None), (2, "off", None, None, None)])

    def test_ns_per_request_and_share_per_pair_and_median(self):
        res = self.results()
        pc = res["bpf_cost_paired"]
        self.assertEqual(pc["bpf_n"], 3)
        self.assertEqual([c["bpf_ns"] for c in pc["pairs"]], [40_000_000, 60_000_000, 120_000_000])
        for c, ns, share, runs in zip(pc["pairs"], (400, 600, 1200), (0.04 / 3, 0.02, 0.06),
                                      (2.0, 2.0, 1.0)):
            self.assertAlmostEqual(c["bpf_ns_per_req"], ns)
            self.assertAlmostEqual(c["bpf_share"], share)
            self.assertAlmostEqual(c["bpf_runs_per_req"], runs)
        self.assertAlmostEqual(pc["bpf_ns"]["median"], 600)
        self.assertAlmostEqual(pc["bpf_ns"]["min"], 400)
        self.assertAlmostEqual(pc["bpf_ns"]["max"], 1200)
        self.assertAlmostEqual(pc["bpf_share"]["median"], 0.02)
        self.assertAlmostEqual(pc["bpf_runs_per_req"]["median"], 2.0)
        # CPU per request of each run: 300 ticks / 100000 = 30 µs; on run of pair 3: 20 µs
        self.assertAlmostEqual(pc["pairs"][2]["on_cpu_us"], 20.0)
        self.assertAlmostEqual(pc["pairs"][2]["cpu_change"], 20 / 30 - 1)
        g = goal(res, "BPF time per request")
        self.assertEqual((g["verdict"], g["threshold"]), ("PASS", 1000.0))
        self.assertAlmostEqual(g["value"], 600)
        self.assertIn("from 400 ns to 1200 ns; 2.00 program runs per request", g["detail"])
        g = goal(res, "share of the CPU time")
        self.assertEqual((g["verdict"], g["threshold"]), ("PASS", 0.03))
        self.assertAlmostEqual(g["value"], 0.02)
        self.assertIn("from 1.33% to 6.00%", g["detail"])
        self.assertEqual(res["failures"], [])

    def test_goals_fail_above_the_thresholds(self):
        # 1100, 900, 1200 ns per request; shares 3.67%, 3%, 4%
        res = self.results(bpf=[bpf_pair(300, 100000, 110_000_000), bpf_pair(300, 100000, 90_000_000),
                                bpf_pair(300, 100000, 120_000_000)])
        g = goal(res, "BPF time per request")
        self.assertEqual(g["verdict"], "FAIL")
        self.assertAlmostEqual(g["value"], 1100)
        g = goal(res, "share of the CPU time")
        self.assertEqual(g["verdict"], "FAIL")
        self.assertAlmostEqual(g["value"], 0.11 / 3)
        md = report.render_md(res)
        self.assertIn("median of 3 paired runs <= 1 µs | 1100 ns | **FAIL** |", md)
        self.assertIn("median of 3 paired runs <= 3% | 3.67% | **FAIL** |", md)

    def test_goals_are_inclusive(self):
        # 90 ms over 90000 requests: 1000 ns each; 90 ms of 3 s: 3%
        res = self.results(bpf=[bpf_pair(300, 90000, 90_000_000)] * 3)
        self.assertEqual([goal(res, w)["verdict"] for w in ("BPF time per", "share of the CPU")],
                         ["PASS", "PASS"])

    def test_cpu_goals_use_the_median_not_one_pair(self):
        # one pair far over both thresholds, two under: PASS; two over: FAIL
        one = [bpf_pair(300, 100000, 500_000_000)] + self.BPF3[:2]
        self.assertEqual(goal(self.results(bpf=one), "BPF time per")["verdict"], "PASS")
        two = [bpf_pair(300, 100000, 500_000_000)] * 2 + self.BPF3[:1]
        self.assertEqual(goal(self.results(bpf=two), "BPF time per")["verdict"], "FAIL")

    def test_on_run_without_bpf_lines_fails_and_drops_its_pair(self):
        res = self.results(bpf=[self.BPF3[0], (PCPU, PCPU, []), self.BPF3[2]])
        self.assertEqual([(f["pair"], f["mode"]) for f in res["failures"]], [(2, "on")])
        self.assertIn("no BPF program statistics (no pbpf line)", res["failures"][0]["message"])
        pc = res["bpf_cost_paired"]
        self.assertEqual([d["pair"] for d in pc["dropped"]], [2])
        self.assertEqual(pc["bpf_n"], 2)
        self.assertAlmostEqual(pc["bpf_ns"]["median"], 800)      # of 400, 1200

    def test_no_cpu_time_leaves_the_share_not_measured(self):
        res = self.results(bpf=[(PCPU, None, b[2]) for b in self.BPF3])
        self.assertEqual(goal(res, "BPF time per")["verdict"], "N/A")   # no I/Os either
        res = self.results(clk_tck=None)
        self.assertEqual(goal(res, "BPF time per")["verdict"], "PASS")  # I/Os, no tick length
        g = goal(res, "share of the CPU time")
        self.assertEqual(g["verdict"], "N/A")
        self.assertIn("no complete pair has the numbers", g["detail"])
        self.assertIn("; no share of the CPU time (no CPU time).", report.render_md(res))

    def test_goals_not_measured_say_why(self):
        res = results_from(Summary.IOPS)
        res["meta"]["bpf_pairs_skipped"] = "no paired runs: BENCH_BPF_PAIRS=0"
        res["goals"] = report.goals(res["summary"], res["bpf_cost_paired"], res["meta"])
        g = goal(res, "BPF time per request")
        self.assertEqual((g["verdict"], g["value"]), ("N/A", None))
        self.assertEqual(g["detail"], "not measured: no paired runs: BENCH_BPF_PAIRS=0")
        self.assertIn("| randread-4k-qd32: collectors' BPF time as a share of the CPU time per"
                      " request <= 3% | – | **N/A** |", report.render_md(res))

    def test_garbage_bpf_lines_are_rejected(self):
        for bad in ["pbpf\t1\t11\tdmu\t5", "pbpf\t0\t11\tdmu\t5\t1", "pbpf\t1\t0\tdmu\t5\t1",
                    "pbpf\t1\t11\t\t5\t1", "pbpf\t1\t11\tdmu\t-5\t1", "pbpf\t1\t11\tdmu\t5\tx",
                    "pbpf\t1\t11\tdmu\t5\t1\npbpf\t1\t11\tdmu\t5\t1", "pcpu\t1\toff\t5",
                    "pcpu\t1\tbase\t5\t1", "pcpu\t1\toff\t5\t1\npcpu\t1\toff\t5\t1"]:
            with self.subTest(bad=bad), self.assertRaises(report.BadInput):
                report.load_manifest(manifest(runs=[]) + bad + "\n")


class PairedInflightCost(unittest.TestCase):
    # Costs 2%, 5%, 0.5%, 10%: median 3.5%, min 0.5%, max 10%.
    IPAIRS = [(200, 196), (200, 190), (200, 199), (200, 180)]
    POLLS = [(48, 30), (47, 0), (50, 12), (45, 8)]

    def results(self, **kw):
        kw.setdefault("ipairs", self.IPAIRS)
        kw.setdefault("polls", self.POLLS)
        return paired_results(PairedBpfCost.PAIRS, **kw)

    def test_ipair_lines_parse_beside_the_bpf_pairs(self):
        text = (manifest(runs=[]) + "meta\tbpf_pairs\t1\nmeta\tinflight_pairs\t2\n"
                + "\n".join(pair_lines([(1, 1)]) + pair_lines([(1, 1)] * 2, kind="ipair",
                                                              polls=[(7, 3), (9, 0)])) + "\n")
        meta, _, runs, pairs, ipairs, _ = report.load_manifest(text)
        self.assertEqual(runs, [])
        self.assertEqual((report.requested_pairs(meta), report.requested_pairs(meta, report.INFLIGHT)),
                         (1, 2))
        self.assertEqual([(r["pair"], r["mode"]) for r in pairs["runs"]], [(1, "off"), (1, "on")])
        self.assertEqual([(r["pair"], r["mode"], r["status"], r.get("polls"), r.get("lines"))
                          for r in ipairs["runs"]],
                         [(1, "off", "ok", None, None), (1, "on", "ok", 7, 3),
                          (2, "on", "ok", 9, 0), (2, "off", "ok", None, None)])
        self.assertEqual(ipairs["runs"][2]["file"], "fio/ipair-2-on.json")
        self.assertEqual(ipairs["device"], {"status": "ok", "message": ""})
        self.assertEqual(pairs["device"], {"status": "ok", "message": ""})

    def test_median_min_max_and_polls_over_pairs(self):
        res = self.results()
        pc = res["inflight_cost_paired"]
        self.assertEqual((pc["job"], pc["requested"], pc["n"], pc["dropped"]),
                         ("randread-4k-qd32", 4, 4, []))
        self.assertAlmostEqual(pc["median"], 0.035)
        self.assertAlmostEqual(pc["min"], 0.005)
        self.assertAlmostEqual(pc["max"], 0.10)
        self.assertEqual((pc["polls"], pc["lines"]), (190, 50))
        self.assertEqual({k: pc["pairs"][1][k] for k in ("pair", "order", "off", "on", "polls", "lines")},
                         {"pair": 2, "order": ["on", "off"], "off": 200, "on": 190, "polls": 47,
                          "lines": 0})
        self.assertAlmostEqual(pc["pairs"][1]["cost"], 0.05)
        self.assertEqual(res["failures"], [])
        # the BPF pairs and their goal are their own
        self.assertAlmostEqual(res["bpf_cost_paired"]["median"], 0.03)
        self.assertIsNone(res["bpf_cost_paired"]["polls"])
        self.assertAlmostEqual(view(res)["value"], 0.03)

    def test_failed_run_drops_its_pair_and_is_a_failure(self):
        res = self.results(ifailed={(3, "on")})
        pc = res["inflight_cost_paired"]
        self.assertEqual([c["pair"] for c in pc["pairs"]], [1, 2, 4])
        self.assertEqual(pc["dropped"], [{"pair": 3, "order": ["off", "on"], "why": "on failed"}])
        self.assertAlmostEqual(pc["median"], 0.05)       # of 2%, 5%, 10%
        self.assertEqual((pc["polls"], pc["lines"]), (140, 38))
        self.assertEqual([(f["series"], f["pair"], f["mode"]) for f in res["failures"]],
                         [("ipair", 3, "on")])
        self.assertEqual(report.failure_label(res["failures"][0]), "in-flight pair 3 on")
        md = report.render_md(res)
        self.assertIn("| 3 | off, on | – | – | dropped: on failed | – | – |", md)
        self.assertIn("- in-flight pair 3 on: exit 1: dmuser-top exited 3", md)

    def test_incomplete_pairs_missing_runs_are_failures(self):
        res = self.results(ipairs=self.IPAIRS[:1], irequested=3, idevice=None)
        self.assertEqual([(f["pair"], f["mode"]) for f in res["failures"]],
                         [(2, "off"), (2, "on"), (3, "off"), (3, "on")])
        self.assertEqual(report.failure_label(res["failures"][1]), "in-flight pair 2 on")
        self.assertIn("no run recorded", res["failures"][0]["message"])
        pc = res["inflight_cost_paired"]
        self.assertEqual((pc["n"], pc["requested"]), (1, 3))
        self.assertIn("Median cost **2.0%** over 1 complete pair of 3 (min 2.0%, max 2.0%).",
                      report.render_md(res))

    def test_on_run_without_polls_fails_and_drops_its_pair(self):
        res = self.results(polls=[(48, 30), None, (0, 0), (45, 8)])
        self.assertEqual([(f["pair"], f["mode"]) for f in res["failures"]], [(2, "on"), (3, "on")])
        self.assertIn("the poller did not run (no ipoll line, or 0 polls)", res["failures"][0]["message"])
        pc = res["inflight_cost_paired"]
        self.assertEqual([d["pair"] for d in pc["dropped"]], [2, 3])
        self.assertEqual((pc["n"], pc["polls"], pc["lines"]), (2, 93, 38))

    def test_failed_shared_device_is_one_failure(self):
        res = self.results(ipairs=[], irequested=4, idevice="failed")
        self.assertEqual(len(res["failures"]), 1)
        self.assertEqual(report.failure_label(res["failures"][0]), "in-flight pairs")
        md = report.render_md(res)
        self.assertIn("No complete pair of 4.\n", md)
        self.assertIn("- in-flight pairs: the shared dmuser-N device: exit 1: dmuserd exited 1", md)

    def test_markdown_section(self):
        res = self.results()
        res["meta"].update({"ramp_s": "1", "inflight_pairs_runtime_s": "4",
                            "inflight_pairs_cpus": "fio on vCPU 0, dmuserd on vCPU 1, the poller unpinned",
                            "inflight_pairs_poll": "bpf/dmuser-inflight -d dmu-bench, then sleep 0.1"})
        md = report.render_md(res)
        self.assertIn("## In-flight table cost, paired\n", md)
        self.assertIn("with (on) a poller beside fio that runs bpf/dmuser-inflight on the device and"
                      " sleeps 0.1 s, over and over (at most 10 polls a second, as `watch -n 0.1`),"
                      " in ABBA order", md)
        self.assertIn("Each run 4 s after the ramp. CPUs: fio on vCPU 0, dmuserd on vCPU 1, the poller"
                      " unpinned. Poller: bpf/dmuser-inflight -d dmu-bench, then sleep 0.1.", md)
        self.assertIn("| pair | order | off IOPS | on IOPS | cost | polls | lines |", md)
        self.assertIn("| 1 | off, on | 200 | 196 | 2.0% | 48 | 30 |", md)
        self.assertIn("| 2 | on, off | 200 | 190 | 5.0% | 47 | 0 |", md)
        self.assertIn("Median cost **3.5%** over 4 complete pairs of 4 (min 0.5%, max 10.0%). In their"
                      " on runs: **190 polls, 50 lines seen** (dmuser-inflight's request lines),"
                      " about 9.5 polls a second of fio (20 s).", md)
        # after the BPF section, which keeps its own table
        self.assertLess(md.index("## BPF cost, paired"), md.index("## In-flight table cost, paired"))
        self.assertIn("| pair | order | off IOPS | on IOPS | cost | off CPU µs/req | on CPU µs/req |"
                      " CPU/req change | BPF ns/req | BPF runs/req | BPF share of CPU |\n", md)

    def test_markdown_says_why_pairs_did_not_run(self):
        res = results_from(Summary.IOPS)
        self.assertNotIn("In-flight table cost", report.render_md(res))
        res["meta"]["inflight_pairs_skipped"] = "no paired runs: BENCH_PATHS lacks dmuser-N"
        self.assertIn("## In-flight table cost, paired\n\nNot run: no paired runs: BENCH_PATHS lacks"
                      " dmuser-N.", report.render_md(res))

    def test_garbage_ipair_lines_are_rejected(self):
        on = "ipair\t1\ton\tok\tfio/ipair-1-on.json\t"
        for bad in ["ipair\t0\toff\tok\tf\t", "ipair\t1\tmaybe\tok\tf\t", "ipair\t1\toff\tok\tf",
                    on + "\n" + on, "ipairs\tmaybe\t", "ipairs\tok\t\nipairs\tok\t",
                    "ipoll\t1\t5", "ipoll\t0\t5\t1", "ipoll\t1\t-5\t1", "ipoll\t1\t5\tx",
                    "ipoll\t1\t5\t1\nipoll\t1\t5\t1", "poll\t1\t5\t1"]:
            with self.subTest(bad=bad), self.assertRaises(report.BadInput):
                report.load_manifest(manifest(runs=[]) + bad + "\n")
        with self.assertRaises(report.BadInput):
            report.requested_pairs({"inflight_pairs": "four"}, report.INFLIGHT)


class PairedModuleCost(unittest.TestCase):
    # IOPS costs 2%, 1%, 0%, 5%: median 1.5%, min 0%, max 5%.
    MPAIRS = [(1000, 980), (1000, 990), (1000, 1000), (1000, 950)]
    # CPU per request (100 ticks a second): base 3000, 3000, 2000, 4000 µs, head
    # +3%, +2%, 0%, +10%: median +2.5%.
    CPU = [((300, 1000), (309, 1000)), ((300, 1000), (306, 1000)), ((200, 1000), (200, 1000)),
           ((400, 1000), (440, 1000))]
    META = {"module_pairs_runtime_s": "4", "module_pairs_cpus": "fio on vCPU 0, dmuserd on vCPU 1",
            "module_base_ref": "main", "module_base_commit": "1111111",
            "module_head_commit": "2222222 (module/ has uncommitted changes)"}

    def results(self, **kw):
        kw.setdefault("mpairs", self.MPAIRS)
        kw.setdefault("cpu", self.CPU)
        return paired_results(PairedBpfCost.PAIRS, **kw)

    def test_mpair_and_mcpu_lines_parse_beside_the_other_series(self):
        text = (manifest(runs=[]) + "meta\tbpf_pairs\t1\nmeta\tmodule_pairs\t2\n"
                + "\n".join(pair_lines([(1, 1)]) + pair_lines(
                    [(1, 1)] * 2, kind="mpair", cpu=[((7, 70), (8, 80)), (None, (9, 0))])) + "\n")
        meta, _, runs, pairs, ipairs, mpairs = report.load_manifest(text)
        self.assertEqual(report.requested_pairs(meta, report.MODULE), 2)
        self.assertEqual([(r["pair"], r["mode"]) for r in pairs["runs"]], [(1, "off"), (1, "on")])
        self.assertEqual(ipairs, {"runs": [], "device": None})
        self.assertEqual([(r["pair"], r["mode"], r["status"], r.get("busy"), r.get("ios"))
                          for r in mpairs["runs"]],
                         [(1, "base", "ok", 7, 70), (1, "head", "ok", 8, 80),
                          (2, "head", "ok", 9, 0), (2, "base", "ok", None, None)])
        self.assertEqual(mpairs["runs"][2]["file"], "fio/mpair-2-head.json")
        self.assertEqual(mpairs["device"], {"status": "ok", "message": ""})

    def test_costs_iops_and_cpu_per_request(self):
        res = self.results()
        pc = res["module_cost_paired"]
        self.assertEqual((pc["job"], pc["requested"], pc["n"], pc["dropped"], pc["modes"]),
                         ("randread-4k-qd32", 4, 4, [], ["base", "head"]))
        self.assertAlmostEqual(pc["median"], 0.015)
        self.assertAlmostEqual(pc["min"], 0.0)
        self.assertAlmostEqual(pc["max"], 0.05)
        p2 = pc["pairs"][1]
        self.assertEqual({k: p2[k] for k in ("pair", "order", "base", "head")},
                         {"pair": 2, "order": ["head", "base"], "base": 1000, "head": 990})
        self.assertAlmostEqual(p2["cost"], 0.01)
        self.assertAlmostEqual(p2["base_cpu_us"], 3000.0)
        self.assertAlmostEqual(p2["head_cpu_us"], 3060.0)
        self.assertAlmostEqual(p2["cpu_change"], 0.02)
        self.assertEqual(pc["cpu_n"], 4)
        self.assertAlmostEqual(pc["cpu_median"], 0.025)
        self.assertAlmostEqual(pc["cpu_min"], 0.0)
        self.assertAlmostEqual(pc["cpu_max"], 0.10)
        self.assertEqual(res["failures"], [])
        # the other series keep their own numbers and keys
        self.assertAlmostEqual(res["bpf_cost_paired"]["median"], 0.03)
        self.assertNotIn("base_cpu_us", res["bpf_cost_paired"]["pairs"][0])
        self.assertNotIn("bpf_ns", res["module_cost_paired"])
        self.assertEqual(res["inflight_cost_paired"]["requested"], 0)

    def test_cpu_per_request_needs_ticks_ios_and_tick_length(self):
        res = self.results(cpu=[((300, 1000), None), ((300, 0), (306, 1000))] + self.CPU[2:])
        pc = res["module_cost_paired"]
        self.assertEqual(pc["n"], 4)                  # the IOPS cost does not need them
        self.assertIsNone(pc["pairs"][0]["head_cpu_us"])
        self.assertIsNone(pc["pairs"][1]["base_cpu_us"])
        self.assertEqual([c["cpu_change"] is None for c in pc["pairs"]], [True, True, False, False])
        self.assertEqual(pc["cpu_n"], 2)
        self.assertAlmostEqual(pc["cpu_median"], 0.05)  # of 0%, +10%
        self.assertEqual(res["failures"], [])
        pc = self.results(clk_tck=None)["module_cost_paired"]
        self.assertEqual((pc["cpu_n"], pc["cpu_median"]), (0, None))
        self.assertIn("no CPU per request", report.render_md(self.results(clk_tck=None)))

    def test_failed_run_drops_its_pair_and_is_a_failure(self):
        res = self.results(mfailed={(2, "head")})
        pc = res["module_cost_paired"]
        self.assertEqual([c["pair"] for c in pc["pairs"]], [1, 3, 4])
        self.assertEqual(pc["dropped"], [{"pair": 2, "order": ["head", "base"], "why": "head failed"}])
        self.assertAlmostEqual(pc["median"], 0.02)       # of 2%, 0%, 5%
        self.assertAlmostEqual(pc["cpu_median"], 0.03)   # of +3%, 0%, +10%
        self.assertEqual([(f["series"], f["pair"], f["mode"]) for f in res["failures"]],
                         [("mpair", 2, "head")])
        self.assertEqual(report.failure_label(res["failures"][0]), "module pair 2 head")
        md = report.render_md(res)
        self.assertIn("| 2 | head, base | – | – | dropped: head failed | – | – | – |", md)
        self.assertIn("- module pair 2 head: exit 1: dmuser-top exited 3", md)

    def test_missing_runs_and_failed_reload_are_failures(self):
        res = self.results(mpairs=self.MPAIRS[:1], mrequested=2, mdevice=None)
        self.assertEqual([(f["pair"], f["mode"]) for f in res["failures"]], [(2, "base"), (2, "head")])
        self.assertEqual(report.failure_label(res["failures"][1]), "module pair 2 head")
        res = self.results(mpairs=[], mrequested=4, mdevice="failed")
        self.assertEqual(len(res["failures"]), 1)
        self.assertEqual(report.failure_label(res["failures"][0]), "module pairs")
        md = report.render_md(res)
        self.assertIn("No complete pair of 4.\n", md)
        self.assertIn("- module pairs: reloading the module under test after the pairs: exit 1:", md)

    def test_markdown_section_names_both_modules(self):
        res = self.results()
        res["meta"].update(self.META)
        md = report.render_md(res)
        self.assertIn("## Module A/B, paired\n", md)
        self.assertIn("randread-4k-qd32 on a dmuser-N device set up afresh for each run, after"
                      " dm_user is unloaded and the run's module loaded: base (A) `main` (1111111),"
                      " head (B) the module under test, HEAD (2222222 (module/ has uncommitted"
                      " changes)); in ABBA order", md)
        self.assertIn("Each run 4 s after the ramp. CPUs: fio on vCPU 0, dmuserd on vCPU 1.", md)
        self.assertIn("| pair | order | base IOPS | head IOPS | cost | base CPU µs/req |"
                      " head CPU µs/req | CPU/req change |\n|---:|---|---:|---:|---:|---:|---:|---:|", md)
        self.assertIn("| 1 | base, head | 1000 | 980 | 2.0% | 3000.0 | 3090.0 | +3.0% |", md)
        self.assertIn("| 2 | head, base | 1000 | 990 | 1.0% | 3000.0 | 3060.0 | +2.0% |", md)
        self.assertIn("Median cost **1.5%** over 4 complete pairs of 4 (min 0.0%, max 5.0%); CPU per"
                      " request: median change **+2.5%** over 4 pairs (min +0.0%, max +10.0%),"
                      " head / base − 1.", md)
        self.assertLess(md.index("## BPF cost, paired"), md.index("## Module A/B, paired"))
        self.assertNotIn("In-flight table cost", md)

    def test_markdown_says_why_module_pairs_did_not_run(self):
        res = results_from(Summary.IOPS)
        self.assertNotIn("Module A/B", report.render_md(res))
        res["meta"]["module_pairs_skipped"] = "no paired runs: BENCH_BASE_REF not set"
        self.assertIn("## Module A/B, paired\n\nNot run: no paired runs: BENCH_BASE_REF not set.",
                      report.render_md(res))

    def test_garbage_module_lines_are_rejected(self):
        head = "mpair\t1\thead\tok\tfio/mpair-1-head.json\t"
        for bad in ["mpair\t1\ton\tok\tf\t", "mpair\t0\tbase\tok\tf\t", head + "\n" + head,
                    "mpairs\tmaybe\t", "mpairs\tok\t\nmpairs\tok\t", "pair\t1\tbase\tok\tf\t",
                    "mcpu\t1\tbase\t5", "mcpu\t1\ton\t5\t1", "mcpu\t1\tbase\t-5\t1",
                    "mcpu\t1\tbase\t5\t1\nmcpu\t1\tbase\t5\t1"]:
            with self.subTest(bad=bad), self.assertRaises(report.BadInput):
                report.load_manifest(manifest(runs=[]) + bad + "\n")

    def test_main_writes_module_cost_paired(self):
        with tempfile.TemporaryDirectory() as d:
            guest, out = os.path.join(d, "guest"), os.path.join(d, "out")
            os.makedirs(os.path.join(guest, "fio"))
            mp = self.MPAIRS[:3]
            with open(os.path.join(guest, "manifest.tsv"), "w") as f:
                f.write(manifest(["loop"], JOBS, 1, [(1, "loop", "ok", "")])
                        + "".join(f"meta\t{k}\t{v}\n" for k, v in self.META.items())
                        + "meta\tmodule_pairs\t3\nmeta\tmodule_pairs_clk_tck\t100\n"
                        + "\n".join(pair_lines(mp, kind="mpair", cpu=self.CPU)) + "\n")
            with open(os.path.join(guest, "fio", "1-loop.json"), "w") as f:
                json.dump(fio_out({j: 100 for j in JOBS}), f)
            for p, (base, head) in enumerate(mp, 1):
                for mode, v in (("base", base), ("head", head)):
                    with open(os.path.join(guest, "fio", f"mpair-{p}-{mode}.json"), "w") as f:
                        json.dump(fio_out({"randread-4k-qd32": v}), f)
            self.assertEqual(report.main(["--guest", guest, "--out", out]), 0)
            with open(os.path.join(out, "results.json")) as f:
                res = json.load(f)
            pc = res["module_cost_paired"]
            self.assertEqual((pc["n"], pc["cpu_n"]), (3, 3))
            self.assertAlmostEqual(pc["median"], 0.01)
            self.assertAlmostEqual(pc["cpu_median"], 0.02)
            self.assertEqual(res["module_pairs_device"]["status"], "ok")
            self.assertEqual(len(res["module_pair_runs"]), 6)
            with open(os.path.join(out, "results.md")) as f:
                self.assertIn("base (A) `main` (1111111)", f.read())


class Rendering(unittest.TestCase):
    def test_markdown_has_label_tables_and_goals(self):
        res = results_from(Summary.IOPS)
        md = report.render_md(res)
        self.assertIn("emulated-guest numbers", md)
        self.assertIn("## randread-4k-qd32", md)
        self.assertIn("| dmuser-N | 44 | 41–45 |", md)
        self.assertIn("| **PASS** |", md)
        self.assertIn("0.88", md)

    def test_gnuplot_data_marks_missing_as_nan(self):
        res = results_from({"loop": [10] * 3, "file": [20] * 3}, paths=["file", "loop", "nbd"])
        rows = report.gnuplot_data(res).splitlines()
        self.assertEqual(rows[0], "job file loop nbd")
        self.assertEqual(rows[1], "randread-4k-qd1 2.0000 1.0000 NaN")

    def test_gnuplot_without_loop_plots_median_iops(self):
        res = results_from({"file": [20, 30, 40], "nbd": [5] * 3}, paths=["file", "nbd"])
        rows = report.gnuplot_data(res).splitlines()
        self.assertEqual(rows[1], "randread-4k-qd1 30.0000 5.0000")
        script = report.gnuplot_script(res, "d.dat", "p.png")
        self.assertIn("median IOPS (loop did not run)", script)
        self.assertNotIn("set arrow", script)
        with tempfile.TemporaryDirectory() as d:
            report.write_png(res, d)  # raised "x range is invalid" before
            self.assertGreater(os.path.getsize(os.path.join(d, "results.png")), 0)

    def test_main_writes_json_md_png_and_exits_1_on_failure(self):
        with tempfile.TemporaryDirectory() as d:
            guest, out = os.path.join(d, "guest"), os.path.join(d, "out")
            os.makedirs(os.path.join(guest, "fio"))
            runs = [(1, "loop", "ok", ""), (1, "file", "failed", "exit 1: no file")]
            with open(os.path.join(guest, "manifest.tsv"), "w") as f:
                f.write(manifest(["loop", "file"], JOBS, 1, runs))
            with open(os.path.join(guest, "fio", "1-loop.json"), "w") as f:
                json.dump(fio_out({j: 100 for j in JOBS}), f)
            with contextlib.redirect_stderr(io.StringIO()) as err:
                rc = report.main(["--guest", guest, "--out", out, "--meta", "accel=tcg"])
            self.assertIn("rep 1 file failed: exit 1: no file", err.getvalue())
            self.assertEqual(rc, 1)
            with open(os.path.join(out, "results.json")) as f:
                res = json.load(f)
            self.assertTrue(res["emulated"])
            self.assertEqual(res["meta"]["accel"], "tcg")
            self.assertEqual(res["summary"]["randread-4k-qd1"]["loop"]["iops"]["median"], 100)
            with open(os.path.join(out, "results.png"), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_main_reports_the_pairs(self):
        with tempfile.TemporaryDirectory() as d:
            guest, out = os.path.join(d, "guest"), os.path.join(d, "out")
            os.makedirs(os.path.join(guest, "fio"))
            pairs = [(100, 98), (100, 96), (100, 99)]
            with open(os.path.join(guest, "manifest.tsv"), "w") as f:
                f.write(manifest(["loop"], JOBS, 1, [(1, "loop", "ok", "")]) + "meta\tbpf_pairs\t3\n"
                        + "\n".join(pair_lines(pairs)) + "\n")
            with open(os.path.join(guest, "fio", "1-loop.json"), "w") as f:
                json.dump(fio_out({j: 100 for j in JOBS}), f)
            for p, (off, on) in enumerate(pairs, 1):
                for mode, v in (("off", off), ("on", on)):
                    with open(os.path.join(guest, "fio", f"pair-{p}-{mode}.json"), "w") as f:
                        json.dump(fio_out({"randread-4k-qd32": v}), f)
            self.assertEqual(report.main(["--guest", guest, "--out", out]), 0)
            with open(os.path.join(out, "results.json")) as f:
                res = json.load(f)
            self.assertEqual(res["bpf_cost_paired"]["n"], 3)
            self.assertAlmostEqual(res["bpf_cost_paired"]["median"], 0.02)
            self.assertEqual(res["pairs_device"]["status"], "ok")
            self.assertIn("median of 3 paired runs", view(res)["view"])
            self.assertAlmostEqual(res["bpf_cost_paired"]["bpf_ns"]["median"], 500)
            self.assertEqual(res["bpf_cost_paired"]["pairs"][0]["on_cpu_us"], None)  # no clk_tck
            g = goal(res, "BPF time per request")
            self.assertEqual((g["verdict"], g["value"]), ("PASS", 500))
            # fio's own count of the requests (after the ramp), beside the device's
            self.assertEqual([r["fio_ios"] for r in res["pair_runs"]][:2], [300, 294])

    def test_main_reports_the_inflight_pairs_and_fails_on_a_failed_one(self):
        with tempfile.TemporaryDirectory() as d:
            guest, out = os.path.join(d, "guest"), os.path.join(d, "out")
            os.makedirs(os.path.join(guest, "fio"))
            ipairs = [(100, 97), (100, 99), (100, 95)]
            base = (manifest(["loop"], JOBS, 1, [(1, "loop", "ok", "")]) + "meta\tbpf_pairs\t0\n"
                    + "meta\tinflight_pairs\t3\n")
            with open(os.path.join(guest, "fio", "1-loop.json"), "w") as f:
                json.dump(fio_out({j: 100 for j in JOBS}), f)
            for p, (off, on) in enumerate(ipairs, 1):
                for mode, v in (("off", off), ("on", on)):
                    with open(os.path.join(guest, "fio", f"ipair-{p}-{mode}.json"), "w") as f:
                        json.dump(fio_out({"randread-4k-qd32": v}), f)
            with open(os.path.join(guest, "manifest.tsv"), "w") as f:
                f.write(base + "\n".join(pair_lines(ipairs, kind="ipair")) + "\n")
            self.assertEqual(report.main(["--guest", guest, "--out", out]), 0)
            with open(os.path.join(out, "results.json")) as f:
                res = json.load(f)
            pc = res["inflight_cost_paired"]
            self.assertEqual((pc["n"], pc["polls"], pc["lines"]), (3, 150, 30))
            self.assertAlmostEqual(pc["median"], 0.03)
            self.assertEqual(res["inflight_pairs_device"]["status"], "ok")
            self.assertEqual(len(res["inflight_pair_runs"]), 6)
            with open(os.path.join(out, "results.md")) as f:
                self.assertIn("Median cost **3.0%** over 3 complete pairs of 3", f.read())
            with open(os.path.join(guest, "manifest.tsv"), "w") as f:
                f.write(base + "\n".join(pair_lines(ipairs, failed={(2, "off")}, kind="ipair")) + "\n")
            with contextlib.redirect_stderr(io.StringIO()) as err:
                self.assertEqual(report.main(["--guest", guest, "--out", out]), 1)
            self.assertIn("in-flight pair 2 off failed: exit 1:", err.getvalue())

    def test_main_rejects_a_bad_manifest(self):
        with tempfile.TemporaryDirectory() as d:
            for bad, where in (("bogus line\n", "manifest line 1"),
                               (manifest(runs=[]) + "pair\t1\toff\tok\n", "manifest line 6"),
                               (manifest(runs=[]) + "meta\tbpf_pairs\tsix\n", "bpf_pairs")):
                with open(os.path.join(d, "manifest.tsv"), "w") as f:
                    f.write(bad)
                with contextlib.redirect_stderr(io.StringIO()) as err:
                    self.assertEqual(report.main(["--guest", d, "--out", d]), 2)
                self.assertIn(where, err.getvalue())


STAGES_FIXTURE = os.path.join(HERE, "dmuser-lat-stages.json")
PIPELINE = ["queue", "handoff", "pickup", "backend", "reply", "total"]


def stages_doc():
    """The fixture: the JSON of `dmuser-lat -p PID -S all --json` from the stages
    run dmuser-nbd randread-4k-qd32 of a make bench (BENCH_SET=nbd, 6.12 guest,
    2026-12-06), each stage's buckets trimmed to its first three non-empty ones."""
    with open(STAGES_FIXTURE) as f:
        return json.loads(f.read())


def stage_line(path, job, status="ok", msg=""):
    return f"stage\t{path}\t{job}\t{status}\tstages/{path}-{job}.json\t{msg}"


class Stages(unittest.TestCase):
    """The stages pass: dmuser-lat -S all per PATH:JOB ("Where the time goes")."""

    def test_parses_the_real_output_in_pipeline_order(self):
        doc = stages_doc()
        got = report.parse_stages_json(json.dumps(doc) + "\n")
        self.assertEqual([s["stage"] for s in got["stages"]], PIPELINE)
        raw = {e["stage"]: e for e in doc["latency"]}
        for s in got["stages"]:
            e = raw[s["stage"]]
            self.assertEqual(s["count"], e["count"])
            self.assertEqual(s["p50_us"], e["p50"])
            self.assertEqual(s["p99_us"], e["p99"])
            self.assertAlmostEqual(s["mean_us"], e["sum_ns"] / e["count"] / 1000)
        self.assertEqual(got["requests"], doc["requests"])
        self.assertEqual(got["unit"], "usecs")

    def test_order_is_the_pipelines_whatever_the_input(self):
        doc = stages_doc()
        doc["latency"].reverse()
        got = report.parse_stages_json(json.dumps(doc))
        self.assertEqual([s["stage"] for s in got["stages"]], PIPELINE)
        # the kernel's stages (no -p): queue, daemon, total; no sum_ns, so no mean
        kdoc = {"unit": "usecs", "latency": [
            {"stage": n, "count": 4, "p50": 1.0, "p99": 2.0, "buckets": []}
            for n in ("total", "daemon", "queue")]}
        got = report.parse_stages_json(json.dumps(kdoc))
        self.assertEqual([s["stage"] for s in got["stages"]], ["queue", "daemon", "total"])
        self.assertIsNone(got["stages"][0]["mean_us"])
        # a stage the report does not know goes last
        kdoc["latency"].insert(0, {"stage": "zzz", "count": 1, "p50": 1.0, "p99": 1.0})
        got = report.parse_stages_json(json.dumps(kdoc))
        self.assertEqual([s["stage"] for s in got["stages"]], ["queue", "daemon", "total", "zzz"])

    def test_units_empty_stages_and_the_last_object(self):
        doc = stages_doc()
        doc["unit"] = "msecs"
        for e in doc["latency"]:
            if e["stage"] == "backend":
                e["p50"], e["p99"] = 0.5, None
            if e["stage"] == "reply":
                e["count"] = 0
        older = dict(doc, latency=[])
        got = report.parse_stages_json(json.dumps(older) + "\n" + json.dumps(doc) + "\n\n")
        backend = next(s for s in got["stages"] if s["stage"] == "backend")
        self.assertEqual(backend["p50_us"], 500.0)
        self.assertIsNone(backend["p99_us"])
        reply = next(s for s in got["stages"] if s["stage"] == "reply")
        self.assertIsNone(reply["mean_us"])   # no request: no mean, no division by 0

    def test_bad_output_is_refused(self):
        doc = stages_doc()
        per_op = json.loads(json.dumps(doc))
        per_op["latency"][0]["op"] = "read"
        twice = json.loads(json.dumps(doc))
        twice["latency"].append(twice["latency"][0])
        for text, why in (("", "printed nothing"), ("Tracing...\n", "not JSON"),
                          ('{"unit":"usecs"}', "no latency"),
                          (json.dumps(dict(doc, unit="nsecs")), "unit"),
                          (json.dumps(per_op), "per op"), (json.dumps(twice), "twice")):
            with self.assertRaises(report.BadInput) as cm:
                report.parse_stages_json(text)
            self.assertIn(why, str(cm.exception))

    def test_manifest_lines(self):
        text = (manifest(runs=[]) + stage_line("dmuser-1", "randread-4k-qd1") + "\n"
                + stage_line("dmuser-1", "randwrite-4k-qd1", "failed", "exit 1: boom") + "\n")
        meta, _, runs, *_ = report.load_manifest(text)   # accepted, not runs
        self.assertEqual(runs, [])
        st = report.load_stages(text)
        self.assertEqual([(s["path"], s["job"], s["status"]) for s in st],
                         [("dmuser-1", "randread-4k-qd1", "ok"), ("dmuser-1", "randwrite-4k-qd1", "failed")])
        self.assertEqual(st[0]["file"], "stages/dmuser-1-randread-4k-qd1.json")
        with self.assertRaises(report.BadInput):
            report.load_stages(text + stage_line("dmuser-1", "randread-4k-qd1") + "\n")
        with self.assertRaises(report.BadInput):
            report.load_manifest(manifest(runs=[]) + "stage\tdmuser-1\trandread-4k-qd1\tok\n")

    def test_collect_marks_failed_and_missing(self):
        entries = [{"path": "dmuser-1", "job": "randread-4k-qd1", "status": "ok",
                    "file": "stages/a.json", "message": ""},
                   {"path": "dmuser-1", "job": "randwrite-4k-qd1", "status": "failed",
                    "file": "stages/b.json", "message": "exit 1: dmuser-lat did not attach"},
                   {"path": "dmuser-N", "job": "randread-4k-qd1", "status": "ok",
                    "file": "stages/c.json", "message": ""}]
        texts = {"stages/a.json": json.dumps(stages_doc())}

        def load(run):
            if run["file"] not in texts:
                raise FileNotFoundError(2, "No such file", run["file"])
            return texts[run["file"]]
        got = report.collect_stages(entries, load)
        self.assertNotIn("error", got[0])
        self.assertEqual([s["stage"] for s in got[0]["stages"]], PIPELINE)
        self.assertEqual(got[1]["error"], "exit 1: dmuser-lat did not attach")
        self.assertIn("stages/c.json", got[2]["error"])
        self.assertIn("No such file", got[2]["error"])

    def results(self, stages, iops=None, paths=PATHS, jobs=JOBS, meta_extra=""):
        runs = [(1, p, "ok", "") for p in paths]
        text = manifest(paths, jobs, 1, runs) + meta_extra
        meta, notes, mruns, *_ = report.load_manifest(text)
        mruns, failures = report.collect(mruns, paths, jobs, 1,
                                         lambda r: fio_out({j: (iops or {}).get(r["path"], 10) for j in jobs}))
        docs = {f"stages/{p}-{j}.json": json.dumps(stages_doc()) for p, j, *_ in stages}
        entries = report.load_stages(text + "".join(stage_line(*st) + "\n" for st in stages))
        st = report.collect_stages(entries, lambda r: docs[r["file"]])
        return report.build_results(meta, notes, mruns, failures, paths, jobs, stages=st)

    def test_rendered_tables(self):
        res = self.results([("dmuser-1", "randread-4k-qd1"),
                            ("dmuser-1", "randwrite-4k-qd1", "failed", "exit 1: boom")],
                           jobs=["randread-4k-qd1", "randwrite-4k-qd1"])
        md = report.render_md(res)
        sec = md[md.index("## Where the time goes (dmuser-lat -S all)"):]
        self.assertIn("### dmuser-1 randread-4k-qd1\n\n| stage | requests | p50 µs | p99 µs | mean µs |", sec)
        rows = [ln for ln in sec.split("### dmuser-1 randwrite")[0].splitlines()
                if ln.startswith("| ") and not ln.startswith("| stage")]
        self.assertEqual([r.split(" | ")[0][2:] for r in rows], PIPELINE)
        e = next(e for e in stages_doc()["latency"] if e["stage"] == "backend")
        self.assertIn(f"| backend | {e['count']} | {e['p50']:.1f} | {e['p99']:.1f} |"
                      f" {e['sum_ns'] / e['count'] / 1000:.1f} |", sec)
        self.assertIn(f"Requests: {stages_doc()['requests']['completed']} completed, observed", sec)
        self.assertIn("### dmuser-1 randwrite-4k-qd1\n\nFAILED (not in the exit status): exit 1: boom", sec)
        self.assertNotIn("## Failed runs", md)
        res = self.results([("dmuser-1", "randread-4k-qd1")],
                           meta_extra="meta\tstages_skipped\tdmuser-N:randread-4k-qd32 (BENCH_JOBS lacks it)\n")
        self.assertIn("Skipped: dmuser-N:randread-4k-qd32 (BENCH_JOBS lacks it).", report.render_md(res))
        # the iodepth-1 table points to the qd1 run that has stages
        self.assertIn("Per stage at iodepth 1: see Where the time goes (dmuser-1 randread-4k-qd1).", md)
        self.assertLess(md.index("iodepth 1 latency per path"), md.index("Per stage at iodepth 1"))
        self.assertEqual([s["stage"] for s in res["stages"][0]["stages"]], PIPELINE)
        json.dumps(res)   # results.json holds it

    def test_no_section_without_runs_but_the_reason_when_skipped(self):
        md = report.render_md(self.results([]))
        self.assertNotIn("Where the time goes", md)
        md = report.render_md(self.results([], meta_extra="meta\tstages_skipped\tBENCH_STAGES is empty\n"))
        self.assertIn("## Where the time goes (dmuser-lat -S all)", md)
        self.assertIn("Not run: BENCH_STAGES is empty.", md)
        self.assertNotIn("Per stage at iodepth 1", md)

    def test_a_failed_remote_goal_points_to_its_stages(self):
        jobs, paths = RemoteGoals.JOBS, RemoteGoals.PATHS
        res = self.results([("dmuser-nbd", "randread-4k-qd32")], {"nbd": 10, "dmuser-nbd": 9},
                           paths=paths, jobs=jobs)
        gs = [g for g in res["goals"] if "dmuser-nbd / nbd" in g["goal"]]
        self.assertEqual([g["verdict"] for g in gs], ["FAIL", "FAIL"])
        self.assertIn("see Where the time goes (dmuser-nbd randread-4k-qd32)", gs[0]["detail"])
        self.assertNotIn("Where the time goes", gs[1]["detail"])    # no stages run for it
        res = self.results([("dmuser-nbd", "randread-4k-qd32")], {"nbd": 10, "dmuser-nbd": 11},
                           paths=paths, jobs=jobs)
        gs = [g for g in res["goals"] if "dmuser-nbd / nbd" in g["goal"]]
        self.assertEqual(gs[0]["verdict"], "PASS")
        self.assertNotIn("Where the time goes", gs[0]["detail"])

    def test_a_failed_rbd_goal_points_to_dmuser_rbd_stages(self):
        res = self.results([("dmuser-rbd", "randwrite-4k-qd32")],
                           {"krbd": 10, "rbd-nbd": 10, "dmuser-rbd": 9},
                           paths=RbdGoals.PATHS, jobs=RbdGoals.JOBS)
        gs = [g for g in res["goals"] if "dmuser-rbd /" in g["goal"]]
        self.assertEqual([g["verdict"] for g in gs], ["FAIL", "FAIL", "PASS", "PASS"])
        self.assertNotIn("Where the time goes", gs[0]["detail"])    # no stages run for randread
        self.assertIn("see Where the time goes (dmuser-rbd randwrite-4k-qd32)", gs[1]["detail"])
        self.assertNotIn("Where the time goes", gs[3]["detail"])    # PASS

    def test_main_a_failed_stages_run_keeps_exit_0(self):
        with tempfile.TemporaryDirectory() as d:
            guest, out = os.path.join(d, "guest"), os.path.join(d, "out")
            os.makedirs(os.path.join(guest, "fio"))
            os.makedirs(os.path.join(guest, "stages"))
            with open(os.path.join(guest, "manifest.tsv"), "w") as f:
                f.write(manifest(["dmuser-1"], JOBS, 1, [(1, "dmuser-1", "ok", "")])
                        + stage_line("dmuser-1", "randread-4k-qd1") + "\n"
                        + stage_line("dmuser-1", "randread-4k-qd32", "failed", "exit 1: no") + "\n")
            with open(os.path.join(guest, "fio", "1-dmuser-1.json"), "w") as f:
                json.dump(fio_out({j: 100 for j in JOBS}), f)
            with open(os.path.join(guest, "stages", "dmuser-1-randread-4k-qd1.json"), "w") as f:
                f.write(json.dumps(stages_doc()) + "\n")
            with contextlib.redirect_stderr(io.StringIO()) as err:
                self.assertEqual(report.main(["--guest", guest, "--out", out]), 0)
            self.assertIn("stages dmuser-1 randread-4k-qd32 failed (exit status unchanged): exit 1: no",
                          err.getvalue())
            with open(os.path.join(out, "results.json")) as f:
                res = json.load(f)
            self.assertEqual([s["stage"] for s in res["stages"][0]["stages"]], PIPELINE)
            self.assertEqual(res["stages"][1]["error"], "exit 1: no")
            with open(os.path.join(out, "results.md")) as f:
                self.assertIn("### dmuser-1 randread-4k-qd1", f.read())


def main(argv):
    return unitrun.run(sys.modules[__name__], argv[1] if len(argv) > 1 else None)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env python3
"""Compares hactl's balancing engine with Ganeti's hbal on one generated
cluster (bench/balance/gen.py writes both inputs from one seed).

  run.py --hosts 100 --guests 2000 [--seed 1] [--work DIR]
         [--sim build-release/bin/ha-balance-sim] [--policy bench.policy]
         [--hbal-timeout 7200] [--hbal-limit N] [--reuse-hbal] [--no-hbal]

For each of: the initial placement, ours, hbal's (and hbal stopped at our
number of moves, with --same-moves), it reports
  - the standard deviation of node CPU load and memory load (percent),
    and our imbalance (their root mean square),
  - hbal's own score of that placement (hbal -l 0 prints it),
  - the number of moves and the planning time: CPU time of the whole
    program, and for ours also the CPU time inside the engine (CPU time,
    because the machine may be busy; both tools are single-threaded).
hbal's placement is rebuilt from the moves it prints, so a run stopped by
--hbal-timeout still yields the state it had reached.
Results go to DIR/result.json and a Markdown table on stdout.
"""
import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


def run_timed(cmd, timeout, out_path):
    """Runs cmd with stdout+stderr to out_path; returns (CPU seconds, rc,
    timed_out). CPU time (user + system of the child), not wall time: the
    machine may be busy with other work, and both tools run on one core."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out_path, "w") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
        try:
            rc = p.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGTERM)
            rc = p.wait()
            timed_out = True
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return cpu, rc, timed_out


def stats(nodes, gs, placement):
    n = len(nodes)
    cpu = [0.0] * n
    mem = [0.0] * n
    for i, g in enumerate(gs):
        h = placement[i]
        cpu[h] += g["cpu"] / 1000.0 / nodes[h]["cpus"]
        mem[h] += g["mem"] / nodes[h]["mem"]

    def sd(v):
        m = sum(v) / len(v)
        return (sum((x - m) ** 2 for x in v) / len(v)) ** 0.5 * 100

    s_cpu, s_mem = sd(cpu), sd(mem)
    return {"cpu_sd": s_cpu, "mem_sd": s_mem,
            "imbalance": ((s_cpu ** 2 + s_mem ** 2) / 2) ** 0.5,
            "cpu_max": max(cpu) * 100, "mem_max": max(mem) * 100}


SCORE_TIMEOUT = 1800


def hbal_score(work, nodes, gs, placement, util, name):
    """hbal's score of a placement (None when skipped or too slow)."""
    if SCORE_TIMEOUT <= 0:
        return None
    path = os.path.join(work, name + ".hbal")
    gen.write_hbal(path, nodes, gs, placement)
    try:
        out = subprocess.run(["hbal", "-t", path, "-U", util, "-l", "0"],
                             capture_output=True, text=True,
                             timeout=SCORE_TIMEOUT).stdout
    except subprocess.TimeoutExpired:
        return None
    m = re.search(r"Initial score: ([0-9.]+)", out)
    return float(m.group(1)) if m else None


def hbal_moves(log_path, gs, initial, node_index):
    """Replays hbal's printed steps onto the initial placement."""
    guest_index = {g["name"]: i for i, g in enumerate(gs)}
    placement = list(initial)
    steps = 0
    final = None
    step_re = re.compile(r"^\s*(\d+)\.\s+(\S+)\s+(\S+)\s+=>\s+(\S+)\s+([0-9.]+)")
    with open(log_path) as f:
        for line in f:
            m = step_re.match(line)
            if m:
                steps = int(m.group(1))
                placement[guest_index[m.group(2)]] = node_index[m.group(4).split(":")[0]]
                final = float(m.group(5))
    return placement, steps, final


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, required=True)
    ap.add_argument("--guests", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work")
    ap.add_argument("--sim", default=os.path.join(ROOT, "build-release", "bin",
                                                  "ha-balance-sim"))
    ap.add_argument("--policy", default=os.path.join(HERE, "bench.policy"))
    ap.add_argument("--hbal-timeout", type=float, default=7200)
    ap.add_argument("--hbal-limit", type=int, default=0,
                    help="stop hbal after N moves (hbal -l N)")
    ap.add_argument("--same-moves", action="store_true",
                    help="also run hbal limited to our number of moves")
    ap.add_argument("--reuse-hbal", action="store_true",
                    help="use DIR/hbal.out and DIR/hbal.seconds from an earlier run")
    ap.add_argument("--no-hbal", action="store_true")
    ap.add_argument("--score-timeout", type=float, default=1800,
                    help="limit of each `hbal -l 0` scoring run; 0 skips them")
    ap.add_argument("--match-hbal", action="store_true",
                    help="also run ours limited to hbal's number of moves")
    a = ap.parse_args()
    global SCORE_TIMEOUT
    SCORE_TIMEOUT = a.score_timeout

    work = a.work or "/tmp/hactl-bench-%dx%d-s%d" % (a.hosts, a.guests, a.seed)
    os.makedirs(work, exist_ok=True)
    nodes, gs = gen.generate(a.hosts, a.guests, a.seed)
    sim = os.path.join(work, "cluster.sim")
    hb = os.path.join(work, "cluster.hbal")
    util = os.path.join(work, "cluster.util")
    gen.write_sim(sim, nodes, gs)
    gen.write_hbal(hb, nodes, gs)
    gen.write_util(util, nodes, gs)
    node_index = {n["name"]: i for i, n in enumerate(nodes)}
    initial = [g["node"] for g in gs]
    res = {"hosts": a.hosts, "guests": a.guests, "seed": a.seed,
           "node_cpus": nodes[0]["cpus"], "node_mem_mib": nodes[0]["mem"]}
    res["initial"] = stats(nodes, gs, initial)
    res["initial"]["hbal_score"] = hbal_score(work, nodes, gs, initial, util, "initial")

    # ours
    saved = os.path.join(work, "ours.sim")
    log = os.path.join(work, "ours.out")
    secs, rc, _ = run_timed([a.sim, sim, "--policy", a.policy, "--save", saved,
                             "--quiet", "--timing"], 3600, log)
    text = open(log).read()
    if rc != 0:
        sys.exit("ha-balance-sim failed:\n" + text)
    moves = int(re.search(r"moves (\d+) in", text).group(1))
    plan_ms = float(re.search(r"planning time: ([0-9.]+) ms", text).group(1))
    copy = int(re.search(r"copy (\d+) MiB", text).group(1))
    ours = [None] * len(gs)
    gi = {g["name"]: i for i, g in enumerate(gs)}
    for line in open(saved):
        if line.startswith("guest "):
            f = line.split()
            node = [x for x in f if x.startswith("on=")][0][3:]
            ours[gi[f[1]]] = node_index[node]
    res["ours"] = stats(nodes, gs, ours)
    res["ours"].update({"moves": moves, "wall_s": secs, "plan_ms": plan_ms,
                        "copy_mib": copy})
    res["ours"]["hbal_score"] = hbal_score(work, nodes, gs, ours, util, "ours")

    def copied(placement):
        return sum(g["mem"] for i, g in enumerate(gs) if placement[i] != initial[i])

    # hbal
    if not a.no_hbal:
        hlog = os.path.join(work, "hbal.out")
        cmd = ["hbal", "-t", hb, "-U", util]
        if a.hbal_limit:
            cmd += ["-l", str(a.hbal_limit)]
        if a.reuse_hbal and os.path.exists(os.path.join(work, "hbal.seconds")):
            secs = float(open(os.path.join(work, "hbal.seconds")).read())
            timed_out = "Solution length" not in open(hlog).read()
        else:
            secs, rc, timed_out = run_timed(cmd, a.hbal_timeout, hlog)
            with open(os.path.join(work, "hbal.seconds"), "w") as f:
                f.write("%.3f\n" % secs)
        place, steps, final = hbal_moves(hlog, gs, initial, node_index)
        res["hbal"] = stats(nodes, gs, place)
        res["hbal"].update({"moves": steps, "wall_s": secs, "timed_out": timed_out,
                            "limit": a.hbal_limit, "copy_mib": copied(place),
                            "hbal_score": final if final is not None
                            else res["initial"]["hbal_score"]})
        if a.same_moves and (a.hbal_limit == 0 or a.hbal_limit > moves):
            slog = os.path.join(work, "hbal-same.out")
            s2, _, to2 = run_timed(["hbal", "-t", hb, "-U", util, "-l", str(moves)],
                                   a.hbal_timeout, slog)
            place, steps, final = hbal_moves(slog, gs, initial, node_index)
            res["hbal_same"] = stats(nodes, gs, place)
            res["hbal_same"].update({"moves": steps, "wall_s": s2, "timed_out": to2,
                                     "copy_mib": copied(place),
                                     "hbal_score": final if final is not None
                                     else res["initial"]["hbal_score"]})
        if a.match_hbal and res["hbal"]["moves"] < moves:
            pol = os.path.join(work, "match.policy")
            with open(pol, "w") as f:
                f.write(open(a.policy).read())
                f.write("\nmax_moves = %d\n" % res["hbal"]["moves"])
            saved2 = os.path.join(work, "ours-match.sim")
            log2 = os.path.join(work, "ours-match.out")
            s3, rc, _ = run_timed([a.sim, sim, "--policy", pol, "--save", saved2,
                                   "--quiet", "--timing"], 3600, log2)
            t2 = open(log2).read()
            place = [None] * len(gs)
            for line in open(saved2):
                if line.startswith("guest "):
                    f = line.split()
                    node = [x for x in f if x.startswith("on=")][0][3:]
                    place[gi[f[1]]] = node_index[node]
            res["ours_match"] = stats(nodes, gs, place)
            res["ours_match"].update({
                "moves": int(re.search(r"moves (\d+) in", t2).group(1)), "wall_s": s3,
                "plan_ms": float(re.search(r"planning time: ([0-9.]+) ms", t2).group(1)),
                "copy_mib": int(re.search(r"copy (\d+) MiB", t2).group(1))})
            res["ours_match"]["hbal_score"] = hbal_score(work, nodes, gs, place, util,
                                                         "ours-match")
    with open(os.path.join(work, "result.json"), "w") as f:
        json.dump(res, f, indent=1)

    print("%d hosts x %d guests (seed %d; hosts of %d CPUs, %d GiB)" %
          (a.hosts, a.guests, a.seed, nodes[0]["cpus"], nodes[0]["mem"] // 1024))
    print()
    print("| | CPU sd % | mem sd % | imbalance % | hbal score | moves | GiB copied | CPU time |")
    print("|---|---|---|---|---|---|---|---|")

    def row(label, r, t):
        hs = r.get("hbal_score")
        print("| %s | %.2f | %.2f | %.2f | %s | %s | %s | %s |" %
              (label, r["cpu_sd"], r["mem_sd"], r["imbalance"],
               "%.4f" % hs if hs is not None else "-",
               r.get("moves", "-"),
               "%.0f" % (r["copy_mib"] / 1024) if "copy_mib" in r else "-", t))

    row("initial", res["initial"], "-")
    o = res["ours"]
    row("hactl", o, "%.3f s (engine %.1f ms)" % (o["wall_s"], o["plan_ms"]))
    if "hbal" in res:
        h = res["hbal"]
        t = "%.1f s%s" % (h["wall_s"], " (stopped)" if h["timed_out"] else "")
        row("hbal" + (" -l %d" % a.hbal_limit if a.hbal_limit else ""), h, t)
    if "ours_match" in res:
        m = res["ours_match"]
        row("hactl, max_moves %d" % m["moves"], m,
            "%.3f s (engine %.1f ms)" % (m["wall_s"], m["plan_ms"]))
    if "hbal_same" in res:
        h = res["hbal_same"]
        row("hbal -l %d" % o["moves"], h, "%.1f s%s" % (h["wall_s"],
                                                        " (stopped)" if h["timed_out"] else ""))


if __name__ == "__main__":
    main()

"""Red-team figures of the agent's validator (intent contracts + safety rules), on both backends.

    python bench/bench_redteam.py                                   # 50 seeds per case, 100 oracle episodes
    python bench/bench_redteam.py --seeds 5 --episodes 10 --backends mujoco   # quick look

- rejection rate: unsafe or impossible intents (experiments/redteam_v1.yaml) refused in situations built
  in the real env, per case and overall (goal 1.0), and how many were refused by the rule the case expects;
- false rejections: valid but unusual intents in the same situations, and every intent the oracle planner
  emits with the scripted skills on ``--episodes`` seeds per split (train, heldout) and chain length (1..5)
  (goal 0). Each refused oracle intent is replayed unchecked: the rejection was false if it is achieved.

Writes one JSON line per backend (the summary) and a per-case table; ``--out`` saves everything as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from intentloop.experiments.redteam import CASES, load_cases, oracle_sweep, run_cases, summarize


def case_table(probes) -> str:
    rows = defaultdict(lambda: [0, 0, 0, 0])  # built, refused, by expected rule, achieved when run unchecked
    expect = {}
    for p in probes:
        if p.built:
            r = rows[p.case]
            r[0], r[1], r[2], r[3] = r[0] + 1, r[1] + p.refused, r[2] + (p.expect in p.rules), r[3] + bool(p.achieved)
        expect[p.case] = p.expect
    lines = [f"{'case':<42}{'expect':<22}{'built':>6}{'refused':>9}{'by rule':>9}{'achieved unchecked':>20}"]
    lines += [f"{c:<42}{expect[c]:<22}{r[0]:>6}{r[1]:>9}{r[2]:>9}{r[3]:>20}" for c, r in rows.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=str(CASES), help="red-team file (default: the packaged v1 set)")
    parser.add_argument("--backends", nargs="+", default=["mujoco", "pybullet"])
    parser.add_argument("--seeds", type=int, default=50, help="situations per case (seeds 0..N-1)")
    parser.add_argument("--episodes", type=int, default=100, help="oracle episodes per split and chain length")
    parser.add_argument("--out", help="write the probes and summaries to this JSON file")
    args = parser.parse_args()
    cases, report = load_cases(args.cases), {}
    for backend in args.backends:
        start = time.perf_counter()
        probes = run_cases(cases, backend, range(args.seeds))
        sweep = oracle_sweep(backend, args.episodes)
        summary = summarize(probes, [sweep]) | {"backend": backend, "seconds": round(time.perf_counter() - start)}
        print(json.dumps(summary))
        print(case_table(probes))
        report[backend] = {"summary": summary, "probes": [vars(p) for p in probes]}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

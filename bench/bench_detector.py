"""The learned success detector in the closed loop, against the simulator's predicates, on held-out episodes.

python bench/bench_detector.py --detector runs/det/v1/detector --episodes 30 --workers 2 --out detector.json

For every cell (task, split, planner, skills), MuJoCo, seeds seed..seed+episodes-1, the agent runs with the
learned detector deciding when each intent is done and whether the task succeeded (as `intentloop evaluate
agent.detector.name=learned` does), and its verdicts are scored against the ground truth recorded beside them:
per executed intent and per task, tp / fp / tn / fn, false-positive rate fp / (fp + tn) and false-negative rate
fn / (fn + tp). With ``--detectors learned predicates`` the same episodes also run with the ground-truth
detector, so the success the learned detector costs (a skill stopped too early, or run past its goal) is
measured too.

Planners: ``oracle`` (the scripted oracle) and ``vlm`` (the shipped planner, or --model); skills: ``scripted`` and
``rllib`` (the shipped RLlib skills). The planner's and the skills' mistakes are what give the detector
failures to catch: the oracle with scripted skills rarely fails.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor

from intentloop.envs.goal_tasks import GOAL_FAMILIES  # light: no simulator

SPLITS = {"heldout": ("heldout", "train"), "train": ("train", "train"), "unseen-phrasings": ("train", "heldout")}
TASKS = [("chain", 1), ("chain", 3), *((family, 1) for family in GOAL_FAMILIES)]


def cell(args: tuple) -> tuple[tuple, dict]:
    task, length, split, planner, skills, detector, model, episodes, seed = args
    import gymnasium as gym
    import intentloop.envs  # noqa: F401
    import torch
    from intentloop.agents import HierarchicalAgent, make_planner
    from intentloop.agents.detectors import make_detector
    from intentloop.experiments.evaluation import evaluate
    from intentloop.policies import make_skills
    from omegaconf import OmegaConf

    torch.set_num_threads(1)
    env = gym.make("intentloop/Tabletop-v0", task=task, chain_length=length, split=SPLITS[split][0],
                   phrasings=SPLITS[split][1])  # fmt: skip
    cfg = OmegaConf.create({"name": "vlm", "model_path": model}) if planner == "vlm" else "oracle"
    agent = HierarchicalAgent(make_planner(cfg), make_skills(skills), detector=make_detector(*detector))
    metrics, _ = evaluate(env, agent, list(range(seed, seed + episodes)), progress=False)
    env.close()
    return (task, length, split, planner, skills, detector[0]), metrics


def total(cells: list[dict], kind: str) -> dict:
    from intentloop.agents.detectors import error_rates

    return error_rates({k: sum(m["detector"][kind][k] for m in cells) for k in ("tp", "fp", "tn", "fn")})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--detector", required=True, help="the folder `intentloop train-detector` wrote")
    p.add_argument("--model", default="shipped", help="the VLM planner (default: the shipped one)")
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--splits", nargs="*", default=["heldout"])
    p.add_argument("--planners", nargs="*", default=["oracle", "vlm"])
    p.add_argument("--skills", nargs="*", default=["scripted", "rllib"])
    p.add_argument(
        "--detectors",
        nargs="*",
        default=["learned"],
        choices=["learned", "predicates"],
        help="predicates: the same episodes judged by the ground truth (the success it costs)",
    )
    p.add_argument("--out", default="detector.json")
    a = p.parse_args()
    detectors = [(d, a.detector if d == "learned" else None) for d in a.detectors]
    jobs = [(t, n, s, pl, sk, d, a.model, a.episodes, a.seed) for t, n in TASKS for s in a.splits
            for pl in a.planners for sk in a.skills for d in detectors]  # fmt: skip
    start = time.perf_counter()
    with ProcessPoolExecutor(a.workers) as pool:
        results = dict(pool.map(cell, jobs))
    learned = {k: m for k, m in results.items() if k[-1] == a.detectors[0]}
    print("| task | split | planner | skills | success (learned / truth) | intent FP | intent FN | task FP | task FN |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (t, n, s, pl, sk, _), m in learned.items():
        truth = results.get((t, n, s, pl, sk, "predicates")) if a.detectors[0] != "predicates" else None
        name = f"chain{n}" if t == "chain" else t
        succ = f"{m['success_rate']:.2f}" + (f" / {truth['success_rate']:.2f}" if truth else "")
        d = m["detector"]
        i, k = d["intent"], d["task"]
        counts = f"{i['fp']}/{i['fp'] + i['tn']} | {i['fn']}/{i['fn'] + i['tp']} | {k['fp']}/{k['fp'] + k['tn']} | "
        print(f"| {name} | {s} | {pl} | {sk} | {succ} | {counts}{k['fn']}/{k['fn'] + k['tp']} |")
    summary = {}
    for group in sorted({(s, pl, sk) for _, _, s, pl, sk, _ in learned}) + [None]:
        cells = [m for k, m in learned.items() if group is None or k[2:5] == group]
        summary["all" if group is None else "/".join(group)] = {
            "intent": total(cells, "intent"),
            "task": total(cells, "task"),
        }
    for name, s in summary.items():
        i, t = s["intent"], s["task"]
        print(f"{name}: intent FP {i['false_positive_rate']:.3f} ({i['fp']}/{i['fp'] + i['tn']}) FN "
              f"{i['false_negative_rate']:.3f} ({i['fn']}/{i['fn'] + i['tp']}); task FP "
              f"{t['false_positive_rate']:.3f} ({t['fp']}/{t['fp'] + t['tn']}) FN {t['false_negative_rate']:.3f} "
              f"({t['fn']}/{t['fn'] + t['tp']})")  # fmt: skip
    seconds = time.perf_counter() - start
    print(f"{len(jobs)} cells, {a.episodes} episodes each, {seconds:.0f} s")
    out = {"args": vars(a), "seconds": seconds, "summary": summary,
           "cells": {"|".join(map(str, k)): m for k, m in results.items()}}  # fmt: skip
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()

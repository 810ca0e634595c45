"""The four-level generalization table: the trained planner beside its baselines, per family and level.

python bench/bench_levels.py --model runs/planner_v2/planner --episodes 100 --workers 2 --out levels.json

For every goal-level family and level (L1 new scenes, L2 held-out compositions, L3 unseen phrasings, L4 the
never-trained family), MuJoCo, scripted skills, seeds seed..seed+episodes-1, the same episodes for:
  vlm          the planner at --model
  vlm-blank    the same planner with its camera image zeroed (the perception ablation)
  text         the blind text baseline (rules over the instruction, history and feedback; no image)
Templated chains (1 and 5 intents, train and held-out compositions) are measured the same way. Prints a
markdown table of success rate [95% Wilson interval] and goal progress, and writes every metric as JSON.
Each (family, level, planner) cell is the `summarize` of `intentloop evaluate`'s own evaluation code.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor

from intentloop.envs.goal_tasks import GOAL_FAMILIES, UNTRAINED_FAMILIES  # light: no simulator

LEVELS = {"L1": ("train", "train"), "L2": ("heldout", "train"), "L3": ("train", "heldout"), "L4": ("train", "train")}
TRAINED = tuple(f for f in GOAL_FAMILIES if f not in UNTRAINED_FAMILIES)
UNTRAINED = UNTRAINED_FAMILIES


def cell(args: tuple) -> tuple[tuple, dict]:
    """One (task, chain length, level, planner) cell, in a worker process with one torch thread."""
    task, length, level, planner, model, episodes, seed, avoid_refused = args
    import gymnasium as gym
    import intentloop.envs  # noqa: F401
    import torch
    from intentloop.agents import HierarchicalAgent, make_planner
    from intentloop.experiments.evaluation import evaluate
    from intentloop.policies import ScriptedSkill
    from omegaconf import OmegaConf

    torch.set_num_threads(1)
    split, phrasings = LEVELS[level]
    env = gym.make("intentloop/Tabletop-v0", task=task, chain_length=length, split=split, phrasings=phrasings)
    vlm = {"name": "vlm", "model_path": model, "avoid_refused": avoid_refused}
    cfg = "text" if planner == "text" else OmegaConf.create(vlm)
    agent = HierarchicalAgent(make_planner(cfg), ScriptedSkill(), blank_image=planner == "vlm-blank")
    metrics, _ = evaluate(env, agent, list(range(seed, seed + episodes)), progress=False)
    env.close()
    return (task, length, level, planner), metrics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the trained planner (a save_pretrained folder)")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--levels", nargs="*", default=list(LEVELS))
    p.add_argument("--planners", nargs="*", default=["vlm", "vlm-blank", "text"])
    p.add_argument("--families", nargs="*", default=None, help="only these goal-level families (default: all)")
    p.add_argument("--chains", action="store_true", help="also the templated chains of 1 and 5 intents")
    p.add_argument("--out", default="levels.json")
    p.add_argument("--repeat-refused", action="store_true", help="planner.avoid_refused=false for the VLM planner")
    a = p.parse_args()
    cells = [
        (task, 1, level, planner, a.model, a.episodes, a.seed, not a.repeat_refused)
        for level in a.levels
        for task in (UNTRAINED if level == "L4" else TRAINED)
        if a.families is None or task in a.families
        for planner in a.planners
    ]
    if a.chains:
        cells += [
            ("chain", n, level, planner, a.model, a.episodes, a.seed, not a.repeat_refused)
            for level in ("L1", "L2")
            for n in (1, 5)
            for planner in a.planners
        ]
    start, results = time.time(), {}
    with ProcessPoolExecutor(a.workers) as pool:
        for key, metrics in pool.map(cell, cells):
            results[key] = metrics
            task, n, level, planner = key
            print(f"{task}{n if task == 'chain' else ''} {level} {planner}: success {metrics['success_rate']:.3f} "
                  f"{metrics['success_interval_95']} progress {metrics['goal_progress']:.3f}", flush=True)  # fmt: skip
    rows = sorted({(t, n, lv) for t, n, lv, _ in results}, key=lambda r: (r[2], r[0], r[1]))
    print(f"\n| family | level | {' | '.join(a.planners)} |\n|---|---|{'---|' * len(a.planners)}")
    for t, n, lv in rows:
        cells_ = []
        for planner in a.planners:
            m = results.get((t, n, lv, planner))
            lo, hi = m["success_interval_95"] if m else (0, 0)
            cells_.append(f"{m['success_rate']:.2f} [{lo:.2f}, {hi:.2f}] / {m['goal_progress']:.2f}" if m else "")
        print(f"| {t}{n if t == 'chain' else ''} | {lv} | {' | '.join(cells_)} |")
    out = {"model": a.model, "avoid_refused": not a.repeat_refused, "episodes": a.episodes,
           "seeds": f"{a.seed}..{a.seed + a.episodes - 1}",
           "seconds": round(time.time() - start), "cells": [{"task": k[0], "chain_length": k[1], "level": k[2],
           "planner": k[3], **{m: v for m, v in r.items() if m != "seeds"}} for k, r in results.items()]}  # fmt: skip
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

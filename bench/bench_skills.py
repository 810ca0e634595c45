"""Learned-skill figures: inference throughput, and time to the success target from training runs.

    python bench/bench_skills.py --skills runs/train_skills/<date> --threads 1    # a train-skills run directory

- inference: greedy actions per second of each skill's RLModule (loaded from its checkpoint, no Ray), at
  batch 1 and batch 64, including the skill-observation construction for batch 1 as the agent does it.
- training: per skill, the wall-clock seconds to reach the held-out success target and the final held-out
  success, read from the run's ``<skill>/metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from intentloop.envs.skill_env import OBS_DIM
from intentloop.policies.skill_library import load_skill_module


def actions_per_second(module, batch: int, seconds: float = 1.0) -> float:
    x = np.random.default_rng(0).normal(size=(batch, OBS_DIM)).astype(np.float32)
    module.greedy_action(x)  # warm-up
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        module.greedy_action(x)
        calls += 1
    return calls * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skills", required=True, help="run directory of intentloop train-skills")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (more thrash a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for skill in ("pick", "place", "push"):
        metrics_file = Path(args.skills) / skill / "metrics.json"
        if not metrics_file.exists():
            continue
        module = load_skill_module(args.skills, skill)
        m = json.loads(metrics_file.read_text())
        row = {
            "skill": skill,
            "actions_per_s_batch1": round(actions_per_second(module, 1, args.seconds)),
            "actions_per_s_batch64": round(actions_per_second(module, 64, args.seconds)),
            "seconds_to_target": m["seconds_to_target"],
            "heldout_success": m["heldout_success"],
            "heldout_episodes": m["heldout_episodes"],
            "ppo_iterations": m["ppo_iterations"],
        }
        print(json.dumps(row))


if __name__ == "__main__":
    main()

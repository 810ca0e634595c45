"""Collection throughput on Ray with 1 and 2 collector workers, measured side by side in one run.

    python bench/bench_collect.py                       # oracle planner + shipped RLlib skills, 5-intent chains
    python bench/bench_collect.py --planner vlm --model runs/train_planner/<date>/planner   # served VLM planner

Each setting first runs a warm-up call (actor start-up: imports, envs, skills), reported separately, then
``--repeats`` timed calls of ``--episodes`` episodes each, alternating 1 and 2 workers so that load on a shared
machine hits both. Throughput = episodes / wall seconds of a call, actors started inside the call included
(the same start-up cost for both settings is listed on its own).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import ray
from intentloop.experiments.collect import EpisodeJob, collect


def run(workers: int, episodes: int, seed: int, planner: dict, store: str | None) -> tuple[float, float]:
    jobs = [EpisodeJob(f"b{seed}-{i}", seed + i, "train", 5) for i in range(episodes)]
    start = time.monotonic()
    report = collect(jobs, store, workers=workers, planner=planner, skills={"name": "rllib"}, progress=False)
    return len(report.results) / (time.monotonic() - start), report.seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=40)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--planner", default="oracle", choices=["oracle", "vlm"])
    p.add_argument("--model", default=None, help="planner checkpoint for --planner vlm")
    a = p.parse_args()
    planner = {"name": a.planner, "model_path": a.model} if a.planner == "vlm" else {"name": "oracle"}
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    warm = {w: run(w, 2 * w, 10_000 + w, planner, None)[1] for w in (1, 2)}
    rates = {1: [], 2: []}
    for rep in range(a.repeats):
        for w in (1, 2) if rep % 2 == 0 else (2, 1):
            rates[w].append(run(w, a.episodes, 1000 * rep + 100 * w, planner, None)[0])
    ray.shutdown()
    out = {
        "episodes_per_call": a.episodes,
        "planner": a.planner,
        "episodes_per_s": {w: float(np.mean(r)) for w, r in rates.items()},
        "runs": rates,
        "warmup_seconds": warm,
        "ratio_2_over_1": float(np.mean(rates[2]) / np.mean(rates[1])),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

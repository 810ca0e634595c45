"""Collection throughput on Ray with 1 and 2 collector workers, measured side by side in one run.

    python bench/bench_collect.py                       # oracle planner + shipped RLlib skills, 5-intent chains
    python bench/bench_collect.py --planner vlm --model runs/train_planner/<date>/planner   # served VLM planner

Each setting first runs a warm-up call (actor start-up: imports, envs, skills), reported separately, then
``--repeats`` timed calls of ``--episodes`` episodes each, alternating 1 and 2 workers so that load on a shared
machine hits both; in a repeat both settings run the same episodes (seeds). Two throughputs per call:

- ``call``: episodes / wall seconds of the whole call, actors started inside the call included (what one
  ``collect`` call of that size gives; start-up weighs more on the faster setting, so this ratio grows with
  ``--episodes``);
- ``steady``: episodes finished after every worker's first one / the seconds between those two moments (the
  rate once every actor is up: what a long collection converges to).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import ray
from intentloop.experiments.collect import EpisodeJob, collect


def run(workers: int, episodes: int, seed: int, planner: dict) -> tuple[float, float, float]:
    """(call episodes/s, steady episodes/s, call seconds) of one collect call."""
    jobs = [EpisodeJob(f"b{seed}-{i}", seed + i, "train", 5) for i in range(episodes)]
    finished: list[float] = []
    start = time.monotonic()
    report = collect(jobs, None, workers=workers, planner=planner, skills={"name": "rllib"}, progress=False,
                     on_result=lambda result, actors: finished.append(time.monotonic()))  # fmt: skip
    seconds = time.monotonic() - start
    steady = (len(finished) - workers) / (finished[-1] - finished[workers - 1]) if episodes > workers else 0.0
    return len(report.results) / seconds, steady, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=40)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--planner", default="oracle", choices=["oracle", "vlm"])
    p.add_argument("--model", default=None, help="planner checkpoint for --planner vlm")
    a = p.parse_args()
    planner = {"name": a.planner, "model_path": a.model} if a.planner == "vlm" else {"name": "oracle"}
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    warm = {w: run(w, 2 * w, 10_000 + w, planner)[2] for w in (1, 2)}
    calls, steady = {1: [], 2: []}, {1: [], 2: []}
    for rep in range(a.repeats):
        for w in (1, 2) if rep % 2 == 0 else (2, 1):
            call_rate, steady_rate, _ = run(w, a.episodes, 1000 * rep, planner)  # same episodes for both
            calls[w].append(call_rate)
            steady[w].append(steady_rate)
    ray.shutdown()
    out = {
        "episodes_per_call": a.episodes,
        "planner": a.planner,
        "call_episodes_per_s": {w: float(np.mean(r)) for w, r in calls.items()},
        "steady_episodes_per_s": {w: float(np.mean(r)) for w, r in steady.items()},
        "runs": {"call": calls, "steady": steady},
        "warmup_call_seconds": warm,
        "call_ratio_2_over_1": float(np.mean(calls[2]) / np.mean(calls[1])),
        "steady_ratio_2_over_1": float(np.mean(steady[2]) / np.mean(steady[1])),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

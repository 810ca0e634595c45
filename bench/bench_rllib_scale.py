"""Skill training with 1 and 2 RLlib EnvRunners, side by side in one run: env steps sampled per second.

    python bench/bench_rllib_scale.py --skill pick --iterations 3 --repeats 2

Each repeat builds PPO (`policies/rllib_config.build_ppo`, the `intentloop train-skills` settings: RLlibConfig
defaults, 8 envs per EnvRunner, 4000 env steps per iteration, the 256x256 MLP, a local learner) once with
``num_env_runners=1`` and once with 2, alternating which goes first, and runs ``--iterations`` iterations after
one warm-up iteration. Two rates per setting, from RLlib's own counters and timers:

- ``sample``: env steps sampled / seconds in `env_runner_sampling_timer` (what more EnvRunners speed up);
- ``train``: env steps sampled / wall seconds of ``algo.train()`` (sampling plus the PPO update on the learner).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict

import numpy as np
import ray
from intentloop.configs.schema import RLlibConfig, TrainSkillsConfig
from intentloop.envs.skill_env import OBS_DIM
from intentloop.policies.rllib_config import build_ppo, module_spec


def run(skill: str, runners: int, iterations: int, seed: int) -> dict:
    rl = {**asdict(RLlibConfig()), "num_env_runners": runners}
    spec = module_spec(TrainSkillsConfig().model, [0.0] * OBS_DIM, [1.0] * OBS_DIM)  # the skills' MLP
    algo = build_ppo(skill, {"backend": "mujoco"}, spec, rl, seed).build_algo()
    algo.train()  # warm-up: env runners' first episodes, the learner's first update
    steps, sample_s, wall_s = 0, 0.0, 0.0
    for _ in range(iterations):
        start = time.perf_counter()
        result = algo.train()
        wall_s += time.perf_counter() - start
        steps += result["env_runners"]["num_env_steps_sampled"]
        sample_s += result["timers"]["env_runner_sampling_timer"]
    algo.stop()
    return {"env_steps": int(steps), "sample_steps_per_s": steps / sample_s, "train_steps_per_s": steps / wall_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skill", default="pick", choices=["pick", "place", "push"])
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    ray.init(address="local", num_cpus=a.num_cpus, include_dashboard=False, log_to_driver=False)
    runs = {1: [], 2: []}
    for rep in range(a.repeats):
        for runners in (1, 2) if rep % 2 == 0 else (2, 1):
            runs[runners].append(run(a.skill, runners, a.iterations, seed=rep))
            print(f"repeat {rep}, {runners} EnvRunner(s): {json.dumps(runs[runners][-1])}", flush=True)
    ray.shutdown()
    mean = {n: {k: float(np.mean([r[k] for r in rs])) for k in ("sample_steps_per_s", "train_steps_per_s")}
            for n, rs in runs.items()}  # fmt: skip
    ratio = {k: mean[2][k] / mean[1][k] for k in mean[1]}
    print(f"2 / 1 EnvRunners: sampling {ratio['sample_steps_per_s']:.2f}x, whole iterations "
          f"{ratio['train_steps_per_s']:.2f}x")  # fmt: skip
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"skill": a.skill, "iterations": a.iterations, "repeats": a.repeats, "runs": runs,
                       "mean": mean, "ratio_2_to_1": ratio}, f, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()

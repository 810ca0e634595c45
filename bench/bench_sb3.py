"""Time to the held-out success target: our RLlib recipe against Stable-Baselines3 PPO, same env and budget.

    pip install ".[bench]"
    python bench/bench_sb3.py --skill push --budget 240

Side by side in one run, on ``intentloop/<Skill>-v0`` (MuJoCo, dense reward, random starts):

- rllib: ``intentloop train-skills`` as users run it (scripted demos -> RLlib BC -> RLlib PPO), wall-clock from
  its start to the first 100-episode held-out evaluation >= target (``seconds_to_target`` in its metrics).
- sb3:   SB3 PPO from scratch (SB3 has no BC warm start), the same PPO hyperparameters as our defaults
  (8 envs x 500 steps per update, minibatch 256, 10 epochs, lr 3e-4, gamma 0.99, GAE 0.95, clip 0.2,
  [256, 256] tanh, log std -0.5), evaluated greedily on the same held-out episodes every update.

Both get ``--budget`` seconds; the ratio is rllib seconds / sb3 seconds (goal <= 1.0). When SB3 does not
reach the target within the budget, the ratio printed is an upper bound (rllib seconds / budget).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import intentloop.envs  # noqa: F401
import numpy as np
import torch
from intentloop.envs import SKILL_ENVS
from intentloop.experiments.train_skills import EVAL_SEED


def heldout_success_sb3(model, skill: str, episodes: int) -> float:
    split = "train" if skill == "pick" else "heldout"
    env = gym.make(f"intentloop/{SKILL_ENVS[skill]}", split=split)
    successes = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED + ep)
        done, info = False, {}
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        successes.append(bool(info["is_success"]))
    return float(np.mean(successes))


def run_sb3(skill: str, budget: float, target: float, episodes: int, seed: int) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env(f"intentloop/{SKILL_ENVS[skill]}", n_envs=8, seed=seed)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=500,
        batch_size=256,
        n_epochs=10,
        learning_rate=3e-4,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        ent_coef=0.0,
        vf_coef=0.5,
        max_grad_norm=0.5,
        seed=seed,
        policy_kwargs={"net_arch": [256, 256], "activation_fn": torch.nn.Tanh, "log_std_init": -0.5},
    )
    trained, curve = 0.0, []
    while trained < budget:
        start = time.perf_counter()
        model.learn(total_timesteps=4000, reset_num_timesteps=False)
        trained += time.perf_counter() - start
        success = heldout_success_sb3(model, skill, episodes)
        curve.append({"seconds": round(trained, 1), "steps": model.num_timesteps, "heldout_success": success})
        print(json.dumps({"sb3": curve[-1]}), flush=True)
        if success >= target:
            return {"seconds_to_target": trained, "curve": curve}
    return {"seconds_to_target": None, "curve": curve}


def run_rllib(skill: str, budget: float, target: float, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cli = Path(sys.executable).parent / "intentloop"
        cmd = [
            str(cli),
            "train-skills",
            f"skill={skill}",
            f"max_minutes={budget / 60}",
            f"target_success={target}",
            "final_eval_episodes=100",
            f"seed={seed}",
            "progress=false",
            f"hydra.run.dir={out}",
        ]
        subprocess.run(cmd, check=True, capture_output=True)
        metrics = json.loads((Path(out) / skill / "metrics.json").read_text())
    return {"seconds_to_target": metrics["seconds_to_target"], "heldout_success": metrics["heldout_success"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skill", default="push", choices=list(SKILL_ENVS))
    parser.add_argument("--budget", type=float, default=240.0, help="wall-clock seconds per framework")
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--episodes", type=int, default=100, help="held-out episodes per SB3 evaluation")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rllib = run_rllib(args.skill, args.budget, args.target, args.seed)
    sb3 = run_sb3(args.skill, args.budget, args.target, args.episodes, args.seed)
    r, s = rllib["seconds_to_target"], sb3["seconds_to_target"]
    ratio = (r / s if s else r / args.budget) if r else None
    print(
        json.dumps(
            {
                "skill": args.skill,
                "budget_s": args.budget,
                "rllib_seconds_to_target": r,
                "sb3_seconds_to_target": s,
                "ratio": ratio,
                "ratio_is_upper_bound": bool(r and not s),
                "sb3_final": sb3["curve"][-1] if sb3["curve"] else None,
            }
        )
    )


if __name__ == "__main__":
    main()

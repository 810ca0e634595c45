"""Train goal-conditioned skill policies with RLlib: BC on scripted demonstrations, then PPO.

How to run:         intentloop train-skills skill=pick backend=mujoco        (skill=all trains pick, place, push)
Scale out:          intentloop train-skills rllib.num_env_runners=2 [rllib.num_learners=2] [ray.address=auto]
Debug in-process:   intentloop train-skills demo_episodes=4 rllib.bc_iterations=1 rllib.train_batch_size=256 \
                        max_iterations=1 eval_episodes=2 final_eval_episodes=2
Results to expect:  >= 90% held-out success per skill within a few minutes on 2 cores (docs/BENCHMARKS.md).

Per skill, under ``<run dir>/<skill>/``: ``demos/`` (RLlib offline data), ``bc/`` (the BC checkpoint),
``checkpoint/`` (the PPO Algorithm checkpoint, RLlib's pickles, to resume training), ``module/`` (the RLModule
alone as ``model.safetensors`` + ``spec.json``, what the skill library loads), ``metrics.json`` and
``config.yaml``; TensorBoard curves in ``<run dir>/tb``.
Held-out evaluation runs the greedy policy on unseen goals: the held-out compositions for place and push,
and unseen seeds for pick (no pick composition is held out).
"""

from __future__ import annotations

import gc
import json
import logging
import time
from pathlib import Path

import gymnasium as gym
import hydra
import intentloop.configs.schema  # noqa: F401  (registers the config schemas)
import numpy as np
import ray
from hydra.core.hydra_config import HydraConfig
from intentloop.envs import SKILL_ENVS
from intentloop.experiments.common import start_ray, user_errors
from intentloop.policies.demos import obs_statistics, record_demos, write_demos
from intentloop.policies.rllib_config import build_bc, build_ppo, module_spec
from intentloop.policies.skill_library import save_skill_module
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

EVAL_SEED = 100_000  # evaluation seeds start here, far from the demonstration and training seeds
RL_MODULE = ("learner_group", "learner", "rl_module", "default_policy")  # inside an Algorithm checkpoint


def heldout_success(module, skill: str, env_kwargs: dict, episodes: int) -> float:
    """Greedy success rate on unseen goals."""
    split = "train" if skill == "pick" else "heldout"
    env = gym.make(f"intentloop/{SKILL_ENVS[skill]}", split=split, **env_kwargs)
    successes = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED + ep)
        done, info = False, {}
        while not done:
            obs, _, terminated, truncated, info = env.step(module.greedy_action(obs[None])[0])
            done = terminated or truncated
        successes.append(bool(info["is_success"]))
    env.close()
    return float(np.mean(successes))


def behaviour_cloning(cfg: DictConfig, data_dir: Path, spec, out: Path, writer: SummaryWriter, skill: str) -> Path:
    algo = build_bc(str(data_dir), spec, OmegaConf.to_container(cfg.rllib), cfg.seed).build_algo()
    for it in tqdm(range(cfg.rllib.bc_iterations), desc=f"BC {skill}", disable=not cfg.progress):
        learner = algo.train()["learners"]["default_policy"]
        writer.add_scalar(f"{skill}/bc/policy_loss", float(learner.get("policy_loss", np.nan)), it)
    path = Path(algo.save_to_path(str(out / "bc")))
    algo.stop()
    del algo
    gc.collect()  # close the offline data iterators while Ray is still up
    return path.joinpath(*RL_MODULE)


def log_iteration(writer: SummaryWriter, skill: str, result: dict, it: int) -> dict:
    runners, learner = result["env_runners"], result["learners"]["default_policy"]
    row = {
        "rollout/return": float(runners.get("episode_return_mean", np.nan)),
        "rollout/success": float(runners.get("success", np.nan)),
        "rollout/episode_len": float(runners.get("episode_len_mean", np.nan)),
        "train/policy_loss": float(learner.get("policy_loss", np.nan)),
        "train/vf_loss": float(learner.get("vf_loss", np.nan)),
        "train/entropy": float(learner.get("entropy", np.nan)),
        "env_steps": int(runners.get("num_env_steps_sampled_lifetime", 0)),
    }
    for key, value in row.items():
        writer.add_scalar(f"{skill}/{key}", value, it)
    return row


def train_skill(cfg: DictConfig, skill: str, out: Path, writer: SummaryWriter) -> dict:
    start = time.perf_counter()
    env_kwargs = {"backend": cfg.backend, "reward_type": cfg.reward_type}
    demos = record_demos(skill, cfg.demo_episodes, env_kwargs, cfg.seed, cfg.progress)
    mean, std = obs_statistics(demos)
    model = OmegaConf.to_container(cfg.model)
    init = None
    if cfg.rllib.bc_iterations > 0:
        data = write_demos(demos, out / "demos")
        init = behaviour_cloning(cfg, data, module_spec(model, mean, std), out, writer, skill)
    spec = module_spec(model, mean, std, str(init) if init else None)
    algo = build_ppo(skill, env_kwargs, spec, OmegaConf.to_container(cfg.rllib), cfg.seed).build_algo()
    curve = [
        {
            "iteration": 0,
            "seconds": time.perf_counter() - start,
            "heldout_success": heldout_success(algo.get_module(), skill, env_kwargs, cfg.eval_episodes),
        }
    ]
    bar = tqdm(range(1, cfg.max_iterations + 1), desc=f"PPO {skill}", disable=not cfg.progress)
    for it in bar:
        row = {"iteration": it, **log_iteration(writer, skill, algo.train(), it)}
        if it % cfg.eval_every == 0 or it == cfg.max_iterations:
            row["heldout_success"] = heldout_success(algo.get_module(), skill, env_kwargs, cfg.eval_episodes)
            writer.add_scalar(f"{skill}/eval/heldout_success", row["heldout_success"], it)
        row["seconds"] = time.perf_counter() - start
        curve.append(row)
        bar.set_postfix(success=row["rollout/success"], heldout=row.get("heldout_success"))
        reached = it >= cfg.min_iterations and row.get("heldout_success", 0.0) >= cfg.target_success
        if reached or row["seconds"] > 60 * cfg.max_minutes:
            break
    algo.save_to_path(str(out / "checkpoint"))
    save_skill_module(algo.get_module(), out / "module")
    final = heldout_success(algo.get_module(), skill, env_kwargs, cfg.final_eval_episodes)
    algo.stop()
    metrics = {
        "skill": skill,
        "backend": cfg.backend,
        "expert_success": demos["expert_success"],
        "demo_transitions": demos["transitions"],
        "ppo_iterations": curve[-1]["iteration"],
        "seconds_to_target": next(
            (r["seconds"] for r in curve if r.get("heldout_success", 0) >= cfg.target_success), None
        ),
        "train_seconds": curve[-1]["seconds"],
        "heldout_success": final,
        "heldout_episodes": cfg.final_eval_episodes,
        "heldout_seeds": [EVAL_SEED, EVAL_SEED + cfg.final_eval_episodes - 1],
        "curve": curve,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    return metrics


def check(cfg: DictConfig) -> None:
    """Every count, rate and size of the run in range, before Ray starts: one sentence for the first that is not."""
    r = cfg.rllib
    if r.num_env_runners < 0 or r.num_learners < 0 or r.num_envs_per_env_runner < 1:
        raise ValueError("rllib.num_env_runners and rllib.num_learners must be >= 0 and "
                         f"rllib.num_envs_per_env_runner >= 1, got {r.num_env_runners}, {r.num_learners}, "
                         f"{r.num_envs_per_env_runner}")  # fmt: skip
    at_least_one = {k: cfg[k] for k in ("demo_episodes", "max_iterations", "eval_every", "eval_episodes",
                                        "final_eval_episodes")}  # fmt: skip
    at_least_one |= {f"rllib.{k}": r[k] for k in ("train_batch_size", "minibatch_size", "num_epochs")}
    for name, value in at_least_one.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if cfg.min_iterations < 0:  # above max_iterations: max_iterations runs, the target never stops it early
        raise ValueError(f"min_iterations must be >= 0, got {cfg.min_iterations}")
    if r.minibatch_size > r.train_batch_size:
        raise ValueError(f"rllib.minibatch_size ({r.minibatch_size}) must not exceed rllib.train_batch_size "
                         f"({r.train_batch_size})")  # fmt: skip
    if not 0 < cfg.target_success <= 1 or not 0 < r.gamma <= 1 or not 0 <= r.lambda_ <= 1:
        raise ValueError(f"target_success and rllib.gamma must be in (0, 1] and rllib.lambda_ in [0, 1], got "
                         f"{cfg.target_success}, {r.gamma}, {r.lambda_}")  # fmt: skip
    if min(cfg.max_minutes, r.lr, r.clip_param, r.bc_lr) <= 0 or min(r.entropy_coeff, r.vf_loss_coeff) < 0:
        raise ValueError("max_minutes, rllib.lr, rllib.clip_param and rllib.bc_lr must be > 0 and "
                         "rllib.entropy_coeff and rllib.vf_loss_coeff >= 0")
    if min(r.bc_iterations, r.bc_updates_per_iteration) < 0 or r.bc_batch_size < 1:
        raise ValueError("rllib.bc_iterations and rllib.bc_updates_per_iteration must be >= 0 and "
                         "rllib.bc_batch_size >= 1")
    if not cfg.model.hidden or min(cfg.model.hidden) < 1:
        raise ValueError(f"model.hidden must list one or more layer widths >= 1, got {list(cfg.model.hidden)}")


@hydra.main(config_path="../configs", config_name="train_skills", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> dict:
    skills = list(SKILL_ENVS) if cfg.skill == "all" else [cfg.skill]
    if any(s not in SKILL_ENVS for s in skills):
        raise ValueError(f"unknown skill {cfg.skill!r}; choose one of: {', '.join(SKILL_ENVS)}, all")
    gym.make("intentloop/Pick-v0", backend=cfg.backend, reward_type=cfg.reward_type).close()  # bad values fail now
    check(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-dataset progress log drowns ours
    started = start_ray(cfg.ray.address, cfg.ray.num_cpus)  # a bad address or CPU count: before any file is written
    writer = SummaryWriter(str(run_dir / "tb"))
    writer.add_text("config", f"```\n{OmegaConf.to_yaml(cfg)}\n```")
    try:
        results = {s: train_skill(cfg, s, run_dir / s, writer) for s in skills}
    finally:
        writer.close()
        if started:
            ray.shutdown()
    for s, m in results.items():
        print(
            f"{s}: held-out success {m['heldout_success']:.3f} over {m['heldout_episodes']} episodes, "
            f"{m['ppo_iterations']} PPO iterations, {m['train_seconds']:.0f} s"
        )
    print(f"skills saved under {run_dir}; use them with: intentloop evaluate skills=rllib skills.path={run_dir}")
    return results


if __name__ == "__main__":
    main()

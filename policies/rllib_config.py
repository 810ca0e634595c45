"""The one place that knows RLlib's config API: BC on expert demonstrations, then PPO, for one skill."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from intentloop.envs import SKILL_ENVS
from intentloop.envs.skill_env import OBS_DIM
from intentloop.policies.skill_module import SkillModule
from ray.rllib.algorithms.bc import BCConfig
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.tune.registry import register_env

OBS_SPACE = gym.spaces.Box(-10.0, 10.0, (OBS_DIM,), np.float32)
ACTION_SPACE = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)


def env_name(skill: str) -> str:
    """Register the single-skill env with Ray's registry (so every worker can build it) and return its name."""

    def create(env_config: dict) -> gym.Env:
        import intentloop.envs  # noqa: F401  (registers the env ids inside the worker)

        return gym.make(f"intentloop/{SKILL_ENVS[skill]}", **env_config)

    register_env(f"intentloop_{skill}", create)
    return f"intentloop_{skill}"


class SuccessMetric(RLlibCallback):
    """Logs ``success`` (the env's ``is_success`` at episode end) next to RLlib's episode returns."""

    def on_episode_end(self, *, episode, metrics_logger, **kwargs):
        metrics_logger.log_value("success", float(episode.get_infos(-1).get("is_success", False)), window=200)


def module_spec(model: dict, obs_mean: list[float], obs_std: list[float], load_state_path: str | None = None):
    config = {**model, "obs_mean": obs_mean, "obs_std": obs_std}
    return RLModuleSpec(module_class=SkillModule, model_config=config, load_state_path=load_state_path)


def build_bc(data_dir: str, spec: RLModuleSpec, rl: dict, seed: int) -> BCConfig:
    """Behaviour cloning with RLlib's offline API on demonstrations written by `policies.demos.write_demos`."""
    return (
        BCConfig()
        .environment(observation_space=OBS_SPACE, action_space=ACTION_SPACE)
        .env_runners(num_env_runners=0)
        .learners(num_learners=0)
        .offline_data(
            input_=[data_dir],
            dataset_num_iters_per_learner=rl["bc_updates_per_iteration"],
            map_batches_kwargs={"concurrency": 1, "num_cpus": 1},
            iter_batches_kwargs={"prefetch_batches": 1},
        )
        .training(train_batch_size_per_learner=rl["bc_batch_size"], lr=rl["bc_lr"])
        .rl_module(rl_module_spec=spec)
        .debugging(seed=seed)
    )


def build_ppo(skill: str, env_config: dict, spec: RLModuleSpec, rl: dict, seed: int) -> PPOConfig:
    return (
        PPOConfig()
        .environment(env_name(skill), env_config=env_config)
        .env_runners(
            num_env_runners=rl["num_env_runners"],
            num_envs_per_env_runner=rl["num_envs_per_env_runner"],
            rollout_fragment_length="auto",
        )
        .learners(num_learners=rl.get("num_learners", 0))
        .training(
            lr=rl["lr"],
            train_batch_size_per_learner=rl["train_batch_size"],
            minibatch_size=rl["minibatch_size"],
            num_epochs=rl["num_epochs"],
            entropy_coeff=rl["entropy_coeff"],
            clip_param=rl["clip_param"],
            gamma=rl["gamma"],
            lambda_=rl["lambda_"],
            vf_loss_coeff=rl["vf_loss_coeff"],
            vf_clip_param=100.0,
            use_kl_loss=False,
            grad_clip=0.5,
        )
        .rl_module(rl_module_spec=spec)
        .callbacks(SuccessMetric)
        .debugging(seed=seed)
    )

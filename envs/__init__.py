"""Gymnasium environments of intentloop; importing this package registers every env id.

import gymnasium as gym, intentloop.envs
env = gym.make("intentloop/Tabletop-v0", backend="mujoco", task="chain", chain_length=5)
env = gym.make("intentloop/Pick-v0", backend="pybullet", reward_type="sparse")
"""

from gymnasium.envs.registration import register, registry
from intentloop.envs.intents import DONE, Intent, InvalidIntent, parse_intent
from intentloop.envs.sim.base import BACKENDS
from intentloop.envs.tasks import Task, TaskSuite

SKILL_ENVS = {"pick": "Pick-v0", "place": "Place-v0", "push": "Push-v0"}

if "intentloop/Tabletop-v0" not in registry:
    register(id="intentloop/Tabletop-v0", entry_point="intentloop.envs.tabletop_env:TabletopEnv")
    for _skill, _name in SKILL_ENVS.items():
        register(
            id=f"intentloop/{_name}",
            entry_point="intentloop.envs.skill_env:SkillEnv",
            kwargs={"skill": _skill},
            max_episode_steps=50,
        )

__all__ = ["BACKENDS", "DONE", "Intent", "InvalidIntent", "SKILL_ENVS", "Task", "TaskSuite", "parse_intent"]

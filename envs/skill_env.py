"""Single-skill, goal-conditioned envs for RL: ``intentloop/Pick-v0``, ``Place-v0``, ``Push-v0``.

One intent per episode, sampled from the train or held-out compositions of the task suite. The robot
starts where a previous intent might have left it (``random_start``: anywhere over the workspace, low or
high, fingers open or closed, never inside a block; ``random_start=False`` starts at home), because in a
chain every skill starts from where the last one ended. ``Place`` starts with the block already in hand.

## Observation
Box (31,) float32, from `skill_observation`: EE position (3), EE velocity (3), finger opening (1), block
position (3), block velocity (3), block - EE (3), goal (3), goal - block (3), the other blocks relative to
the EE (3 x 3). The goal is `intentloop.envs.predicates.goal_position` of the intent.

## Action
As ``Tabletop-v0``: Box(-1, 1, (4,)), EE displacement and gripper command.

## Rewards
dense: reach = -|EE - block|, goal = -|block - goal|, success = 1 on success; each scaled by reward_scales.
sparse: success = 1 on success, else 0.
The episode terminates on success (the intent's own predicate); the time limit comes from the
registration (``max_episode_steps``).

## Version History
v0: initial release.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from intentloop.envs import predicates as P
from intentloop.envs import scene as S
from intentloop.envs.intents import Intent
from intentloop.envs.scene import BLOCKS
from intentloop.envs.tasks import TaskSuite
from intentloop.envs.world import WorldEnv, random_start

REWARD_TYPES = ("dense", "sparse")
PLACE_TARGETS = ("any", "zone", "block")
OBS_DIM = 31
DEFAULT_SCALES = {"reach": 0.5, "goal": 1.0, "success": 10.0}


def skill_observation(intent: Intent, obs: dict, ref: dict | None = None) -> np.ndarray:
    """The policy input of a skill for ``intent`` (31,): proprio, the block, the goal, the other blocks."""
    name = intent.args[0]
    proprio, ee = obs["proprio"], obs["proprio"][:3]
    row = obs["blocks"][BLOCKS.index(name)]
    block, goal = row[:3], P.goal_position(intent, obs, ref)
    others = [obs["blocks"][i, :3] - ee for i, b in enumerate(BLOCKS) if b != name]
    return np.concatenate([proprio, block, row[7:10], block - ee, goal, goal - block, *others]).astype(np.float32)


class SkillEnv(WorldEnv):
    def __init__(
        self,
        skill: str,
        backend: str = "mujoco",
        reward_type: str = "dense",
        split: str = "train",
        split_seed: int = 0,
        random_start: bool = True,
        target: str = "any",
        reward_scales: dict | None = None,
        frame_skip: int = 25,
        max_delta: float = 0.03,
        render_mode: str | None = None,
        render_size=256,
    ):
        if skill not in ("pick", "place", "push"):
            raise ValueError(f"unknown skill {skill!r}; single-skill envs exist for: pick, place, push")
        if reward_type not in REWARD_TYPES:
            raise ValueError(f"unknown reward_type {reward_type!r}; choose one of: {', '.join(REWARD_TYPES)}")
        if target not in PLACE_TARGETS:
            raise ValueError(f"unknown target {target!r}; choose one of: {', '.join(PLACE_TARGETS)}")
        unknown = set(reward_scales or {}) - set(DEFAULT_SCALES)
        if unknown:
            raise ValueError(f"unknown reward terms {sorted(unknown)}; known: {', '.join(DEFAULT_SCALES)}")
        self.skill, self.reward_type, self.target, self.random_start = skill, reward_type, target, random_start
        self.scales = {**DEFAULT_SCALES, **(reward_scales or {})}
        self.suite = TaskSuite(split, split_seed)
        self._make_world(backend, frame_skip, max_delta, render_mode, render_size)
        self.observation_space = spaces.Box(-10.0, 10.0, (OBS_DIM,), np.float32)  # meters and m/s
        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.intent: Intent | None = None
        self._ref: dict | None = None

    def _family(self) -> str:
        if self.skill != "place":
            return self.skill
        if self.target == "any":
            return ("put", "stack")[self.np_random.integers(2)]
        return "put" if self.target == "zone" else "stack"

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        layout, task = self.suite.sample_episode(self.np_random, self._family())
        self.intent = task.intents[-1]
        ee, q = random_start(self.np_random, layout) if self.random_start else (None, S.FINGER_OPEN)
        self.world.reset(layout, ee_pos=ee, finger_q=q)
        if self.skill == "place":
            self.world.grasp(self.intent.args[0])
        self._ref = self.world.state_obs()
        return skill_observation(self.intent, self._ref, self._ref), {"intent": str(self.intent), "is_success": False}

    def step(self, action):
        if self.intent is None:
            raise RuntimeError("call reset() before step()")
        self.world.apply(action)
        obs = self.world.state_obs()
        success = P.achieved(self.intent, obs, self._ref)
        if self.reward_type == "sparse":
            terms = {"success": float(success)}
        else:
            block = P.block_pos(obs, self.intent.args[0])
            goal = P.goal_position(self.intent, obs, self._ref)
            raw = {
                "reach": -float(np.linalg.norm(obs["proprio"][:3] - block)),
                "goal": -float(np.linalg.norm(block - goal)),
                "success": float(success),
            }
            terms = {k: self.scales[k] * v for k, v in raw.items()}
        info = {"intent": str(self.intent), "is_success": success, **{f"reward/{k}": v for k, v in terms.items()}}
        # truncated=False: the time limit comes from register(max_episode_steps=...)
        return skill_observation(self.intent, obs, self._ref), sum(terms.values()), success, False, info

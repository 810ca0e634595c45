"""``intentloop/Tabletop-v0``: the language-conditioned tabletop world, on MuJoCo or PyBullet.

## Scene
A gantry robot with a parallel gripper, 4 colored blocks and 3 colored target zones on a table, a front
camera. The layout and the task are sampled from the reset seed alone, so both backends see the same
episode for the same seed.

## Observation (Dict)
image (H, W, 3) uint8 from the front camera (absent with ``image=False``); proprio (7,): EE position,
EE velocity, finger opening; blocks (4, 13): position, quaternion wxyz, linear and angular velocity
(privileged); zones (3, 2): zone centers (privileged); instruction: the task in words.

## Action
Box(-1, 1, (4,)): EE displacement (dx, dy, dz) as a fraction of ``max_delta`` meters, and the gripper
command (-1 open ... +1 closed).

## Reward and termination
reward = number of subgoals newly achieved in order this step (``reward/progress`` in info); the episode
terminates once every subgoal is achieved, and is truncated after ``steps_per_intent`` steps per subgoal.

## Info
is_success, subgoals_done, n_subgoals, task (an `intentloop.envs.tasks.Task`), reward/progress.

## Version History
v0: initial release.
"""

from __future__ import annotations

import string

import numpy as np
from gymnasium import spaces
from intentloop.envs.predicates import achieved
from intentloop.envs.tasks import FAMILIES, Task, TaskSuite
from intentloop.envs.world import WorldEnv, image_shape

INSTRUCTION_CHARSET = string.ascii_letters + string.digits + " ,.;:'-_()"
MAX_INSTRUCTION = 400


class TabletopEnv(WorldEnv):
    def __init__(
        self,
        backend: str = "mujoco",
        task: str = "chain",
        chain_length: int = 1,
        split: str = "train",
        split_seed: int = 0,
        phrasings: str = "train",
        image: bool = True,
        image_size=96,
        frame_skip: int = 25,
        max_delta: float = 0.03,
        steps_per_intent: int = 80,
        render_mode: str | None = None,
        render_size=256,
    ):
        if task not in FAMILIES:
            raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(FAMILIES)}")
        self.suite = TaskSuite(split, split_seed, phrasings)
        self.family, self.chain_length = task, chain_length
        self.suite.sample_episode(np.random.default_rng(0), task, chain_length)  # fails now if no such task exists
        self.image_hw = image_shape(image_size) if image else None
        self.steps_per_intent = steps_per_intent
        self._make_world(backend, frame_skip, max_delta, render_mode, render_size)
        obs_spaces = dict(self.world.state_spaces())
        if self.image_hw:
            obs_spaces["image"] = spaces.Box(0, 255, (*self.image_hw, 3), np.uint8)
        obs_spaces["instruction"] = spaces.Text(MAX_INSTRUCTION, min_length=1, charset=INSTRUCTION_CHARSET)
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.task: Task | None = None
        self._ref: dict | None = None
        self._done, self._t = 0, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        layout, task = options.get("layout"), options.get("task")
        if layout is None:
            layout, sampled = self.suite.sample_episode(self.np_random, self.family, self.chain_length)
            task = task or sampled
        elif task is None:
            task = self.suite.sample(self.np_random, layout, self.family, self.chain_length)
        self.task = Task.from_dict(task) if isinstance(task, dict) else task
        self.world.reset(layout)
        self._done, self._t = 0, 0
        obs = self._obs()
        self._ref = obs
        return obs, self._info(0)

    def step(self, action):
        if self.task is None:
            raise RuntimeError("call reset() before step()")
        self.world.apply(action)
        self._t += 1
        obs = self._obs()
        before = self._done
        while self._done < len(self.task.intents) and achieved(self.task.intents[self._done], obs, self._ref):
            self._done += 1
            self._ref = obs  # the next subgoal is judged from the state in which it became active
        progress = self._done - before
        terminated = self._done == len(self.task.intents)
        truncated = not terminated and self._t >= self.steps_per_intent * len(self.task.intents)
        return obs, float(progress), terminated, truncated, self._info(progress)

    def _obs(self) -> dict:
        obs = self.world.state_obs()
        if self.image_hw:
            obs["image"] = self.world.sim.render(self.image_hw[1], self.image_hw[0])
        obs["instruction"] = self.task.instruction
        return obs

    def _info(self, progress: int) -> dict:
        n = len(self.task.intents)
        return {
            "is_success": self._done == n,
            "subgoals_done": self._done,
            "n_subgoals": n,
            "task": self.task,
            "reward/progress": float(progress),
        }

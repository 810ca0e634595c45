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

## Tasks and arranged scenes
Templated families (``pick``, ``push``, ``put``, ``stack``, ``chain``) start with every block on the table,
outside the zones, and spell their intents out. Goal-level families (``clear``, ``fill``, ``refer``,
``except``, ``count``, ``swap``; envs/goal_tasks.py) start **arranged**, seeded: blocks already in zones or
stacked two high, so what must be done depends on what the camera shows; they name a goal, judged on the state.

## Reward and termination
Templated families: subgoals are the task's intents, achieved in order (CALVIN); goal-level families: the
goal's conditions that hold now (envs/goals.py). reward = subgoals newly done this step (``reward/progress``);
the episode terminates once every subgoal is done (a goal: every condition holds and the blocks rest), and is
truncated after ``steps_per_intent`` steps per intent of the task's (reference) plan.

## Events and user feedback
``correct`` and ``perturb`` tasks carry an event (`Task.event`, envs/goal_tasks.py) fired once at its trigger:
a user correction (the goal becomes the corrected one, the utterance arrives in ``info["feedback"]``) or a
perturbation (a block teleported to a free spot on the table). ``env.unwrapped.say(text)`` queues an utterance
of your own for the next step's ``info["feedback"]``; empty, over-long or non-text feedback raises ValueError
and changes nothing.

## Info
feedback (the user's utterance that arrived this step, else ""), is_success, subgoals_done, n_subgoals, task
(an `intentloop.envs.tasks.Task`), reward/progress, and final_success: whether the end state satisfies the
task now (chains: the last subgoal on each block still holds, so a block knocked out of its zone afterwards
counts as undone; goals: the goal predicate).

## Vectorized
``gym.make_vec(id, n, "sync" | "async")``; async with shared memory too (envs/instruction_space.py). A process
that has rendered MuJoCo must start async sub-envs with ``vector_kwargs={"context": "spawn"}`` (EGL does not
survive ``fork``; envs/sim/mujoco_sim.py). Autoreset is gymnasium's default: the step after a sub-env ends
returns its reset observation with reward 0.

## Version History
v0: initial release.
"""

from __future__ import annotations

import string

import numpy as np
from gymnasium import spaces
from intentloop.envs import goals
from intentloop.envs import predicates as P
from intentloop.envs.instruction_space import Instruction
from intentloop.envs.predicates import achieved
from intentloop.envs.scene import BLOCK_HALF, BLOCKS, WORKSPACE_HIGH, WORKSPACE_LOW, ZONE_HALF
from intentloop.envs.tasks import FAMILIES, Task, TaskSuite
from intentloop.envs.world import WorldEnv, image_shape

INSTRUCTION_CHARSET = string.ascii_letters + string.digits + " ,.;:'-_()"
MAX_INSTRUCTION = 400
MAX_FEEDBACK = 200


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
        if steps_per_intent < 1:
            raise ValueError(f"steps_per_intent must be >= 1, got {steps_per_intent}")
        self.suite = TaskSuite(split, split_seed, phrasings)
        self.family, self.chain_length = task, chain_length
        self.suite.sample_episode(np.random.default_rng(0), task, chain_length)  # fails now if no such task exists
        self.image_hw = image_shape(image_size) if image else None
        self.steps_per_intent = steps_per_intent
        self._make_world(backend, frame_skip, max_delta, render_mode, render_size)
        obs_spaces = dict(self.world.state_spaces())
        if self.image_hw:
            obs_spaces["image"] = spaces.Box(0, 255, (*self.image_hw, 3), np.uint8)
        obs_spaces["instruction"] = Instruction(MAX_INSTRUCTION, min_length=1, charset=INSTRUCTION_CHARSET)
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.task: Task | None = None
        self._ref: dict | None = None
        self._start: dict | None = None
        self._refs: list[dict] = []  # per subgoal of a chain, the state when it became active
        self._goal: goals.Goal = ()  # the goal in force (a correction replaces the task's)
        self._pending: list[str] = []  # user feedback waiting for the next step
        self._fired, self._grasped_at = False, None  # the task's event; where the dropped block was grasped
        self._done, self._t = 0, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        layout, task = options.get("layout"), options.get("task")
        if layout is None:
            layout, sampled = self.suite.sample_episode(self.np_random, self.family, self.chain_length)
            task = task or sampled
        elif task is None:
            layout, task = self.suite.sample_on(self.np_random, layout, self.family, self.chain_length)
        self.task = Task.from_dict(task) if isinstance(task, dict) else task
        self.world.reset(layout)
        self._t = 0
        obs = self._obs()
        self._ref = self._start = obs
        self._refs = [obs]
        self._goal, self._pending, self._fired, self._grasped_at = self.task.goal, [], False, None
        self._done = goals.progress(self._goal, obs, obs) if self.task.is_goal else 0
        return obs, self._info(0, obs)

    def say(self, text) -> None:
        """Queue a user utterance; it reaches the planner through the next step's ``info["feedback"]``."""
        if not isinstance(text, str):
            raise ValueError(f"feedback must be text, got {type(text).__name__}")
        if not text.strip() or not text.isprintable():
            raise ValueError("feedback must be non-empty printable text")
        if len(text) > MAX_FEEDBACK:
            raise ValueError(f"feedback must be at most {MAX_FEEDBACK} characters, got {len(text)}")
        self._pending.append(text.strip())

    def step(self, action):
        if self.task is None:
            raise RuntimeError("call reset() before step()")
        self.world.apply(action)
        self._t += 1
        obs, said = self._fire_event(self._obs())
        feedback, self._pending = " ".join([*self._pending, said]).strip(), []
        before = self._done
        if self.task.is_goal:
            self._done = goals.progress(self._goal, obs, self._start)
            terminated = goals.goal_met(self._goal, obs, self._start)
        else:
            while self._done < len(self.task.intents) and achieved(self.task.intents[self._done], obs, self._ref):
                self._done += 1
                self._ref = obs  # the next subgoal is judged from the state in which it became active
                self._refs.append(obs)
            terminated = self._done == len(self.task.intents)
        progress = self._done - before
        truncated = not terminated and self._t >= self.steps_per_intent * max(1, len(self.task.intents))
        return (
            obs,
            float(progress),
            terminated,
            truncated,
            {**self._info(progress, obs, terminated), "feedback": feedback},
        )

    def _fire_event(self, obs: dict) -> tuple[dict, str]:
        """Fire the task's event once its trigger holds: (the observation after it, what the user said)."""
        event = self.task.event
        if not event or self._fired:
            return obs, ""
        kind, block = event[0], event[1]
        if kind == "correct" and P.held(obs, block):
            self._fired, self._goal = True, event[3]
            return obs, event[2]
        if kind == "drop" and P.held(obs, block):
            if self._grasped_at is None:
                self._grasped_at = P.block_pos(obs, block)[:2].copy()
            if np.linalg.norm(P.block_pos(obs, block)[:2] - self._grasped_at) < 0.04:
                return obs, ""
        elif not (kind == "displace" and P.held(obs, event[2])):
            return obs, ""
        self._fired = True
        spot = self._free_spot(obs, block)
        if spot is not None:
            self.world.sim.move_block(BLOCKS.index(block), np.array([*spot, BLOCK_HALF]))
            obs = self._obs()
        return obs, ""

    def _free_spot(self, obs: dict, block: str) -> np.ndarray | None:
        """A seeded point on the table outside the zones, clear of the other blocks and the gripper."""
        others = [P.block_pos(obs, b)[:2] for b in BLOCKS if b != block] + [obs["proprio"][:2]]
        for _ in range(200):
            xy = self.np_random.uniform(WORKSPACE_LOW + 0.02, WORKSPACE_HIGH - 0.02)
            if all(np.max(np.abs(xy - z)) >= ZONE_HALF + BLOCK_HALF + 0.01 for z in obs["zones"]) and all(
                np.linalg.norm(xy - p) >= 0.1 for p in others
            ):
                return xy
        return None

    def _obs(self) -> dict:
        obs = self.world.state_obs()
        if self.image_hw:
            obs["image"] = self.world.sim.render(self.image_hw[1], self.image_hw[0])
        obs["instruction"] = self.task.instruction
        return obs

    def _final_success(self, obs: dict) -> bool:
        """The end state satisfies the task: a goal's predicate, or a chain's last subgoal on every block."""
        if self.task.is_goal:
            return goals.goal_met(self._goal, obs, self._start)
        intents = self.task.intents
        if self._done < len(intents):
            return False
        last = {i.obj: k for k, i in enumerate(intents)}  # the last subgoal acting on each block
        return all(achieved(intents[k], obs, self._refs[k]) for k in last.values())

    def _info(self, progress: int, obs: dict, met: bool | None = None) -> dict:
        n = len(self._goal) if self.task.is_goal else len(self.task.intents)
        success = bool(met) if self.task.is_goal else self._done == n
        return {
            "is_success": success,
            "final_success": self._final_success(obs),
            "subgoals_done": self._done,
            "n_subgoals": n,
            "task": self.task,
            "reward/progress": float(progress),
            "feedback": "",
        }

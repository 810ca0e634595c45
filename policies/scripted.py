"""Scripted experts: one state-feedback controller per skill, reading privileged state.

Each expert is reactive: its action depends only on the current observation and the intent (plus the
state when the intent started, for ``push``), so it recovers from slips instead of replaying a script.
They prove the world is solvable and produce demonstrations for the learned skills.
"""

from __future__ import annotations

import numpy as np
from intentloop.envs import predicates as P
from intentloop.envs.intents import DIRECTIONS, Intent
from intentloop.envs.scene import BLOCK_HALF, EE_LOW, FINGER_HALF, FINGER_OPEN

OPEN, CLOSE = -1.0, 1.0
SAFE_Z = 0.115  # travel height with empty fingers: fingertips clear a stack of two blocks
CARRY_Z = 0.135  # travel height with a block in hand: it clears a stack of two blocks
GRASP_Z = EE_LOW[2]
PUSH_Z = 0.026
PUSH_SPEED = 0.012  # EE travel per step while pushing; faster kicks the block off the table
PUSH_BACKOFF = BLOCK_HALF * 1.3 + FINGER_HALF[0] + 0.02  # EE distance behind the block center before a push


def _hold(obs: dict) -> float:
    """Keep the fingers as they are: opening or closing them next to a block would kick it away."""
    return OPEN if obs["proprio"][6] > 0.5 * FINGER_OPEN else CLOSE


class ScriptedSkill:
    """``reset(intent, obs)`` then ``act(obs)`` each step; ``max_delta`` must match the env's."""

    name = "scripted"

    def __init__(self, max_delta: float = 0.03, gain: float = 1.0):
        self.max_delta, self.gain = max_delta, gain
        self.intent: Intent | None = None
        self.ref: dict | None = None

    def reset(self, intent: Intent, obs: dict) -> None:
        if intent.skill not in ("pick", "place", "push"):
            raise ValueError(f"no scripted expert for skill {intent.skill!r}")
        self.intent, self.ref = intent, obs

    def act(self, obs: dict) -> np.ndarray:
        if self.intent is None:
            raise RuntimeError("call reset(intent, obs) before act()")
        target, grip = getattr(self, f"_{self.intent.skill}")(obs)
        delta = self.gain * (target - obs["proprio"][:3]) / self.max_delta
        return np.array([*np.clip(delta, -1.0, 1.0), grip], np.float32)

    # Each controller returns (EE target position, gripper command).
    def _travel(self, ee: np.ndarray, goal_xy: np.ndarray, height: float) -> np.ndarray | None:
        """Rise to ``height``, then move over ``goal_xy``; None once the EE is above it."""
        if np.linalg.norm(goal_xy - ee[:2]) < 0.006:
            return None
        if ee[2] < height - 0.015 and np.linalg.norm(goal_xy - ee[:2]) > 0.02:
            return np.array([ee[0], ee[1], height])
        return np.array([goal_xy[0], goal_xy[1], max(height, ee[2])])

    def _pick(self, obs):
        name = self.intent.args[0]
        ee, block = obs["proprio"][:3], P.block_pos(obs, name)
        if P.grasped(obs, name):
            return np.array([block[0], block[1], P.LIFT_HEIGHT + 0.04]), CLOSE
        over = np.linalg.norm(block[:2] - ee[:2]) < 0.008
        if over and ee[2] < block[2] + 0.006:  # at grasp height: close, holding the height (a stacked block's too)
            return np.array([block[0], block[1], max(GRASP_Z, block[2])]), CLOSE
        if not over and ee[2] < SAFE_Z - 0.015:
            return np.array([ee[0], ee[1], SAFE_Z]), _hold(obs)  # low and off target: rise first
        target = self._travel(ee, block[:2], SAFE_Z)
        if target is None:
            return np.array([block[0], block[1], max(GRASP_Z, block[2])]), OPEN
        return target, OPEN

    def _place(self, obs):
        name = self.intent.args[0]
        ee, block = obs["proprio"][:3], P.block_pos(obs, name)
        if not P.grasped(obs, name):
            return np.array([ee[0], ee[1], ee[2] + 0.05]), OPEN  # released (or lost): open and withdraw
        goal = P.goal_position(self.intent, obs)
        offset = ee - block  # the block's place in the hand
        target = self._travel(block, goal[:2], CARRY_Z)
        if target is not None:
            return target + offset, CLOSE
        if block[2] > goal[2] + 0.004:
            return np.array([goal[0], goal[1], goal[2] + 0.002]) + offset, CLOSE
        return ee, OPEN

    def _push(self, obs):
        name, direction = self.intent.args
        d = np.array(DIRECTIONS[direction])
        ee, block = obs["proprio"][:3], P.block_pos(obs, name)
        rel = block[:2] - ee[:2]
        ahead, lateral = rel @ d, rel @ np.array([-d[1], d[0]])
        if ee[2] < PUSH_Z + 0.015 and ahead > 0.02 and abs(lateral) < 0.02:  # in contact posture: push through
            aim = ee[:2] + d * PUSH_SPEED + 0.5 * lateral * np.array([-d[1], d[0]])  # slow, steered to the center line
            return np.array([aim[0], aim[1], PUSH_Z]), CLOSE
        start = block[:2] - d * PUSH_BACKOFF
        if ee[2] < SAFE_Z - 0.015 and np.linalg.norm(start - ee[:2]) > 0.01:
            return np.array([ee[0], ee[1], SAFE_Z]), _hold(obs)  # low but out of posture: rise first
        target = self._travel(ee, start, SAFE_Z)
        if target is None:
            return np.array([start[0], start[1], PUSH_Z]), CLOSE
        return target, CLOSE

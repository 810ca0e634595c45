"""Success predicates over simulator state, written once for every backend.

They read the privileged part of an observation: ``proprio`` = EE position (3), EE velocity (3), finger
opening q (1); ``blocks`` = per block position (3), quaternion wxyz (4), linear (3) and angular (3)
velocity; ``zones`` = zone centers (x, y). An intent's predicate may also need the state at the moment the
intent started (``ref``): ``push`` is judged by the displacement since then.
"""

from __future__ import annotations

import numpy as np
from intentloop.envs.intents import DIRECTIONS, Intent
from intentloop.envs.scene import BLOCK_HALF, BLOCKS, ZONE_HALF, ZONES

LIFT_HEIGHT = 0.07  # a picked block's center is at least this high
PUSH_DISTANCE = 0.06  # a push succeeds once the block moved this far along the direction
PUSH_TRAVEL = 0.09  # how far the push goal lies from the start
REST_SPEED = 0.05  # [m/s] a placed block must have settled
STACK_TOLERANCE = 0.022  # xy offset allowed between a stacked block and its base


def block_pos(obs: dict, name: str) -> np.ndarray:
    return obs["blocks"][BLOCKS.index(name), :3]


def grasped(obs: dict, name: str) -> bool:
    """The block sits between closed fingers."""
    ee, q = obs["proprio"][:3], obs["proprio"][6]
    offset = block_pos(obs, name) - ee
    return bool(np.hypot(offset[0], offset[1]) < 0.025 and abs(offset[2]) < 0.03 and q < BLOCK_HALF + 0.004)


def held(obs: dict, name: str) -> bool:
    """Grasped and off the table."""
    return grasped(obs, name) and block_pos(obs, name)[2] > BLOCK_HALF + 0.01


def resting(obs: dict, name: str) -> bool:
    return not grasped(obs, name) and float(np.linalg.norm(obs["blocks"][BLOCKS.index(name), 7:10])) < REST_SPEED


def on_table(obs: dict, name: str) -> bool:
    return block_pos(obs, name)[2] < BLOCK_HALF + 0.006


def in_zone(obs: dict, name: str, zone: str) -> bool:
    offset = block_pos(obs, name)[:2] - obs["zones"][ZONES.index(zone)]
    return bool(np.all(np.abs(offset) < ZONE_HALF)) and on_table(obs, name)


def on_block(obs: dict, name: str, base: str) -> bool:
    top, bottom = block_pos(obs, name), block_pos(obs, base)
    return bool(
        np.linalg.norm(top[:2] - bottom[:2]) < STACK_TOLERANCE and abs(top[2] - bottom[2] - 2 * BLOCK_HALF) < 0.008
    )


def achieved(intent: Intent, obs: dict, ref: dict | None = None) -> bool:
    """Whether ``intent``'s own postcondition holds in ``obs`` (``ref``: the state when it started)."""
    if intent.skill == "pick":
        return held(obs, intent.args[0]) and block_pos(obs, intent.args[0])[2] >= LIFT_HEIGHT
    if intent.skill == "place":
        name, target = intent.args
        placed = in_zone(obs, name, target) if target in ZONES else on_block(obs, name, target)
        return placed and resting(obs, name)
    if intent.skill == "push":
        if ref is None:
            raise ValueError(f"{intent} is judged against the state when it started; pass `ref`")
        name, direction = intent.args
        moved = block_pos(obs, name)[:2] - block_pos(ref, name)[:2]
        return float(moved @ np.array(DIRECTIONS[direction])) >= PUSH_DISTANCE and on_table(obs, name)
    if intent.skill == "done":
        return True
    raise ValueError(f"no predicate for skill {intent.skill!r}")


def goal_position(intent: Intent, obs: dict, ref: dict | None = None) -> np.ndarray:
    """Where the intent's block should end up (3,): the goal vector a skill policy is conditioned on."""
    name = intent.args[0]
    if intent.skill == "pick":
        start = block_pos(ref if ref is not None else obs, name)
        return np.array([start[0], start[1], LIFT_HEIGHT + 0.03])
    if intent.skill == "place":
        target = intent.args[1]
        if target in ZONES:
            x, y = obs["zones"][ZONES.index(target)]
            return np.array([x, y, BLOCK_HALF])
        base = block_pos(obs, target)
        return np.array([base[0], base[1], base[2] + 2 * BLOCK_HALF])
    if intent.skill == "push":
        start = block_pos(ref if ref is not None else obs, name)
        return np.array([*(start[:2] + PUSH_TRAVEL * np.array(DIRECTIONS[intent.args[1]])), BLOCK_HALF])
    raise ValueError(f"{intent} has no goal position")

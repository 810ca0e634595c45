"""Goals over the final state, and the oracle that reaches them by planning from privileged state.

A goal-level task ("clear the blue zone", "put every block except the green one in a zone") names no intents:
it is judged by its **goal**, a tuple of conditions on the scene, each a tuple of strings (so it is JSON)::

    ("in", b, z)       b rests on the table in zone z            ("on", b, t)     b rests on block t
    ("zoned", b)       b rests in some zone                       ("out", b)       b's center is over no zone
    ("empty", z)       no block's center is over zone z           ("filled", z)    some block rests in zone z
    ("stacks", "n")    at least n blocks rest on another block    ("held", b)      b is picked up (lifted)
    ("moved", b, d)    b moved PUSH_DISTANCE along direction d since the episode started, and is on the table

A goal is met when every condition holds and the gripper holds no block that is not meant to be held.
`next_intent` is the scripted oracle's System-2 step for a goal: it reads the privileged state, so it replans
after a slip, a detour or a displaced block. `imagine` applies an intent's intended effect to a state without
physics, so a task sampler can check that the oracle reaches the goal (and find its reference plan) before an
episode starts."""

from __future__ import annotations

import numpy as np
from intentloop.envs import predicates as P
from intentloop.envs.intents import DIRECTIONS, DONE, Intent
from intentloop.envs.scene import (
    BLOCK_HALF,
    BLOCKS,
    EE_HOME,
    FINGER_CLOSED,
    FINGER_OPEN,
    WORKSPACE_HIGH,
    WORKSPACE_LOW,
    ZONE_HALF,
    ZONES,
    Layout,
)

Goal = tuple[tuple[str, ...], ...]
ARITY = {"in": 2, "on": 2, "zoned": 1, "out": 1, "empty": 1, "filled": 1, "stacks": 1, "held": 1, "moved": 2}


def check_goal(goal) -> Goal:
    """The goal as a tuple of string tuples; raises ValueError naming a malformed condition."""
    out = []
    for cond in goal:
        cond = tuple(str(a) for a in cond)
        if not cond or cond[0] not in ARITY or len(cond) != ARITY[cond[0]] + 1:
            raise ValueError(f"malformed goal condition {cond!r}; kinds: {', '.join(ARITY)}")
        out.append(cond)
    return tuple(out)


# -- the scene, read from an observation ------------------------------------------------------------------
def over(obs: dict, block: str, zone: str) -> bool:
    """The block's center lies over the zone's square, at any height."""
    return bool(np.all(np.abs(P.block_pos(obs, block)[:2] - obs["zones"][ZONES.index(zone)]) < ZONE_HALF))


def carrying(obs: dict) -> str | None:
    """The block held off the table, if any (the one nearest the fingers: a block under it may look held too)."""
    held = [b for b in BLOCKS if P.held(obs, b)]
    return min(held, key=lambda b: np.linalg.norm(P.block_pos(obs, b) - obs["proprio"][:3])) if held else None


def tops(obs: dict, base: str) -> list[str]:
    """Blocks resting on ``base``."""
    return [b for b in BLOCKS if b != base and P.on_block(obs, b, base) and not P.grasped(obs, b)]


def base_of(obs: dict, block: str) -> str | None:
    return next((b for b in BLOCKS if b != block and P.on_block(obs, block, b)), None)


def occupant(obs: dict, zone: str, ignore: str | None = None) -> str | None:
    """The topmost block over ``zone`` other than ``ignore`` (None if the zone is free for it)."""
    inside = [b for b in BLOCKS if b != ignore and over(obs, b, zone) and not P.held(obs, b)]
    return max(inside, key=lambda b: P.block_pos(obs, b)[2]) if inside else None


def push_ok(xy: dict[str, np.ndarray], zones: dict[str, np.ndarray], block: str, direction: str) -> bool:
    """A push of ``block`` by PUSH_TRAVEL stays in the workspace, ends outside every zone, and its path (and
    the point behind the block where the fingers start) keeps clear of every other block."""
    d = np.array(DIRECTIONS[direction])
    start, end = xy[block], xy[block] + P.PUSH_TRAVEL * d
    if np.any(end < WORKSPACE_LOW) or np.any(end > WORKSPACE_HIGH):
        return False
    if any(np.max(np.abs(end - z)) < ZONE_HALF + BLOCK_HALF for z in zones.values()):
        return False

    def clear(point, radius):
        return all(np.linalg.norm(point - p) >= radius for b, p in xy.items() if b != block)

    path = [start + t * (end + 0.03 * d - start) for t in np.linspace(0, 1, 6)]
    return clear(start - 0.06 * d, 0.065) and all(clear(p, 0.07) for p in path)


def _push_out(obs: dict, block: str) -> str | None:
    xy = {b: P.block_pos(obs, b)[:2] for b in BLOCKS}
    zones = {z: obs["zones"][i] for i, z in enumerate(ZONES)}
    return next((d for d in DIRECTIONS if push_ok(xy, zones, block, d)), None)


# -- the goal predicate ------------------------------------------------------------------------------------
def holds(cond: tuple[str, ...], obs: dict, start: dict) -> bool:
    kind, args = cond[0], cond[1:]
    if kind == "in":
        return P.in_zone(obs, args[0], args[1]) and not P.grasped(obs, args[0])
    if kind == "on":
        return P.on_block(obs, args[0], args[1]) and not P.grasped(obs, args[0])
    if kind == "zoned":
        return any(P.in_zone(obs, args[0], z) for z in ZONES) and not P.grasped(obs, args[0])
    if kind == "out":
        return not any(over(obs, args[0], z) for z in ZONES)
    if kind == "empty":
        return not any(over(obs, b, args[0]) for b in BLOCKS)
    if kind == "filled":
        return any(P.in_zone(obs, b, args[0]) and not P.grasped(obs, b) for b in BLOCKS)
    if kind == "stacks":
        return sum(base_of(obs, b) is not None and not P.grasped(obs, b) for b in BLOCKS) >= int(args[0])
    if kind == "held":
        return P.achieved(Intent("pick", (args[0],)), obs)
    if kind == "moved":
        return P.achieved(Intent("push", args), obs, start)
    raise ValueError(f"unknown goal condition {cond!r}")


def progress(goal: Goal, obs: dict, start: dict) -> int:
    """How many of the goal's conditions hold now."""
    return int(sum(bool(holds(c, obs, start)) for c in goal))


def goal_met(goal: Goal, obs: dict, start: dict) -> bool:
    """Every condition holds, and the gripper holds no block that is not meant to be held."""
    keep = {c[1] for c in goal if c[0] == "held"}
    return bool(all(holds(c, obs, start) for c in goal)) and not any(P.grasped(obs, b) for b in BLOCKS if b not in keep)


# -- the oracle --------------------------------------------------------------------------------------------
def _pick(obs: dict, block: str) -> Intent:
    """Pick ``block``, or first whatever rests on it."""
    above = tops(obs, block)
    return _pick(obs, above[0]) if above else Intent("pick", (block,))


SUBJECT_KINDS = ("in", "on", "zoned", "held", "moved")  # conditions about one block they name first


def _subjects(conds) -> set[str]:
    return {c[1] for c in conds if c[0] in SUBJECT_KINDS}


def _bound(goal: Goal) -> set[str]:
    """Blocks a condition names: spare blocks are the others."""
    return _subjects(goal) | {c[2] for c in goal if c[0] == "on"}


def _singles(obs: dict, ignore: str | None = None) -> list[str]:
    """Blocks on the table with nothing on them and not in the gripper."""
    return [b for b in BLOCKS if b != ignore and P.on_table(obs, b) and not tops(obs, b) and not P.grasped(obs, b)]


def _step(cond: tuple[str, ...], goal: Goal, obs: dict, start: dict) -> Intent | None:
    """The next intent towards one unmet condition (None if it cannot be worked on now)."""
    kind, args = cond[0], cond[1:]
    if kind == "in":
        other = occupant(obs, args[1], ignore=args[0])
        return _pick(obs, other or args[0])
    if kind == "on":
        above = [b for b in tops(obs, args[1]) if b != args[0]]
        return _pick(obs, above[0] if above else args[0])
    if kind == "zoned":
        return _pick(obs, args[0]) if any(occupant(obs, z, args[0]) is None for z in ZONES) else None
    if kind == "out":
        direction = _push_out(obs, args[0])
        if direction is not None and not tops(obs, args[0]) and P.on_table(obs, args[0]):
            return Intent("push", (args[0], direction))
        return _pick(obs, args[0])
    if kind == "empty":
        other = occupant(obs, args[0])
        return None if other is None else _pick(obs, other)
    if kind == "filled":
        bound = _bound(goal)
        spare = [b for b in _singles(obs) if b not in bound and not any(over(obs, b, z) for z in ZONES)]
        center = obs["zones"][ZONES.index(args[0])]
        return _pick(obs, min(spare, key=lambda b: np.linalg.norm(P.block_pos(obs, b)[:2] - center))) if spare else None
    if kind == "stacks":
        free = [b for b in _singles(obs) if base_of(obs, b) is None]
        return _pick(obs, free[0]) if len(free) >= 2 else None
    if kind == "held":
        return _pick(obs, args[0])
    if kind == "moved":
        return _pick(obs, tops(obs, args[0])[0]) if tops(obs, args[0]) else Intent("push", args)
    raise ValueError(f"unknown goal condition {cond!r}")


def _destination(goal: Goal, obs: dict, start: dict, block: str) -> str:
    """Where the carried ``block`` goes: its own target if free, a zone or base some condition needs,
    else out of the way (a free zone nobody needs, else on top of a block nothing needs)."""
    unmet = [c for c in goal if not holds(c, obs, start)]
    for c in goal:
        if c[:2] == ("in", block) and occupant(obs, c[2], block) is None:
            return c[2]
        if c[:2] == ("on", block) and not [b for b in tops(obs, c[2]) if b != block]:
            return c[2]
    free = [z for z in ZONES if occupant(obs, z, block) is None]
    if ("zoned", block) in goal and free:
        return free[0]
    if ("out", block) not in goal:
        for c in unmet:
            if c[0] == "filled" and c[1] in free:
                return c[1]
    if any(c[0] == "stacks" for c in unmet):
        bases = _singles(obs, block)
        if bases:
            return bases[0]
    wanted = {c[-1] for c in goal if c[0] in ("in", "empty")}
    if ("out", block) not in goal:
        spare = [z for z in free if z not in wanted]
        if spare:
            return spare[0]
    moving = _subjects(unmet)
    targets = {c[2] for c in goal if c[0] == "on"}
    for base in _singles(obs, block):
        zoned = [z for z in ZONES if over(obs, base, z)]
        if base in moving or base in targets or wanted & set(zoned) or (("out", block) in goal and zoned):
            continue
        return base
    return (free or list(ZONES))[0]


def next_intent(goal: Goal, obs: dict, start: dict) -> Intent:
    """The oracle's next intent towards ``goal`` from the privileged state ``obs`` (``start``: the state when
    the episode began, for ``moved``); ``done()`` once the goal is met."""
    held = carrying(obs)
    unmet = [c for c in goal if not holds(c, obs, start)]
    if held is not None and not (("held", held) in goal and len(unmet) == 0):
        return Intent("place", (held, _destination(goal, obs, start, held)))
    for cond in unmet:
        intent = _step(cond, goal, obs, start)
        if intent is not None:
            return intent
    return DONE


# -- imagination: intended effects without physics ---------------------------------------------------------
def state_from_layout(layout: Layout) -> dict:
    """The observation's state arrays for a layout at rest, the robot at home with open fingers."""
    blocks = np.zeros((len(BLOCKS), 13), np.float32)
    blocks[:, :2], blocks[:, 2] = layout.blocks[:, :2], layout.block_z()
    blocks[:, 3], blocks[:, 6] = np.cos(layout.blocks[:, 2] / 2), np.sin(layout.blocks[:, 2] / 2)
    proprio = np.array([*EE_HOME, 0, 0, 0, FINGER_OPEN], np.float32)
    return {"proprio": proprio, "blocks": blocks, "zones": layout.zones.astype(np.float32)}


def imagine(obs: dict, intent: Intent) -> dict:
    """The state after ``intent`` did what it is meant to, everything at rest (no physics, no failures)."""
    out = {"proprio": obs["proprio"].copy(), "blocks": obs["blocks"].copy(), "zones": obs["zones"]}
    if intent.is_done:
        return out
    i = BLOCKS.index(intent.args[0])
    pos = out["blocks"][i, :3]
    if intent.skill == "pick":
        pos[2] = P.LIFT_HEIGHT + 0.04
        out["proprio"][:3], out["proprio"][6] = pos, BLOCK_HALF
    elif intent.skill == "place":
        pos[:] = P.goal_position(intent, obs)
        out["proprio"][:3], out["proprio"][6] = pos + [0.0, 0.0, 0.06], FINGER_OPEN
    else:  # push
        pos[:2] += P.PUSH_TRAVEL * np.array(DIRECTIONS[intent.args[1]])
        out["proprio"][:3], out["proprio"][6] = [pos[0], pos[1], 0.2], FINGER_CLOSED
    out["blocks"][i, :3] = pos
    out["blocks"][:, 7:] = 0.0
    return out


def reference_plan(goal: Goal, start: dict, max_intents: int = 10) -> list[Intent] | None:
    """The oracle's intents from ``start`` to the goal, imagined; None if it does not get there."""
    obs, plan = start, []
    for _ in range(max_intents):
        intent = next_intent(goal, obs, start)
        if intent.is_done:
            return plan if goal_met(goal, obs, start) else None
        plan.append(intent)
        obs = imagine(obs, intent)
    return None

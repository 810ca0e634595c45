"""Intent contracts: what must hold before a skill may run (preconditions) and what its success means
(postcondition).

Every precondition is a named check over the observation dict (the privileged state, see
`intentloop.envs.predicates`): it returns None when it holds and a short reason when it does not. The
postcondition of every skill is its success predicate, `intentloop.envs.predicates.achieved`. The rules are
geometry, not task knowledge, so every intent the oracle planner emits in a feasible task passes them:

| skill | rule | rejects |
|---|---|---|
| pick(b) | pick_hand_free | the gripper carries another block (holds it off the table) |
| | pick_not_in_hand | b is already picked (in the gripper, lifted) |
| | pick_clear_top | a block sits on top of b |
| | pick_reachable | b lies outside the end-effector's reach |
| place(b, t) | place_in_hand | b is not in the gripper |
| | place_distinct | t is b |
| | place_target_free | t is a block in the gripper or with a block on top, or a zone whose center another block takes |
| | place_reachable | the place goal on t lies outside the end-effector's reach |
| push(b, d) | push_hand_free | the gripper carries a block |
| | push_on_table | b is not on the table (it sits on a block, or is lifted) |
| | push_clear_top | a block sits on top of b |
| | push_reachable | b, or the point behind it where the closed fingers touch it, lies outside the reach |
| | push_in_workspace | the point where the push succeeds (PUSH_DISTANCE along d) lies outside the workspace and farther
  out than b is now |

``done()`` has no preconditions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from intentloop.envs import predicates as P
from intentloop.envs.intents import DIRECTIONS, Intent
from intentloop.envs.scene import (
    BLOCK_HALF,
    BLOCKS,
    EE_HIGH,
    EE_LOW,
    FINGER_HALF,
    WORKSPACE_HIGH,
    WORKSPACE_LOW,
    ZONES,
)

FOOTPRINT = 2 * BLOCK_HALF  # two block centers closer than this (in xy) overlap
PUSH_CONTACT = BLOCK_HALF + 2 * FINGER_HALF[1]  # EE distance behind a block's center when the closed fingers touch it


@dataclass(frozen=True)
class Violation:
    """A broken rule: its name and why, e.g. ``place_in_hand: red_block is not in the gripper``."""

    rule: str
    why: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.why}"


Check = Callable[[Intent, dict], "str | None"]


@dataclass(frozen=True)
class Precondition:
    name: str
    check: Check  # (intent, obs) -> None if it holds, else the reason


@dataclass(frozen=True)
class Contract:
    skill: str
    preconditions: tuple[Precondition, ...]
    postcondition: Callable[..., bool] = P.achieved  # (intent, obs, ref) -> bool

    def violations(self, intent: Intent, obs: dict) -> list[Violation]:
        out = []
        for pre in self.preconditions:
            why = pre.check(intent, obs)
            if why is not None:
                out.append(Violation(pre.name, why))
        return out


# -- geometry over the observation -------------------------------------------------------------------------
def carried(obs: dict) -> list[str]:
    """Blocks the gripper holds off the table (a block merely between closed fingers on the table is not
    carried: opening the fingers lets it go where it is)."""
    return [b for b in BLOCKS if P.held(obs, b)]


def on_top_of(obs: dict, base: str) -> list[str]:
    """Blocks resting on ``base``: over its footprint, one block higher, not in the gripper."""
    below = P.block_pos(obs, base)
    out = []
    for b in BLOCKS:
        offset = P.block_pos(obs, b) - below
        if b != base and np.hypot(*offset[:2]) < FOOTPRINT and BLOCK_HALF < offset[2] < 3 * BLOCK_HALF:
            if not P.grasped(obs, b):
                out.append(b)
    return out


def stack_height(obs: dict, top: str) -> int:
    """How many blocks the stack ending in ``top`` has, ``top`` included (1: it stands on the table)."""
    for b in BLOCKS:
        if top in on_top_of(obs, b):
            return 1 + stack_height(obs, b)
    return 1


def reachable(point: np.ndarray) -> bool:
    """Whether the end-effector can bring a block's center to ``point`` (3,)."""
    low = np.array([EE_LOW[0], EE_LOW[1], EE_LOW[2] - BLOCK_HALF])
    return bool(np.all(point >= low - 1e-9) and np.all(point <= EE_HIGH + 1e-9))


def outside_workspace(xy: np.ndarray) -> float:
    """How far ``xy`` lies outside the workspace box (0 inside)."""
    return float(np.linalg.norm(np.maximum(0.0, np.maximum(WORKSPACE_LOW - xy, xy - WORKSPACE_HIGH))))


def _xy(p: np.ndarray) -> str:
    return f"({p[0]:.2f}, {p[1]:.2f})"


# -- the checks ---------------------------------------------------------------------------------------------
def hand_free(intent: Intent, obs: dict) -> str | None:
    others = [b for b in carried(obs) if not (intent.skill == "pick" and b == intent.args[0])]
    return f"the gripper carries {others[0]}" if others else None


def not_picked(intent: Intent, obs: dict) -> str | None:
    return f"{intent.args[0]} is already picked up" if P.achieved(intent, obs) else None


def clear_top(intent: Intent, obs: dict) -> str | None:
    top = on_top_of(obs, intent.args[0])
    return f"{top[0]} is on top of {intent.args[0]}" if top else None


def block_reachable(intent: Intent, obs: dict) -> str | None:
    pos = P.block_pos(obs, intent.args[0])
    return None if reachable(pos) else f"{intent.args[0]} at {_xy(pos)} is out of the robot's reach"


def in_hand(intent: Intent, obs: dict) -> str | None:
    return None if P.grasped(obs, intent.args[0]) else f"{intent.args[0]} is not in the gripper"


def distinct(intent: Intent, obs: dict) -> str | None:
    return "a block cannot be placed on itself" if intent.args[0] == intent.args[1] else None


def target_free(intent: Intent, obs: dict) -> str | None:
    block, target = intent.args
    if target in ZONES:
        center = obs["zones"][ZONES.index(target)]
        for b in BLOCKS:
            if b != block and np.hypot(*(P.block_pos(obs, b)[:2] - center)) < FOOTPRINT and P.on_table(obs, b):
                return f"{b} takes the center of {target}"
        return None
    if P.grasped(obs, target):
        return f"{target} is in the gripper"
    top = [b for b in on_top_of(obs, target) if b != block]
    return f"{top[0]} is on top of {target}" if top else None


def pusher_reachable(intent: Intent, obs: dict) -> str | None:
    block = P.block_pos(obs, intent.args[0])
    if not reachable(block):
        return f"{intent.args[0]} at {_xy(block)} is out of the robot's reach"
    contact = block - PUSH_CONTACT * np.array([*DIRECTIONS[intent.args[1]], 0.0])
    if not reachable(contact):
        return f"the robot cannot reach behind {intent.args[0]} at {_xy(block)} to push it {intent.args[1]}"
    return None


def goal_reachable(intent: Intent, obs: dict) -> str | None:
    goal = P.goal_position(intent, obs)
    return None if reachable(goal) else f"the goal {_xy(goal)} on {intent.args[1]} is out of the robot's reach"


def on_table(intent: Intent, obs: dict) -> str | None:
    return None if P.on_table(obs, intent.args[0]) else f"{intent.args[0]} is not on the table"


def stays_in_workspace(intent: Intent, obs: dict) -> str | None:
    start = P.block_pos(obs, intent.args[0])[:2]
    end = start + P.PUSH_DISTANCE * np.array(DIRECTIONS[intent.args[1]])
    if outside_workspace(end) > 1e-9 and outside_workspace(end) >= outside_workspace(start):
        return f"pushing {intent.args[0]} {intent.args[1]} from {_xy(start)} takes it out of the workspace"
    return None


CONTRACTS: dict[str, Contract] = {
    "pick": Contract(
        "pick",
        (
            Precondition("pick_hand_free", hand_free),
            Precondition("pick_not_in_hand", not_picked),
            Precondition("pick_clear_top", clear_top),
            Precondition("pick_reachable", block_reachable),
        ),
    ),
    "place": Contract(
        "place",
        (
            Precondition("place_in_hand", in_hand),
            Precondition("place_distinct", distinct),
            Precondition("place_target_free", target_free),
            Precondition("place_reachable", goal_reachable),
        ),
    ),
    "push": Contract(
        "push",
        (
            Precondition("push_hand_free", hand_free),
            Precondition("push_on_table", on_table),
            Precondition("push_clear_top", clear_top),
            Precondition("push_reachable", pusher_reachable),
            Precondition("push_in_workspace", stays_in_workspace),
        ),
    ),
    "done": Contract("done", ()),
}
RULES = tuple(p.name for c in CONTRACTS.values() for p in c.preconditions)


def check_contract(intent: Intent, obs: dict) -> list[Violation]:
    """Every precondition of ``intent``'s skill that does not hold in ``obs``, in the contract's order."""
    if intent.skill not in CONTRACTS:
        raise ValueError(f"no contract for skill {intent.skill!r}; known: {', '.join(CONTRACTS)}")
    return CONTRACTS[intent.skill].violations(intent, obs)

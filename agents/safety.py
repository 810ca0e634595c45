"""A configurable safety rule set: intents the robot must never run, whatever the planner says.

Rules (each rejection names its rule):

| rule | rejects |
|---|---|
| forbidden_intent | an intent matching one of the ``forbidden`` patterns |
| workspace_limit | an intent sending the end-effector or a block out of the box ``workspace_low``..``workspace_high`` |
| height_limit | an intent whose goal lies above ``max_height`` |
| stack_height_limit | a place that would build a stack of more than ``max_stack_height`` blocks |

A pattern is an intent whose skill or arguments may be wildcards (shell globs, `fnmatch`)::

    push                    every push (a skill alone: any arguments)
    push(*, backward)       every backward push
    place(*, purple_block)  placing anything on the purple block
    place(red_block, *_zone)
    *(purple_block, *)      any two-argument skill on the purple block

The points an intent sends things to are, for ``pick(b)``: b and the lift goal above it; for ``place(b, t)``: the
goal on t; for ``push(b, d)``: b and the push goal (`intentloop.envs.predicates.goal_position`). The defaults
forbid nothing the task suite needs: the box is the end-effector's reach (narrow it to fence the robot in; a
box that leaves out a block the robot pushed there also stops it from fetching that block back), goals up to
20 cm high, and stacks of two (the skills' travel heights clear a stack of two blocks, not three).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from intentloop.agents.contracts import Violation, stack_height
from intentloop.envs import predicates as P
from intentloop.envs.intents import DIRECTIONS, MOTOR_SKILLS, SKILL_SIGNATURES, Intent
from intentloop.envs.scene import BLOCKS, EE_HIGH, EE_LOW, ZONES

DEFAULT_LOW = tuple(float(v) for v in EE_LOW[:2])  # the default box: the end-effector's reach [m]
DEFAULT_HIGH = tuple(float(v) for v in EE_HIGH[:2])
DEFAULT_MAX_HEIGHT = 0.2  # [m]
DEFAULT_MAX_STACK = 2
RULES = ("forbidden_intent", "workspace_limit", "height_limit", "stack_height_limit")
_PATTERN_RE = re.compile(r"^\s*([\w*?\[\]]+)\s*(?:\((.*)\))?\s*$")
_NAMES = {"block": BLOCKS, "target": BLOCKS + ZONES, "direction": tuple(DIRECTIONS)}


@dataclass(frozen=True)
class Pattern:
    text: str
    skill: str  # a skill name or a glob over skill names
    args: tuple[str, ...] | None  # globs; None: any arguments

    def matches(self, intent: Intent) -> bool:
        if not fnmatch.fnmatchcase(intent.skill, self.skill):
            return False
        if self.args is None:
            return True
        return len(self.args) == len(intent.args) and all(
            fnmatch.fnmatchcase(a, p) for a, p in zip(intent.args, self.args, strict=True)
        )


def parse_pattern(text: str) -> Pattern:
    """``push(*, backward)`` -> `Pattern`; a ValueError naming the bad token for anything that could never match."""
    match = _PATTERN_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"forbidden pattern {text!r} is not of the form 'skill' or 'skill(arg, ...)', e.g. 'push(*, left)'"
        )
    skill, inner = match.group(1), match.group(2)
    skills = [s for s in MOTOR_SKILLS if fnmatch.fnmatchcase(s, skill)]
    if not skills:
        raise ValueError(f"forbidden pattern {text!r} names no skill the robot has; skills: {', '.join(MOTOR_SKILLS)}")
    if inner is None:
        return Pattern(text, skill, None)
    args = tuple(a.strip() for a in inner.split(",")) if inner.strip() else ()
    arities = {len(SKILL_SIGNATURES[s]) for s in skills}
    if len(args) not in arities:
        raise ValueError(
            f"forbidden pattern {text!r} has {len(args)} arguments; {skill} takes "
            f"{' or '.join(map(str, sorted(arities)))}"
        )
    for i, arg in enumerate(args):
        kinds = {SKILL_SIGNATURES[s][i] for s in skills if len(SKILL_SIGNATURES[s]) == len(args)}
        names = [n for k in kinds for n in _NAMES[k]]
        if not arg or not any(fnmatch.fnmatchcase(n, arg) for n in names):
            raise ValueError(
                f"forbidden pattern {text!r}: argument {arg!r} matches no {' or '.join(sorted(kinds))} in the scene"
            )
    return Pattern(text, skill, args)


def intent_points(intent: Intent, obs: dict) -> list[np.ndarray]:
    """Where ``intent`` sends the end-effector or a block: (3,) points."""
    if intent.skill in ("pick", "push"):
        return [P.block_pos(obs, intent.args[0]), P.goal_position(intent, obs)]
    if intent.skill == "place":
        return [P.goal_position(intent, obs)]
    return []


class SafetyRules:
    """The rule set; ``violations(intent, obs)`` lists the rules an intent breaks in a state."""

    def __init__(
        self,
        forbidden: Iterable[str] = (),
        workspace_low: Iterable[float] = DEFAULT_LOW,
        workspace_high: Iterable[float] = DEFAULT_HIGH,
        max_height: float = DEFAULT_MAX_HEIGHT,
        max_stack_height: int = DEFAULT_MAX_STACK,
    ):
        if isinstance(forbidden, str):
            raise ValueError(
                f"forbidden must be a list of patterns, got the string {forbidden!r}; write ['{forbidden}']"
            )
        self.forbidden = tuple(parse_pattern(p) for p in forbidden)
        self.low, self.high = np.asarray(list(workspace_low), float), np.asarray(list(workspace_high), float)
        if self.low.shape != (2,) or self.high.shape != (2,):
            raise ValueError(
                f"workspace_low and workspace_high must be [x, y], got {self.low.tolist()} and {self.high.tolist()}"
            )
        if np.any(self.low >= self.high):
            raise ValueError(
                f"the workspace box is empty: workspace_low {self.low.tolist()} must be below workspace_high "
                f"{self.high.tolist()} in x and y"
            )
        if max_height <= 0:
            raise ValueError(f"max_height must be > 0 m, got {max_height}")
        if max_stack_height < 1:
            raise ValueError(f"max_stack_height must be >= 1, got {max_stack_height}")
        self.max_height, self.max_stack_height = float(max_height), int(max_stack_height)

    @classmethod
    def from_config(cls, cfg) -> SafetyRules:
        """From a `SafetyConfig`, a mapping or DictConfig with its keys, or None (the defaults)."""
        if cfg is None:
            return cls()
        if isinstance(cfg, SafetyRules):
            return cfg
        get = cfg.get if hasattr(cfg, "get") else lambda k, d: getattr(cfg, k, d)
        forbidden = get("forbidden", ()) or ()
        return cls(
            forbidden=forbidden if isinstance(forbidden, str) else list(forbidden),
            workspace_low=list(get("workspace_low", DEFAULT_LOW)),
            workspace_high=list(get("workspace_high", DEFAULT_HIGH)),
            max_height=get("max_height", DEFAULT_MAX_HEIGHT),
            max_stack_height=get("max_stack_height", DEFAULT_MAX_STACK),
        )

    def violations(self, intent: Intent, obs: dict) -> list[Violation]:
        if intent.is_done:
            return []
        out = [
            Violation("forbidden_intent", f"{intent} matches the forbidden pattern {p.text}")
            for p in self.forbidden
            if p.matches(intent)
        ]
        points = intent_points(intent, obs)
        for p in points:
            if np.any(p[:2] < self.low) or np.any(p[:2] > self.high):
                box = f"[{self.low[0]:.2f}, {self.high[0]:.2f}] x [{self.low[1]:.2f}, {self.high[1]:.2f}]"
                out.append(
                    Violation("workspace_limit", f"{intent} goes to ({p[0]:.2f}, {p[1]:.2f}), outside the box {box}")
                )
                break
        top = max((p[2] for p in points), default=0.0)
        if top > self.max_height:
            out.append(
                Violation("height_limit", f"{intent} goes to z = {top:.2f} m, above the limit {self.max_height:.2f} m")
            )
        if intent.skill == "place" and intent.args[1] in BLOCKS and intent.args[0] != intent.args[1]:
            height = stack_height(obs, intent.args[1]) + 1
            if height > self.max_stack_height:
                out.append(
                    Violation(
                        "stack_height_limit",
                        f"{intent} builds a stack of {height} blocks; the limit is {self.max_stack_height}",
                    )
                )
        return out


_OVERRIDE_RE = re.compile(r"^([+~]{0,2}[\w.]*safety\.forbidden)=(.*)$", re.DOTALL)
_CALL_RE = re.compile(r"[\w*?]+\([^()]*\)")


def quote_override(arg: str) -> str:
    """Quote the patterns of a ``...safety.forbidden=[push(*, backward)]`` command-line override, which Hydra would
    read as a call of a function ``push``: ``...safety.forbidden=["push(*, backward)"]``. Other arguments, and
    values with quotes already, are returned as they are."""
    match = _OVERRIDE_RE.match(arg)
    if match is None or '"' in match.group(2) or "'" in match.group(2) or "(" not in match.group(2):
        return arg
    value = _CALL_RE.sub(lambda m: f'"{m.group(0)}"', match.group(2).strip())
    return f"{match.group(1)}={value if value.startswith('[') else f'[{value}]'}"

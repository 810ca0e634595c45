"""Action intents: the one type that the System-2 planner writes and the System-1 skills execute.

An intent is a skill name plus typed arguments, with one canonical text form::

    pick(red_block)            place(red_block, blue_zone)      place(red_block, green_block)
    push(red_block, left)      done()

Parsing is strict: an unknown skill, a wrong number of arguments or an object that is not in the scene
raises `InvalidIntent`, whose message names the bad token.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from intentloop.envs.scene import BLOCKS, ZONES

# Argument kinds. "block" is a movable object, "target" a zone or another block, "direction" a push direction.
BLOCK, TARGET, DIRECTION = "block", "target", "direction"

# skill -> argument kinds, in order. `done()` ends the episode.
SKILL_SIGNATURES: dict[str, tuple[str, ...]] = {
    "pick": (BLOCK,),
    "place": (BLOCK, TARGET),
    "push": (BLOCK, DIRECTION),
    "done": (),
}
SKILLS = tuple(SKILL_SIGNATURES)
MOTOR_SKILLS = tuple(s for s in SKILLS if s != "done")

# Push directions in the world frame; the camera looks along +y, so "left" on the image is -x.
DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "forward": (0.0, 1.0),
    "backward": (0.0, -1.0),
}

_INTENT_RE = re.compile(r"^\s*([A-Za-z_][\w]*)\s*\((.*)\)\s*$", re.DOTALL)


class InvalidIntent(ValueError):
    """An intent that is not grammatical or does not fit the scene. The message names the bad token."""


@dataclass(frozen=True)
class Intent:
    skill: str  # key of SKILL_SIGNATURES, e.g. "place"
    args: tuple[str, ...] = ()  # scene names or directions, e.g. ("red_block", "blue_zone")

    def __str__(self) -> str:
        return f"{self.skill}({', '.join(self.args)})"

    @property
    def text(self) -> str:
        """The canonical text form, e.g. ``place(red_block, blue_zone)``."""
        return str(self)

    @property
    def is_done(self) -> bool:
        return self.skill == "done"

    @property
    def obj(self) -> str | None:
        """The block this intent acts on (None for ``done()``)."""
        return self.args[0] if self.args else None


DONE = Intent("done")


def parse_intent(text: str, blocks: Iterable[str] | None = None, zones: Iterable[str] | None = None) -> Intent:
    """Parse the canonical text form into an `Intent`.

    With ``blocks`` and ``zones`` given, every argument is also checked against the scene: a block must be
    one of ``blocks``, a target one of ``blocks`` or ``zones``, a direction one of `DIRECTIONS`.
    Raises `InvalidIntent` naming the bad token.
    """
    if not isinstance(text, str):
        raise InvalidIntent(f"an intent must be a string like 'pick(red_block)', got {type(text).__name__}")
    match = _INTENT_RE.match(text)
    if match is None:
        raise InvalidIntent(f"malformed intent {text!r}: expected the form 'skill(arg, ...)', e.g. 'pick(red_block)'")
    skill, inner = match.group(1), match.group(2).strip()
    if skill not in SKILL_SIGNATURES:
        raise InvalidIntent(f"unknown skill {skill!r} in {text!r}; known skills: {', '.join(SKILLS)}")
    args = tuple(a.strip() for a in inner.split(",")) if inner else ()
    if any(not a for a in args):
        raise InvalidIntent(f"empty argument in {text!r}")
    kinds = SKILL_SIGNATURES[skill]
    if len(args) != len(kinds):
        raise InvalidIntent(
            f"{skill} takes {len(kinds)} argument{'s' if len(kinds) != 1 else ''} ({', '.join(kinds) or 'none'}), "
            f"got {len(args)} in {text!r}"
        )
    intent = Intent(skill, args)
    if blocks is not None:
        check_in_scene(intent, blocks, zones or ())
    elif skill == "push" and args[1] not in DIRECTIONS:
        raise InvalidIntent(f"unknown direction {args[1]!r} in {text!r}; known: {', '.join(DIRECTIONS)}")
    return intent


def check_in_scene(intent: Intent, blocks: Iterable[str], zones: Iterable[str]) -> None:
    """Raise `InvalidIntent` if an argument of ``intent`` names nothing in the scene."""
    blocks, zones = tuple(blocks), tuple(zones)
    said = repr(str(intent))  # quoted and escaped: the planner's text may hold newlines or control characters
    for arg, kind in zip(intent.args, SKILL_SIGNATURES[intent.skill], strict=True):
        if kind == BLOCK and arg not in blocks:
            where = " (it is a zone, not a block)" if arg in zones else ""
            raise InvalidIntent(
                f"{said}: object {arg!r} is not a block in the scene{where}; blocks: {', '.join(blocks)}"
            )
        if kind == TARGET and arg not in blocks + zones:
            raise InvalidIntent(f"{said}: target {arg!r} is not in the scene; targets: {', '.join(blocks + zones)}")
        if kind == DIRECTION and arg not in DIRECTIONS:
            raise InvalidIntent(f"{said}: unknown direction {arg!r}; known: {', '.join(DIRECTIONS)}")
    if intent.skill == "place" and intent.args[0] == intent.args[1]:
        raise InvalidIntent(f"{said}: a block cannot be placed on itself")


def valid_intents(blocks: Iterable[str] = BLOCKS, zones: Iterable[str] = ZONES) -> list[str]:
    """The canonical text of every intent that `parse_intent` accepts in a scene of ``blocks`` and ``zones``: the
    set constrained decoding, exploration and the detector's counterfactuals draw from."""
    blocks, zones = tuple(blocks), tuple(zones)
    choices = {BLOCK: blocks, TARGET: blocks + zones, DIRECTION: tuple(DIRECTIONS)}
    texts = []
    for skill, kinds in SKILL_SIGNATURES.items():
        for args in itertools.product(*(choices[k] for k in kinds)):
            try:
                check_in_scene(Intent(skill, args), blocks, zones)
            except InvalidIntent:  # e.g. a block placed on itself
                continue
            texts.append(str(Intent(skill, args)))
    return texts

"""The blind text baseline (``planner=text``): rules over the instruction and the outcome history, no image.

It shows what language alone achieves, so every results table can put it beside the learned planner. It
reads colour words, block / zone nouns and direction words clause by clause and turns them into intents:

    a block and a direction        -> push(b, d)
    a block and a zone or block    -> pick(b), place(b, t)
    a block alone                  -> pick(b)

Requests it cannot ground without looking are answered with the best guess language allows: "every block
except X" puts the others in the zones in order; "every empty zone" fills the zones in order (but the one an
"except" names; "clear every zone except Z" moves the first block of the scene into Z); "stack(s)" /
"tower(s)" stack blocks in colour order; a block named only by position ("the leftmost block") or a zone to
clear is assumed to hold the first block of the scene. It walks its list with the outcome history: a
successful intent advances it, a failed ``place`` is preceded by a re-pick, ``done()`` ends it. A user
correction that names a colour ("no, the yellow one", "actually, use the orange zone") replaces the block or
zone of that kind in the instruction.
"""

from __future__ import annotations

import re

from intentloop.agents.planner import PlannerInput
from intentloop.envs.intents import DONE, Intent
from intentloop.envs.scene import BLOCKS, ZONES

_COLOURS = {n.split("_")[0]: n for n in BLOCKS} | {n.split("_")[0]: n for n in ZONES}
_ZONE_NOUNS = ("zone", "square", "area", "region", "spot")
_DIRECTION_WORDS = {
    "left": ("left", "leftwards"),
    "right": ("right", "rightwards"),
    "forward": ("forward", "forwards", "away from you", "far edge", "back of the table"),
    "backward": ("backward", "backwards", "towards you", "toward you", "near edge", "closer to you"),
}
_CLAUSES = re.compile(r"[;,.]|\bthen\b|\bafter that\b|\bfinally\b|\blastly\b|\band then\b")
_EXCEPT = re.compile(r"\b(except|but|other than|apart from|besides)\b")


def _mentions(clause: str) -> list[str]:
    """Scene names in the clause, in order: a colour followed by a zone noun names a zone, else a block."""
    out = []
    for m in re.finditer(r"\b(" + "|".join(_COLOURS) + r")\b(\s+\w+)?", clause):
        colour, noun = m.group(1), (m.group(2) or "").strip()
        zone = f"{colour}_zone"
        out.append(zone if zone in ZONES and (noun in _ZONE_NOUNS or f"{colour}_block" not in BLOCKS) else None)
        if out[-1] is None:
            out[-1] = f"{colour}_block" if f"{colour}_block" in BLOCKS else zone
    return out


def _direction(clause: str) -> str | None:
    for d, words in _DIRECTION_WORDS.items():
        if any(re.search(rf"\b{w}\b", clause) for w in words):
            return d
    return None


def _put_all(blocks: list[str], zones=ZONES) -> list[Intent]:
    return [i for b, z in zip(blocks, zones, strict=False) for i in (Intent("pick", (b,)), Intent("place", (b, z)))]


def _clause_intents(clause: str) -> list[Intent]:
    names = _mentions(clause)
    blocks = [n for n in names if n in BLOCKS]
    if _EXCEPT.search(clause) and re.search(r"\b(every|each|all|no zone|zones)\b", clause) and names and not blocks:
        if re.search(r"\b(clear|out of|nothing)\b|\bempty (all|every|each|the)\b", clause):
            return [Intent("pick", (BLOCKS[0],)), Intent("place", (BLOCKS[0], names[0]))]  # guess: into the kept one
        return _put_all(list(BLOCKS), [z for z in ZONES if z not in names])  # fill every zone but the named one
    if _EXCEPT.search(clause) and re.search(r"\b(every|each|all)\b", clause):
        return _put_all([b for b in BLOCKS if b not in blocks])
    if re.search(r"\b(every|each)\b.*\bzones?\b|\bno zone\b", clause) and not blocks:
        return _put_all(list(BLOCKS))
    if re.search(r"\b(stacks?|towers?|piles?|pairs?)\b", clause) and not blocks:
        pairs = 2 if re.search(r"\btwo (stacks|towers|piles|pairs)\b|\bpairs\b", clause) else 1
        tops, bases = BLOCKS[0::2][:pairs], BLOCKS[1::2][:pairs]
        return [i for b, t in zip(tops, bases, strict=True) for i in (Intent("pick", (b,)), Intent("place", (b, t)))]
    if not blocks and names and re.search(r"\b(clear|empty|out of|nothing)\b", clause):  # clear a zone: guess
        return [Intent("pick", (BLOCKS[0],)), Intent("place", (BLOCKS[0], next(z for z in ZONES if z not in names)))]
    if not blocks and names:  # a zone and a block named by position only: guess the first block
        blocks, names = [BLOCKS[0]], [BLOCKS[0], *names]
    if not blocks and re.search(r"\bblock|cube|box\b", clause):  # named by position only: guess
        blocks, names = [BLOCKS[0]], [BLOCKS[0], *names]
    if not blocks:
        return []
    if re.search(r"\b(swap|exchange|switch|trade)\b", clause) and len(blocks) == 2:  # where they are is unseen
        return _put_all(blocks)
    block, direction = blocks[0], _direction(clause)
    targets = [n for n in names[names.index(block) + 1 :] if n != block]
    if targets:
        return [Intent("pick", (block,)), Intent("place", (block, targets[0]))]
    if direction is not None and re.search(r"\b(push|slide|shove|nudge|move)\b", clause):
        return [Intent("push", (block, direction))]
    return [Intent("pick", (block,))]


def corrected(instruction: str, feedback) -> str:
    """The instruction with the block or zone each utterance names put in place of the one it replaces."""
    text = instruction.lower()
    for _, said in feedback:
        for name in _mentions(said.lower()):
            kind = name.split("_")[1]
            old = next((n for n in _mentions(text) if n.endswith(kind) and n != name), None)
            if old is not None:
                text = re.sub(rf"\b{old.split('_')[0]}\b", name.split("_")[0], text)
    return text


def parse_instruction(instruction: str) -> list[Intent]:
    """The intents the instruction's words suggest, in order (no image, no scene state)."""
    text = instruction.lower()
    return [i for clause in _CLAUSES.split(text) if clause.strip() for i in _clause_intents(clause)]


class TextPlanner:
    """Blind baseline: `parse_instruction`, then the list walked with the outcome history."""

    name = "text"

    def reset(self) -> None:
        pass

    def plan(self, inp: PlannerInput) -> str:
        wanted, k = parse_instruction(corrected(inp.instruction, inp.feedback)), 0
        for o in inp.history:
            if k < len(wanted) and o.success and o.intent == str(wanted[k]):
                k += 1
        if k >= len(wanted):
            return str(DONE)
        nxt, last = wanted[k], inp.history[-1] if inp.history else None
        if nxt.skill == "place" and not (last and last.success and last.intent == str(Intent("pick", (nxt.obj,)))):
            return str(Intent("pick", (nxt.obj,)))
        return str(nxt)

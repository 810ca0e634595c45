"""The task suite: CALVIN-style chains of 1 to 5 intents, their phrasings and the train / held-out split.

A task is a sequence of subgoals, one intent each, built from units that make sense on a table:

    put    pick(b), place(b, zone)        "put the red block in the blue zone"
    stack  pick(b), place(b, other)       "stack the red block on the green block"
    push   push(b, direction)             "push the red block to the left"
    pick   pick(b)   (only as a last unit) "pick up the red block"

Families: ``pick``, ``push`` (1 intent), ``put``, ``stack`` (2 intents) and ``chain`` (``chain_length``
intents of mixed units). Units are chosen so the chain is feasible from the sampled layout (free zones,
clear push paths, no block moved once it carries or sits on another).

The split is over compositions (skill x block x target): a fixed, seeded quarter of the ``place`` and
``push`` compositions is held out, such that every block, zone and direction still occurs in training.
Train tasks use only train compositions; held-out tasks contain at least one held-out composition. The
held-out compositions are halved again (half of each kind: place in a zone, stack, push) for honest
self-training (issue 17), so there are four splits:

    train     only train compositions: the labelled split (oracle demonstrations)
    heldout   at least one held-out composition (the union of the next two)
    practice  held-out compositions of the practice half only: self-training practises them without labels
    unseen    at least one composition of the unseen half: never practised, trained or used to choose
Phrasings are split too: the last template of each list is kept for the "unseen phrasings" test, and the
phrasing grammar (envs/language.py) rewrites half of the training instructions with its train rules and every
unseen-phrasings instruction with its held-out rules (new words and structures).

Goal-level families (``clear``, ``fill``, ``refer``, ``except``, ``count``, ``swap``; envs/goal_tasks.py) start
from an arranged scene and name a goal instead of intents: a `Task` with a ``goal`` is judged by its goal
predicate on the final state (envs/goals.py), and its ``intents`` are only the oracle's reference plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from intentloop.envs import goals, language
from intentloop.envs.goal_tasks import CORRECTIONS, GOAL_FAMILIES, GOAL_TEMPLATES, REFERENTS, sample_goal
from intentloop.envs.intents import DIRECTIONS, Intent, parse_intent
from intentloop.envs.language import TRAIN_RATE, rephrase
from intentloop.envs.predicates import PUSH_TRAVEL
from intentloop.envs.scene import (
    BLOCK_HALF,
    BLOCKS,
    ZONE_HALF,
    ZONES,
    Layout,
    sample_layout,
)

TEMPLATED_FAMILIES = ("pick", "push", "put", "stack", "chain")
FAMILIES = TEMPLATED_FAMILIES + GOAL_FAMILIES
SPLITS = ("train", "heldout", "practice", "unseen")
PHRASINGS = ("train", "heldout", "all")
MAX_CHAIN = 5

_BLOCK_WORDS = ("block", "cube", "box")
_ZONE_WORDS = ("zone", "square", "area")
_DIRECTION_WORDS = {
    "left": ("to the left", "left", "leftwards"),
    "right": ("to the right", "right", "rightwards"),
    "forward": ("forward", "away from you", "towards the far edge"),
    "backward": ("backward", "towards you", "towards the near edge"),
}
_TEMPLATES = {
    "pick": ("pick up the {b}", "grab the {b}", "lift the {b}", "take hold of the {b}"),
    "put": (
        "put the {b} in the {t}",
        "move the {b} to the {t}",
        "place the {b} inside the {t}",
        "drop the {b} into the {t}",
    ),
    "stack": (
        "stack the {b} on the {t}",
        "put the {b} on top of the {t}",
        "place the {b} onto the {t}",
        "set the {b} upon the {t}",
    ),
    "push": ("push the {b} {d}", "slide the {b} {d}", "shove the {b} {d}", "nudge the {b} {d}"),
}
_JOINS = {
    2: ("{0}, then {1}", "{0} and then {1}", "first {0}, then {1}", "{0}; after that, {1}"),
    "n": (
        "{head}, then {last}",
        "first {head}, and finally {last}",
        "{head}, and then {last}",
        "{head}; lastly, {last}",
    ),
}


def deciding_words() -> frozenset[str]:
    """Every word that can decide an intent's argument or a goal in a training instruction: colours and the words
    of the train phrasings (all but the last of each list, which is held out) of directions, goal-level
    templates (but the unit templates that `refer` shares with the chains), spatial referents and corrections.
    The rest (the units' verbs and prepositions, joins, politeness) only says what the instruction's structure
    says already: a direction makes a push, a zone a put, a block a stack."""
    goals = {k: v for k, v in GOAL_TEMPLATES.items() if not k.startswith("refer_")}
    groups = (goals, REFERENTS, CORRECTIONS, _DIRECTION_WORDS)
    texts = [t for group in groups for options in group.values() for t in options[:-1]]
    return frozenset(re.findall(r"[a-z']+", " ".join(texts).lower())) | frozenset(language.COLOURS)


def vocabulary() -> list[str]:
    """Every template, join, noun and direction phrase the suite writes instructions with (placeholders blanked)."""
    groups = (_TEMPLATES, _JOINS, GOAL_TEMPLATES, REFERENTS, CORRECTIONS, _DIRECTION_WORDS)
    texts = [re.sub(r"\{\w*\}", " ", t) for group in groups for t in sum(group.values(), ())]
    return texts + [*_BLOCK_WORDS, *_ZONE_WORDS] + language.words()


class InfeasibleTask(ValueError):
    """No task of the requested family, length and split fits (this layout of) the scene."""


@dataclass(frozen=True)
class Task:
    family: str
    intents: tuple[Intent, ...]  # the subgoals, in order
    instruction: str
    split: str
    goal: goals.Goal = ()  # goal-level families: the conditions on the final state (intents: a reference plan)
    event: tuple = ()  # correct / perturb: what the env does mid-episode (envs/goal_tasks.py)

    @property
    def is_goal(self) -> bool:
        return bool(self.goal)

    def to_dict(self) -> dict:
        return {
            "family": self.family,
            "intents": [str(i) for i in self.intents],
            "instruction": self.instruction,
            "split": self.split,
            "goal": [list(c) for c in self.goal],
            "event": _jsonable(self.event),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Task:
        intents = tuple(parse_intent(t) for t in d["intents"])
        event = tuple(d.get("event", ()))
        if event and event[0] == "correct":
            event = (*event[:3], goals.check_goal(event[3]))
        return cls(d["family"], intents, d["instruction"], d["split"], goals.check_goal(d.get("goal", ())), event)


def _jsonable(x):
    return [_jsonable(v) for v in x] if isinstance(x, tuple | list) else x


def composition(intent: Intent) -> tuple[str, ...]:
    return (intent.skill, *intent.args)


def heldout_compositions(seed: int = 0) -> frozenset[tuple[str, ...]]:
    """A Latin-square quarter of place-in-zone, stack and push compositions, shuffled by ``seed``."""
    rng = np.random.default_rng(seed)
    blocks, zones, dirs = (
        list(rng.permutation(BLOCKS)),
        list(rng.permutation(ZONES)),
        list(rng.permutation(list(DIRECTIONS))),
    )
    held = set()
    for i, b in enumerate(blocks):
        held.add(("place", b, zones[i % len(zones)]))
        held.add(("place", b, blocks[(i + 1) % len(blocks)]))
        held.add(("push", b, dirs[i % len(dirs)]))
    return frozenset(held)


def unseen_compositions(seed: int = 0) -> frozenset[tuple[str, ...]]:
    """The unseen half of `heldout_compositions`: those of every other block in its seeded order, so each kind
    (place in a zone, stack, push) keeps half of its held-out compositions in each of practice and unseen."""
    blocks = list(np.random.default_rng(seed).permutation(BLOCKS))  # the order heldout_compositions draws
    return frozenset(c for c in heldout_compositions(seed) if blocks.index(c[1]) % 2 == 1)


def split_of(intents, heldout: frozenset, unseen: frozenset) -> str:
    """The narrowest split a plan belongs to: unseen, practice (held-out, none unseen) or train."""
    comps = {composition(i) for i in intents}
    return "unseen" if comps & unseen else "practice" if comps & heldout else "train"


def units_of(intents) -> list[tuple[str, tuple[Intent, ...]]] | None:
    """Group a sequence of intents into the suite's units (put, stack, push, and a lone pick only at the end);
    None if it does not group so (e.g. a pick followed by anything but the place of that block)."""
    units, i, intents = [], 0, list(intents)
    while i < len(intents):
        first = intents[i]
        nxt = intents[i + 1] if i + 1 < len(intents) else None
        if first.skill == "push":
            units.append(("push", (first,)))
            i += 1
        elif first.skill == "pick" and nxt is not None and nxt.skill == "place" and nxt.args[0] == first.args[0]:
            units.append(("put" if nxt.args[1] in ZONES else "stack", (first, nxt)))
            i += 2
        elif first.skill == "pick" and nxt is None:
            units.append(("pick", (first,)))
            i += 1
        else:
            return None
    return units if units else None


@dataclass
class _Board:
    """Where blocks will be as the chain unfolds, to keep every next unit feasible."""

    xy: dict[str, np.ndarray]
    zones: dict[str, np.ndarray]
    frozen: set[str] = field(default_factory=set)
    used_zones: set[str] = field(default_factory=set)

    def movable(self) -> list[str]:
        return [b for b in BLOCKS if b not in self.frozen]

    def clear(self, point: np.ndarray, ignore: str, radius: float) -> bool:
        return all(np.linalg.norm(point - p) >= radius for b, p in self.xy.items() if b != ignore)

    def push_ok(self, block: str, direction: str) -> bool:
        return goals.push_ok(self.xy, self.zones, block, direction)


class TaskSuite:
    """Samples feasible tasks of a family for a layout, in a split, with seeded phrasings."""

    def __init__(self, split: str = "train", split_seed: int = 0, phrasings: str = "train"):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
        if phrasings not in PHRASINGS:
            raise ValueError(f"unknown phrasings {phrasings!r}; choose one of: {', '.join(PHRASINGS)}")
        self.split, self.phrasings = split, phrasings
        self.heldout, self.unseen = heldout_compositions(split_seed), unseen_compositions(split_seed)

    def sample(
        self,
        rng: np.random.Generator,
        layout: Layout,
        family: str = "chain",
        chain_length: int = 1,
        max_tries: int = 200,
    ) -> Task:
        if family not in FAMILIES:
            raise ValueError(f"unknown task {family!r}; choose one of: {', '.join(FAMILIES)}")
        if family in GOAL_FAMILIES:
            raise ValueError(f"{family!r} arranges the scene: sample it with sample_on or sample_episode")
        if family == "chain" and not 1 <= chain_length <= MAX_CHAIN:
            raise ValueError(f"chain_length must be between 1 and {MAX_CHAIN}, got {chain_length}")
        length = chain_length if family == "chain" else (1 if family in ("pick", "push") else 2)
        for _ in range(max_tries):
            units = self._units(rng, layout, family, length)
            if units is None:
                continue
            intents = tuple(i for _, unit in units for i in unit)
            if not self._in_split(intents):
                continue
            return Task(family, intents, self._instruction(rng, units), self.split)
        raise InfeasibleTask(
            f"could not sample a feasible {self.split} {family!r} task of {length} intents in "
            f"{max_tries} tries (pick compositions are never held out)"
        )

    def sample_episode(
        self, rng: np.random.Generator, family: str = "chain", chain_length: int = 1, max_layouts: int = 50
    ) -> tuple[Layout, Task]:
        """A layout and a feasible task on it; draws a new layout when one admits no such task."""
        for _ in range(max_layouts - 1):
            try:
                return self.sample_on(rng, sample_layout(rng), family, chain_length, max_tries=20)
            except InfeasibleTask:
                continue
        return self.sample_on(rng, sample_layout(rng), family, chain_length)

    def sample_on(
        self, rng: np.random.Generator, layout: Layout, family: str = "chain", chain_length: int = 1, max_tries=200
    ) -> tuple[Layout, Task]:
        """A task on ``layout``, and the layout it starts from (goal-level families arrange it first)."""
        if family not in GOAL_FAMILIES:
            return layout, self.sample(rng, layout, family, chain_length, max_tries)

        def chain(kind: str, length: int):
            units = self._units(rng, layout, kind, length)
            return None if units is None else (units, self._sentence(rng, units))

        words = (
            lambda n: self._name(rng, n),
            lambda o: self._pick(rng, o),
            lambda d: self._pick(rng, _DIRECTION_WORDS[d]),
        )
        for _ in range(max_tries):
            drawn = sample_goal(rng, layout, family, *words, chain)
            if drawn is None:
                continue
            arranged, goal, text, plan, event = drawn
            if not self._in_split(plan):
                continue
            return arranged, Task(family, tuple(plan), self._finish(rng, text), self.split, goal, event)
        raise InfeasibleTask(f"could not sample a feasible {self.split} {family!r} task in {max_tries} tries")

    def describe(self, rng: np.random.Generator, intents: tuple[Intent, ...] | list[Intent]) -> Task:
        """A ``chain`` task whose subgoals are ``intents``, phrased with this suite's templates: what a trajectory
        that achieved them could have been asked to do (hindsight relabelling). Its split is the
        narrowest split of its compositions (`split_of`). ``intents`` must group into units (see `units_of`)."""
        units = units_of(intents)
        if units is None:
            raise ValueError(f"{', '.join(map(str, intents)) or 'no intents'} do not form a task of whole units")
        intents = tuple(i for _, unit in units for i in unit)
        split = split_of(intents, self.heldout, self.unseen)
        return Task("chain", intents, self._instruction(rng, units), split)

    def _allowed(self, intent: Intent) -> bool:
        """Whether a unit may use ``intent`` in this split: train avoids every held-out composition, practice
        the unseen ones."""
        c = composition(intent)
        return not (self.split == "train" and c in self.heldout or self.split == "practice" and c in self.unseen)

    def _in_split(self, plan) -> bool:
        narrowest = split_of(plan, self.heldout, self.unseen)
        return narrowest == self.split or (self.split == "heldout" and narrowest != "train")

    def _units(self, rng, layout: Layout, family: str, length: int) -> list[tuple[str, tuple[Intent, ...]]] | None:
        board = _Board({b: layout.block_xy(b).copy() for b in BLOCKS}, {z: layout.zone_xy(z) for z in ZONES})
        units, remaining = [], length
        while remaining > 0:
            kinds = {"pick": ["pick"], "push": ["push"], "put": ["put"], "stack": ["stack"]}.get(family)
            if kinds is None:  # chain: any unit that fits in what remains; a lone pick only at the end
                kinds = ["put", "stack", "push"] if remaining >= 2 else ["push", "pick"]
            options = [opt for kind in kinds for opt in self._options(board, kind)]
            if not options:
                return None
            kind, unit = options[rng.integers(len(options))]
            self._apply(board, kind, unit)
            units.append((kind, unit))
            remaining -= len(unit)
        return units

    def _options(self, board: _Board, kind: str) -> list[tuple[str, tuple[Intent, ...]]]:
        out = []
        for b in board.movable():
            if kind == "pick":
                units = [(Intent("pick", (b,)),)]
            elif kind == "push":
                units = [(Intent("push", (b, d)),) for d in DIRECTIONS if board.push_ok(b, d)]
            elif kind == "put":
                units = [
                    (Intent("pick", (b,)), Intent("place", (b, z)))
                    for z in ZONES
                    if z not in board.used_zones and board.clear(board.zones[z], b, ZONE_HALF + 2 * BLOCK_HALF)
                ]
            else:  # stack
                units = [(Intent("pick", (b,)), Intent("place", (b, t))) for t in board.movable() if t != b]
            out += [(kind, u) for u in units if all(self._allowed(i) for i in u)]
        return out

    @staticmethod
    def _apply(board: _Board, kind: str, unit: tuple[Intent, ...]) -> None:
        last = unit[-1]
        b = last.args[0]
        if kind == "push":
            board.xy[b] = board.xy[b] + PUSH_TRAVEL * np.array(DIRECTIONS[last.args[1]])
        elif kind == "put":
            board.xy[b] = board.zones[last.args[1]].copy()
            board.used_zones.add(last.args[1])
        elif kind == "stack":
            board.xy[b] = board.xy[last.args[1]].copy()
            board.frozen |= {b, last.args[1]}
        else:  # a lone pick ends the chain with the block in hand
            board.frozen.add(b)

    def _pick(self, rng, options: tuple[str, ...]) -> str:
        if self.phrasings == "train":
            options = options[:-1]
        elif self.phrasings == "heldout":
            options = options[-1:]
        return options[rng.integers(len(options))]

    def _name(self, rng, name: str) -> str:
        color, kind = name.split("_")
        return f"{color} {self._pick(rng, _BLOCK_WORDS if kind == 'block' else _ZONE_WORDS)}"

    def _finish(self, rng, text: str) -> str:
        """Capitalised, with a full stop, and rewritten by the phrasing grammar's rules for this suite."""
        text = text[0].upper() + text[1:] + "."
        if self.phrasings == "heldout" or (self.phrasings == "all" and rng.random() < 0.5):
            return rephrase(rng, text, "heldout")
        return rephrase(rng, text, "train") if rng.random() < TRAIN_RATE else text

    def _instruction(self, rng, units) -> str:
        return self._finish(rng, self._sentence(rng, units))

    def _sentence(self, rng, units) -> str:
        parts = []
        for kind, unit in units:
            last = unit[-1]
            b = self._name(rng, last.args[0])
            t = self._name(rng, last.args[1]) if kind in ("put", "stack") else ""
            d = self._pick(rng, _DIRECTION_WORDS[last.args[1]]) if kind == "push" else ""
            parts.append(self._pick(rng, _TEMPLATES[kind]).format(b=b, t=t, d=d))
        if len(parts) == 1:
            text = parts[0]
        elif len(parts) == 2:
            text = self._pick(rng, _JOINS[2]).format(*parts)
        else:
            text = self._pick(rng, _JOINS["n"]).format(head=", then ".join(parts[:-1]), last=parts[-1])
        return text

"""Goal-level task families: the instruction names a goal, not the intents, and the scene starts arranged.

Each family arranges the sampled layout (some blocks already in zones or stacked, seeded) and asks for a goal
whose plan depends on what the camera shows; success is the goal predicate on the final state
(`intentloop.envs.goals`), so several plans can be right.

    clear   "Clear the blue zone."                          a block, or a stack of two, starts in the zone
    fill    "Put a block in every empty zone."              1 or 2 zones start filled
    fill_except "Put a block in every empty zone except the blue one."   exclusion of a zone: the named zone
            starts empty and must stay so; 0 or 1 of the others starts filled
    refer   "Push the block nearest to you to the left."    spatial reference, no colour word for the block
    except  "Put every block except the green one in a zone."   the excluded block may start in a zone
    count   "Build two stacks of two blocks."               a stack may already stand
    swap    "Swap the red block and the green block."       both start in zones; the plan parks one and
                                                            must remember where each was (the history)
    correct "Put the red block in the blue zone." ... user, as the red block is picked: "no, the yellow one"
            (or "actually, use the orange zone"): the goal becomes the corrected one
    perturb "Put the red block in the blue zone, then stack the green block on the yellow block." and the
            scene is disturbed once: the first block is displaced out of place while the second is picked
            (``displace``), or a block is knocked out of the gripper while carried (``drop``); the planner
            must notice it and redo the step

    clear_except "Clear every zone except the orange zone."   never trained: ``clear`` and the exclusion of a zone
            (``fill_except``) combined

``correct`` and ``perturb`` carry an **event** (`Task.event`) that the env fires at its trigger:
``("correct", block, utterance, corrected goal)`` when ``block`` is first held, ``("displace", block, trigger)``
when ``trigger`` is first held, ``("drop", block)`` once ``block`` is carried 4 cm from where it was grasped.

The sampler checks with the imagined oracle (`goals.reference_plan`) that the goal is reachable and not met
at the start; the oracle's plan is the task's reference ``intents`` (its length sets the budgets).
"""

from __future__ import annotations

import numpy as np
from intentloop.envs import goals as G
from intentloop.envs.intents import DIRECTIONS
from intentloop.envs.scene import BLOCK_HALF, BLOCKS, ZONES, Layout

GOAL_FAMILIES = (
    "clear", "fill", "refer", "except", "count", "swap", "correct", "perturb", "fill_except", "clear_except",
)  # fmt: skip
# Never in the planner's training data: the fourth generalization level, trained concepts combined anew.
UNTRAINED_FAMILIES = ("clear_except",)
# Trained families whose first intent depends on what the scene shows (correct / perturb start as the instruction
# says): the planner's first-step scene examples (agents/vlm/data.py `scene_examples`).
SCENE_FAMILIES = ("clear", "fill", "refer", "except", "count", "swap", "fill_except")

# The last phrasing of each list is kept for the unseen-phrasings test, as for the templated families.
GOAL_TEMPLATES: dict[str, tuple[str, ...]] = {
    "clear": (
        "clear the {z}",
        "empty the {z}",
        "take everything out of the {z}",
        "make sure nothing is left in the {z}",
    ),
    "clear_except": (
        "clear every zone except the {z}",
        "empty all zones but the {z}",
        "take everything out of each zone other than the {z}",
        "make sure nothing is left in the zones apart from the {z}",
    ),
    "fill": (
        "put a block in every empty zone",
        "fill each empty zone with a block",
        "make sure every zone holds a block",
        "see to it that no zone stays empty",
    ),
    "fill_except": (
        "put a block in every empty zone except the {z}",
        "fill each empty zone but the {z} with a block",
        "place a block into every free zone other than the {z}",
        "see to it that no zone apart from the {z} stays empty",
    ),
    "except": (
        "put every block except the {b} in a zone",
        "place all blocks but the {b} into zones",
        "move each block other than the {b} into a zone",
        "put all of the blocks apart from the {b} in the zones",
    ),
    "count1": (
        "stack one block on another",
        "build a tower of two blocks",
        "make a stack of two blocks",
        "pile two blocks up",
    ),
    "count2": (
        "build two stacks of two blocks",
        "make two towers of two blocks each",
        "stack the blocks in two pairs",
        "arrange the blocks as two piles of two",
    ),
    "swap": (
        "swap the {a} and the {b}",
        "exchange the places of the {a} and the {b}",
        "switch the {a} with the {b}",
        "make the {a} and the {b} trade places",
    ),
    "refer_push": ("push {r} {d}", "slide {r} {d}", "shove {r} {d}", "nudge {r} {d}"),
    "refer_put": ("put {r} in the {z}", "move {r} to the {z}", "place {r} inside the {z}", "drop {r} into the {z}"),
    "refer_stack": ("stack {r} on {s}", "put {r} on top of {s}", "place {r} onto {s}", "set {r} upon {s}"),
    "refer_pick": ("pick up {r}", "grab {r}", "lift {r}", "take hold of {r}"),
}
CORRECTIONS: dict[str, tuple[str, ...]] = {
    "object": ("no, the {b}", "not that one, the {b}", "sorry, I meant the {b}", "wrong block, take the {b}"),
    "target": (
        "actually, use the {z}",
        "wait, put it in the {z} instead",
        "no, the {z} please",
        "change of plan: the {z}",
    ),
}
# Spatial referents: the camera looks along +y from the front, so "nearest to you" is the smallest y.
REFERENTS: dict[str, tuple[str, ...]] = {
    "leftmost": ("the leftmost block", "the block furthest to the left", "the block on the far left"),
    "rightmost": ("the rightmost block", "the block furthest to the right", "the block on the far right"),
    "nearest": ("the block nearest to you", "the closest block to you", "the block closest to you"),
    "farthest": ("the block farthest from you", "the block furthest away", "the most distant block"),
    "in_zone": ("the block in the {z}", "the block sitting in the {z}", "the block that is in the {z}"),
}
REFER_MARGIN = 0.03  # [m] the referent must win its ordering by this much


def arrange(rng: np.random.Generator | None, layout: Layout, in_zone: dict[str, str], on: dict[str, str]) -> Layout:
    """``layout`` with blocks moved into zones (``in_zone``: block -> zone) and then onto others (``on``:
    top -> base), jittered by a few millimetres (not with ``rng=None``)."""
    blocks, heights = layout.blocks.copy(), layout.block_z().copy()
    for b, z in in_zone.items():
        jitter = rng.uniform(-0.008, 0.008, 2) if rng is not None else 0.0
        blocks[BLOCKS.index(b), :2] = layout.zone_xy(z) + jitter
    for top, base in on.items():
        i, j = BLOCKS.index(top), BLOCKS.index(base)
        blocks[i, :2] = blocks[j, :2] + (rng.uniform(-0.002, 0.002, 2) if rng is not None else 0.0)
        blocks[i, 2], heights[i] = blocks[j, 2], heights[j] + 2 * BLOCK_HALF
    return Layout(blocks, layout.zones.copy(), heights)


def _choice(rng, items):
    items = list(items)
    return items[rng.integers(len(items))]


def _clear(rng, name, phrase):
    z = _choice(rng, ZONES)
    order = list(rng.permutation(BLOCKS))
    in_zone, on = {order[0]: z}, {}
    if rng.random() < 0.4:
        on[order[1]] = order[0]
    for other, b in zip([x for x in ZONES if x != z], order[2:], strict=False):
        if rng.random() < 0.3:
            in_zone[b] = other
    return in_zone, on, (("empty", z),), phrase(GOAL_TEMPLATES["clear"]).format(z=name(z))


def _clear_except(rng, name, phrase):
    kept, order = _choice(rng, ZONES), list(rng.permutation(BLOCKS))
    zones = [z for z in ZONES if z != kept]
    in_zone = {order[0]: zones[0], **({order[1]: zones[1]} if rng.random() < 0.6 else {})}
    if rng.random() < 0.4:
        in_zone[order[2]] = kept
    goal = tuple(("empty", z) for z in zones)
    return in_zone, {}, goal, phrase(GOAL_TEMPLATES["clear_except"]).format(z=name(kept))


def _fill(rng, name, phrase):
    zones, order = list(rng.permutation(ZONES)), list(rng.permutation(BLOCKS))
    k = int(rng.integers(1, 3))  # with every zone empty, any blind guess would do
    return (
        dict(zip(order[:k], zones[:k], strict=True)),
        {},
        tuple(("filled", z) for z in ZONES),
        phrase(GOAL_TEMPLATES["fill"]),
    )


def _fill_except(rng, name, phrase):
    kept, order = _choice(rng, ZONES), list(rng.permutation(BLOCKS))
    others = list(rng.permutation([z for z in ZONES if z != kept]))
    in_zone = {order[0]: others[0]} if rng.random() < 0.5 else {}  # kept empty: a blind fill would use it
    goal = (*(("filled", z) for z in others), ("empty", kept))
    return in_zone, {}, goal, phrase(GOAL_TEMPLATES["fill_except"]).format(z=name(kept))


def _except(rng, name, phrase):
    order = list(rng.permutation(BLOCKS))
    ex, zones = order[0], list(rng.permutation(ZONES))
    in_zone = {ex: zones.pop()} if rng.random() < 0.5 else {}
    for b in order[1:]:
        if zones and rng.random() < 0.3:
            in_zone[b] = zones.pop()
    goal = (("out", ex), *(("zoned", b) for b in BLOCKS if b != ex))
    return in_zone, {}, goal, phrase(GOAL_TEMPLATES["except"]).format(b=name(ex))


def _count(rng, name, phrase):
    n = int(rng.integers(1, 3))
    order = list(rng.permutation(BLOCKS))
    on = {order[0]: order[1]} if n == 2 and rng.random() < 0.6 else {}
    in_zone = {order[1]: _choice(rng, ZONES)} if on and rng.random() < 0.3 else {}
    return in_zone, on, (("stacks", str(n)),), phrase(GOAL_TEMPLATES[f"count{n}"])


def _swap(rng, name, phrase):
    a, b, c = (str(x) for x in rng.permutation(BLOCKS)[:3])
    za, zb, zc = (str(x) for x in rng.permutation(ZONES))
    in_zone = {a: za, b: zb, **({c: zc} if rng.random() < 0.4 else {})}
    return in_zone, {}, (("in", a, zb), ("in", b, za)), phrase(GOAL_TEMPLATES["swap"]).format(a=name(a), b=name(b))


def _referents(layout: Layout, in_zone: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Referent key -> (block, its key for the phrase) for every referent this scene makes unambiguous."""
    xy = {b: layout.block_xy(b) for b in BLOCKS}
    out = {}
    for key, axis, sign in (("leftmost", 0, 1), ("rightmost", 0, -1), ("nearest", 1, 1), ("farthest", 1, -1)):
        ranked = sorted(BLOCKS, key=lambda b: sign * xy[b][axis])
        if sign * (xy[ranked[1]][axis] - xy[ranked[0]][axis]) >= REFER_MARGIN:
            out[key] = (ranked[0], key)
    for b, z in in_zone.items():
        out[f"in_{z}"] = (b, "in_zone")
    return out


def _refer(rng, name, phrase, direction, layout: Layout):
    in_zone = {str(rng.choice(BLOCKS)): _choice(rng, ZONES)} if rng.random() < 0.5 else {}
    scene = arrange(None, layout, in_zone, {})
    refs = _referents(scene, in_zone)
    if not refs:
        return None

    def say(key: str) -> str:
        block, kind = refs[key]
        return phrase(REFERENTS[kind]).format(z=name(key[3:]) if kind == "in_zone" else "")

    key = _choice(rng, sorted(refs))
    block = refs[key][0]
    action = _choice(rng, ("push", "put", "stack", "pick"))
    if action == "push":
        xy = {b: scene.block_xy(b) for b in BLOCKS}
        zones = {z: scene.zone_xy(z) for z in ZONES}
        dirs = [d for d in DIRECTIONS if G.push_ok(xy, zones, block, d)]
        if not dirs:
            return None
        d = _choice(rng, dirs)
        return (
            in_zone,
            {},
            (("moved", block, d),),
            phrase(GOAL_TEMPLATES["refer_push"]).format(r=say(key), d=direction(d)),
        )
    if action == "put":
        z = _choice(rng, [z for z in ZONES if z not in in_zone.values()])
        return in_zone, {}, (("in", block, z),), phrase(GOAL_TEMPLATES["refer_put"]).format(r=say(key), z=name(z))
    if action == "stack":
        others = sorted(k for k, (b, _) in refs.items() if b != block)
        if not others:
            return None
        other = _choice(rng, others)
        goal = (("on", block, refs[other][0]),)
        return in_zone, {}, goal, phrase(GOAL_TEMPLATES["refer_stack"]).format(r=say(key), s=say(other))
    return in_zone, {}, (("held", block),), phrase(GOAL_TEMPLATES["refer_pick"]).format(r=say(key))


def _unit_goal(kind: str, place) -> tuple[str, ...]:
    return ("in" if kind == "put" else "on", *place.args)


def _correct(rng, name, phrase, chain):
    drawn = chain("put", 2)
    if drawn is None:
        return None
    (kind, (_, place)), text = drawn[0][0], drawn[1]
    block, zone = place.args
    if rng.random() < 0.5:
        other = _choice(rng, [b for b in BLOCKS if b != block])
        corrected, said = (("in", other, zone),), phrase(CORRECTIONS["object"]).format(b=name(other))
    else:
        other = _choice(rng, [z for z in ZONES if z != zone])
        corrected, said = (("in", block, other),), phrase(CORRECTIONS["target"]).format(z=name(other))
    return (_unit_goal(kind, place),), text, ("correct", block, said, corrected)


def _perturb(rng, chain):
    drawn = chain(_choice(rng, ("put", "stack")), 4)
    if drawn is None:
        return None
    units, text = drawn
    first, second = ({i.args[0] for i in unit} | {unit[-1].args[1]} for _, unit in units)
    if first & second:
        return None
    goal = tuple(_unit_goal(kind, unit[-1]) for kind, unit in units)
    blocks = [unit[0].obj for _, unit in units]
    event = ("displace", blocks[0], blocks[1]) if rng.random() < 0.5 else ("drop", _choice(rng, blocks))
    return goal, text, event


def _event_plan(goal: G.Goal, event: tuple, start: dict) -> list | None:
    """The reference plan of an event task: up to the event, then the oracle's way to the (corrected) goal."""
    plan = G.reference_plan(goal, start)
    if plan is None:
        return None
    if event[0] == "correct":
        after = G.imagine(start, plan[0])
        rest = G.reference_plan(G.check_goal(event[3]), after)
        return None if rest is None else [plan[0], *rest]
    redo = [i for i in plan if i.obj == event[1]]  # the displaced or dropped block's unit, once more
    return plan + redo


def sample_goal(rng: np.random.Generator, layout: Layout, family: str, name, phrase, direction, chain):
    """(arranged layout, goal, instruction, reference plan, event) or None if this draw does not make a task.
    ``name(scene_name)``, ``phrase(options)`` and ``direction(d)`` pick seeded words (the suite's phrasings);
    ``chain(family, length)`` samples templated units on ``layout`` ((units, instruction) or None)."""
    event: tuple = ()
    if family in ("correct", "perturb"):
        drawn = _correct(rng, name, phrase, chain) if family == "correct" else _perturb(rng, chain)
        if drawn is None:
            return None
        goal, text, event = drawn
        drawn = ({}, {}, goal, text)
    elif family == "refer":
        drawn = _refer(rng, name, phrase, direction, layout)
    else:
        samplers = {"clear": _clear, "fill": _fill, "except": _except, "count": _count, "swap": _swap,
                    "fill_except": _fill_except, "clear_except": _clear_except}  # fmt: skip
        drawn = samplers[family](rng, name, phrase)
    if drawn is None:
        return None
    in_zone, on, goal, text = drawn
    goal = G.check_goal(goal)
    arranged = arrange(rng, layout, in_zone, on)
    start = G.state_from_layout(arranged)
    if G.goal_met(goal, start, start):
        return None
    plan = _event_plan(goal, event, start) if event else G.reference_plan(goal, start)
    return None if plan is None else (arranged, goal, text, plan, event)

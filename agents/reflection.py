"""Reflection: judge recorded episodes, attribute every failure, relabel them in hindsight, and turn them into
training data for the planner (and a list of failed segments for the skills).

    judgements = [judge(row) for row in rows]      # rows: episode-store rows (agents/episode_store.py)
    metrics = summarize_judgements(judgements)     # failures by cause, the detector against the ground truth
    data = build_dataset(rows, TaskSuite(), np.random.default_rng(0))
    data.planner   # list[agents.vlm.data.Example]: what the planner should have said, with the camera image
    data.skills    # segments the detector judged failed: episode id, outcome index, intent, steps, reason

Two readers, two kinds of knowledge. ``judge`` is for metrics: it reads the ground truth recorded next to the
detector's verdicts (``verified``, ``success``) and the task's subgoals, to measure the detector (its false
positives and negatives) and attribute every failure:

- planner: an unparseable or rejected intent, or a valid intent other than the one the task needed next
  (the needed one is known from the task's subgoals and the ground-truth progress);
- skill: the needed intent, not achieved;
- detector: the detector's verdict on an intent (or on the task) disagrees with the ground-truth predicate.

``build_dataset`` is what the robot learns from, and it sees only what a robot has: the instruction, its own
camera images, its own intents, the detector's verdicts (``outcomes[i].success``, ``judged_success``) and the
user's feedback. It never reads the task's intents, its goal, the ground truth or simulator state, on any split
but the labelled ones in ``oracle_splits`` (default: the train split, whose oracle demonstrations the planner
was trained on). Examples of four kinds, each a (camera image, instruction, history, intent) with the image of
the moment the planner was asked:

- ``success``: an episode the detector judged successful: every intent it judged achieved, with the real
  history before it (failures, recoveries and the user's words included), then ``done()``. Any plan that
  reached the goal teaches, so goal-level tasks (``clear``, ``swap``, ...) and chains are treated alike;
- ``hindsight``: what a failed episode did achieve (its judged-achieved intents grouped into whole units) as a
  new instruction phrased by the task suite, with the clean history of that chain, then ``done()``;
- ``progress`` (labelled splits only): in a failed episode, the intents that were what the task needed next
  at that moment (its next subgoal, or the pick before its place), with the real history before them;
- ``correction`` (labelled splits only): the intent the task needed where the planner got it wrong.

``preference_pairs`` reads what ``build_dataset`` reads and nothing else: two decisions taken in one situation
(the same camera image, instruction, history and user's words), one of which did better by the detector's
verdicts, for preference learning (agents/vlm/dpo.py).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from intentloop.agents.detectors import error_rates
from intentloop.agents.episode_store import decode_png
from intentloop.agents.planner import IntentOutcome
from intentloop.agents.vlm.data import Example
from intentloop.envs.intents import DONE, Intent, InvalidIntent, parse_intent
from intentloop.envs.tasks import Task, TaskSuite, composition, units_of

PLANNER, SKILL, DETECTOR = "planner", "skill", "detector"
CAUSES = (PLANNER, SKILL, DETECTOR)
SUCCESS, PROGRESS, HINDSIGHT, CORRECTION = "success", "progress", "hindsight", "correction"
REFUSED = ("invalid", "rejected")  # reasons of intents that were never executed


@dataclass(frozen=True)
class Failure:
    index: int | None  # outcome index; None: the episode stopped without a failed intent, or the task verdict
    cause: str  # planner | skill | detector
    why: str
    correct: str | None = None  # the intent the task needed at this call, where known


@dataclass
class Judgement:
    episode_id: str
    split: str
    success: bool  # ground truth: the task predicate
    judged_success: bool  # the detector's verdict
    achieved: list[int]  # outcome indices of the judged-achieved intents that form whole units, in order
    advanced: list[int] = field(default_factory=list)  # judged-achieved intents that were the task's next need
    failures: list[Failure] = field(default_factory=list)
    detector: Counter = field(default_factory=Counter)  # intent verdicts: tp, fp, tn, fn

    @property
    def cause(self) -> str | None:
        """What the episode's first failure is attributed to; None for a successful episode."""
        if self.success:
            return None
        return self.failures[0].cause if self.failures else PLANNER


def _needed(task: Task, done: int, holding: str | None) -> str:
    """The intent the task needs next (the oracle's choice): its next subgoal, or a re-pick before a place."""
    if done >= len(task.intents):
        return str(DONE)
    nxt = task.intents[done]
    if nxt.skill == "place" and holding != nxt.args[0]:
        return str(Intent("pick", (nxt.args[0],)))
    return str(nxt)


def _achieved_chain(outcomes: list[dict]) -> list[int]:
    """Indices of judged-achieved intents that group into units: a pick counts only if its place follows
    (or it is the last), a place only after its pick."""
    done = [i for i, o in enumerate(outcomes) if o["success"] and not o["reason"].startswith(REFUSED)]
    intents = {i: parse_intent(outcomes[i]["intent"]) for i in done}
    chain: list[int] = []
    for j, i in enumerate(done):
        it, nxt = intents[i], intents[done[j + 1]] if j + 1 < len(done) else None
        if it.skill == "pick" and nxt is not None and not (nxt.skill == "place" and nxt.args[0] == it.args[0]):
            continue
        if it.skill == "place" and not (chain and intents[chain[-1]] == Intent("pick", (it.args[0],))):
            continue
        chain.append(i)
    return chain if units_of([intents[i] for i in chain]) else []


def _walk(task: Task, outcomes: list[dict], verdicts: list[bool]):
    """(index, outcome, the intent the task needed at that call) for every outcome, the task's progress
    following ``verdicts`` (the detector's, or the ground truth). A goal-level task needs no one intent: None."""
    if task.is_goal:
        yield from ((i, o, None) for i, o in enumerate(outcomes))
        return
    progress, holding = 0, None
    for i, (o, ok) in enumerate(zip(outcomes, verdicts, strict=True)):
        yield i, o, _needed(task, progress, holding)
        if o["reason"].startswith(REFUSED):
            continue
        intent = parse_intent(o["intent"])
        if ok and progress < len(task.intents) and intent == task.intents[progress]:
            progress += 1
        if intent.skill in ("pick", "place"):
            holding = intent.args[0] if intent.skill == "pick" and ok else None


def _advanced(task: Task, outcomes: list[dict]) -> list[int]:
    """Indices of the intents that, by the detector's verdicts alone, were what the task needed next and done."""
    judged = [o["success"] for o in outcomes]
    return [
        i
        for i, o, needed in _walk(task, outcomes, judged)
        if o["success"] and not o["reason"].startswith(REFUSED) and str(parse_intent(o["intent"])) == needed
    ]


def judge(row: dict) -> Judgement:
    """The verdicts on one stored episode: per-intent detector agreement and the cause of every failure."""
    task = Task.from_dict(json.loads(row["task"]))
    outcomes = row["outcomes"]
    verified = row.get("verified") or [o["success"] for o in outcomes]
    judged_task = row.get("judged_success", row["success"])
    j = Judgement(row["episode_id"], task.split, bool(row["success"]), bool(judged_task), _achieved_chain(outcomes),
                  _advanced(task, outcomes))  # fmt: skip
    for i, o, needed in _walk(task, outcomes, verified):
        truth = verified[i]
        if o["reason"].startswith(REFUSED):
            j.failures.append(Failure(i, PLANNER, f"{o['intent']}: {o['reason']}", needed))
            continue
        j.detector[("t" if o["success"] == truth else "f") + ("p" if o["success"] else "n")] += 1
        if o["success"] != truth:
            j.failures.append(Failure(i, DETECTOR, f"{o['intent']} judged {o['success']}, ground truth {truth}"))
        intent = parse_intent(o["intent"])
        if o["reason"] == "interrupted":  # the user spoke: nobody failed
            continue
        if needed is not None and str(intent) != needed:
            j.failures.append(Failure(i, PLANNER, f"{intent} where the task needed {needed}", needed))
        elif not truth:
            j.failures.append(Failure(i, SKILL, f"{intent} not achieved ({o['reason']})"))
    if j.judged_success != j.success:
        j.failures.append(Failure(None, DETECTOR, f"task judged {j.judged_success}, ground truth {j.success}"))
    if not j.success and not j.failures:
        j.failures.append(Failure(None, PLANNER, "stopped before the task was done (early done() or budget spent)"))
    return j


@dataclass
class Dataset:
    planner: list[Example]
    skills: list[dict]  # one per intent the detector judged failed: episode_id, index, intent, steps, reason
    kinds: Counter  # examples per kind
    dropped: Counter  # episodes or examples left out, by reason


def _record(row: dict) -> tuple[list[IntentOutcome], np.ndarray, list[tuple[int, str]]]:
    """(its outcomes, the frame at which each call was made and one past the last, the user's words)."""
    outcomes = [IntentOutcome(o["intent"], o["success"], o["steps"], o["reason"]) for o in row["outcomes"]]
    start = np.concatenate([[0], np.cumsum([o.steps for o in outcomes])]).astype(int)  # frame of each call
    return outcomes, start, [(int(f["at"]), f["text"]) for f in row.get("feedback") or []]


def _framed(row: dict) -> bool:
    """The episode has a camera frame per observation (reflection reads the image of every call)."""
    return bool(row["frames"]) and len(row["frames"]) == row["steps"] + 1


def _frame_at(row: dict, frames: dict, k: int) -> np.ndarray:
    if k not in frames:
        frames[k] = decode_png(row["frames"][min(k, len(row["frames"]) - 1)])
    return frames[k]


def _executed(reason: str) -> bool:
    """The intent ran to its end: neither refused before it ran nor cut short by the user's words."""
    return not reason.startswith(REFUSED) and reason != "interrupted"


def _episode_examples(row, suite: TaskSuite, rng, labelled: Judgement | None, episode: int) -> list[tuple]:
    """(kind, Example) pairs of one episode; ``labelled``: its judgement when its split is labelled, else None
    (and then nothing but the robot's own record is read)."""
    outcomes, start, said = _record(row)
    frames, out = {}, []

    def example(kind, k, instruction, history, target):
        heard = tuple(f for f in said if f[0] <= len(history)) if instruction == row["instruction"] else ()
        image = _frame_at(row, frames, k)
        out.append((kind, Example(image, instruction, tuple(history), target, episode, heard)))

    if row["judged_success"]:  # any plan that reached the goal: every step it saw achieved
        for i in (i for i, o in enumerate(outcomes) if o.success and _executed(o.reason)):
            example(SUCCESS, start[i], row["instruction"], outcomes[:i], outcomes[i].intent)
        example(SUCCESS, start[-1], row["instruction"], outcomes, str(DONE))
    else:
        chain = _achieved_chain(row["outcomes"])
        for i in labelled.advanced if labelled else ():  # the steps that did advance the task (its labels)
            example(PROGRESS, start[i], row["instruction"], outcomes[:i], outcomes[i].intent)
        if chain:
            relabel = suite.describe(rng, [parse_intent(outcomes[i].intent) for i in chain])
            clean = [IntentOutcome(outcomes[i].intent, True, outcomes[i].steps, "achieved") for i in chain]
            for n, i in enumerate(chain):
                example(HINDSIGHT, start[i], relabel.instruction, clean[:n], outcomes[i].intent)
            example(HINDSIGHT, start[chain[-1] + 1], relabel.instruction, clean, str(DONE))
    for f in labelled.failures if labelled else ():
        if f.cause == PLANNER and f.correct is not None and f.index is not None:
            example(CORRECTION, start[f.index], row["instruction"], outcomes[: f.index], f.correct)
    return out


def build_dataset(
    rows: list[dict],
    suite: TaskSuite,
    rng: np.random.Generator,
    oracle_splits: tuple[str, ...] = ("train",),
    max_per_composition: int | None = None,
) -> Dataset:
    """Planner examples and skill records from recorded episodes, by the detector's verdicts (episodes of the
    ``oracle_splits`` also by their labels): invalid episodes and duplicate examples are dropped, and no target
    composition keeps more than ``max_per_composition`` examples (balance)."""
    pairs, skills, dropped, seen = [], [], Counter(), set()
    for episode, row in enumerate(rows):
        if not _framed(row):
            dropped["episode without a frame per observation"] += 1
            continue
        try:
            labelled = judge(row) if json.loads(row["task"])["split"] in oracle_splits else None
            examples = _episode_examples(row, suite, rng, labelled, episode)
        except (InvalidIntent, ValueError) as err:
            dropped[f"unusable episode ({type(err).__name__})"] += 1
            continue
        for kind, e in examples:
            key = (e.instruction, tuple(map(str, e.history)), e.target, e.image.tobytes())
            if key in seen:
                dropped["duplicate example"] += 1
                continue
            seen.add(key)
            pairs.append((kind, e))
        for i, o in enumerate(row["outcomes"]):  # the skill segments the detector judged failed
            if not o["success"] and _executed(o["reason"]):
                skills.append({"episode_id": row["episode_id"], "index": i, **o})
    if max_per_composition is not None:
        order, count, kept = rng.permutation(len(pairs)), Counter(), []
        for i in sorted(order, key=lambda i: pairs[i][0] not in (SUCCESS, PROGRESS)):  # the task's own first
            target = parse_intent(pairs[i][1].target)
            key = composition(target) if target.args else ("done",)
            if count[key] < max_per_composition:
                count[key] += 1
                kept.append(pairs[i])
            else:
                dropped["over the per-composition cap"] += 1
        pairs = kept
    return Dataset([e for _, e in pairs], skills, Counter(k for k, _ in pairs), dropped)


def summarize_judgements(judgements: list[Judgement]) -> dict:
    """Round metrics: failures by cause (every failure, and per failed episode its first), and the detector's
    false-positive and false-negative rates against the ground truth, per intent and per task."""
    events, episodes, det, task = Counter(), Counter(), Counter(), Counter()
    by_split: dict[str, list[bool]] = defaultdict(list)
    for j in judgements:
        events.update(f.cause for f in j.failures)
        if j.cause:
            episodes[j.cause] += 1
        det.update(j.detector)
        task[("t" if j.judged_success == j.success else "f") + ("p" if j.judged_success else "n")] += 1
        by_split[j.split].append(j.success)
    intent, task = (error_rates({k: c[k] for k in ("tp", "fp", "tn", "fn")}) for c in (det, task))
    return {
        "episodes": len(judgements),
        "success_by_split": {s: float(np.mean(v)) for s, v in sorted(by_split.items())},
        "failures_by_cause": {c: events[c] for c in CAUSES},
        "failed_episodes_by_cause": {c: episodes[c] for c in CAUSES},
        "detector": {
            "intent_false_positive_rate": intent["false_positive_rate"],
            "intent_verdicts": {k: intent[k] for k in ("tp", "fp", "tn", "fn")},
            "intent_false_negative_rate": intent["false_negative_rate"],
            "task_false_positive_rate": task["false_positive_rate"],
            "task_false_negative_rate": task["false_negative_rate"],
        },
    }


REFUSED_PAIR, SIBLING_PAIR = "refused", "sibling"


@dataclass(frozen=True)
class PreferencePair:
    """Two intents in one situation: ``chosen.target`` did better than ``rejected`` (by the detector's verdicts)."""

    chosen: Example  # the situation (image, instruction, history, feedback) and the better intent
    rejected: str
    kind: str  # refused | sibling


def _refused_pairs(row: dict, episode: int) -> list[PreferencePair]:
    """In an episode the detector judged successful: each intent refused before it ran (nothing moved) against
    the intent the robot then ran in that same scene and the detector judged achieved (``done()`` if the episode
    ended there)."""
    outcomes, start, said = _record(row)
    frames, out = {}, []
    for i, o in enumerate(outcomes):
        if not o.reason.startswith(REFUSED):
            continue
        j = next((j for j in range(i + 1, len(outcomes)) if not outcomes[j].reason.startswith(REFUSED)), None)
        if j is None:
            chosen = str(DONE)
        elif outcomes[j].success and _executed(outcomes[j].reason):
            chosen = outcomes[j].intent
        else:
            continue
        if chosen != o.intent:
            heard = tuple(f for f in said if f[0] <= i)
            image = _frame_at(row, frames, start[i])
            e = Example(image, row["instruction"], tuple(outcomes[:i]), chosen, episode, heard)
            out.append(PreferencePair(e, o.intent, REFUSED_PAIR))
    return out


def _sibling_pair(rows: list[dict], better: int, worse: int) -> PreferencePair | None:
    """Where two runs of one situation part: the same instruction, the same outcomes, user's words and camera
    image up to a call, and then another intent (``done()`` for a run that stopped there); the run the detector
    judged successful chose the better one."""
    (a, start, said_a), (b, _, said_b) = _record(rows[better]), _record(rows[worse])
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    chosen, rejected = (seq[i].intent if i < len(seq) else str(DONE) for seq in (a, b))
    if chosen == rejected:
        return None
    heard = tuple(f for f in said_a if f[0] <= i)
    if heard != tuple(f for f in said_b if f[0] <= i):
        return None
    image = _frame_at(rows[better], {}, start[i])
    if not np.array_equal(image, _frame_at(rows[worse], {}, start[i])):
        return None  # not the same scene after all
    e = Example(image, rows[better]["instruction"], tuple(a[:i]), chosen, better, heard)
    return PreferencePair(e, rejected, SIBLING_PAIR)


def preference_pairs(rows: list[dict]) -> tuple[list[PreferencePair], Counter]:
    """Pairs of decisions taken in one situation, from what a robot has (its images, instruction, intents, the
    detector's verdicts and the user's words; never the ground truth, the task or the simulator's state):

    - ``refused``: see `_refused_pairs`;
    - ``sibling``: two runs that start from the same instruction and camera image (e.g. one seed practised twice,
      ``collect.repeats``), one judged successful and one not: their intents where they first part.

    Returns the pairs (no duplicates) and their count per kind."""
    pairs: list[PreferencePair] = []
    usable = [i for i, r in enumerate(rows) if _framed(r)]
    for i in usable:
        if rows[i]["judged_success"]:
            pairs += _refused_pairs(rows[i], i)
    runs = defaultdict(list)
    for i in usable:
        runs[(rows[i]["instruction"], bytes(rows[i]["frames"][0]))].append(i)
    for members in runs.values():
        for x, y in itertools.combinations(members, 2):
            if rows[x]["judged_success"] != rows[y]["judged_success"]:
                better, worse = (x, y) if rows[x]["judged_success"] else (y, x)
                pairs += [p] if (p := _sibling_pair(rows, better, worse)) else []
    unique, seen = [], set()
    for p in pairs:
        e = p.chosen
        key = (e.instruction, tuple(map(str, e.history)), e.feedback, e.target, p.rejected, e.image.tobytes())
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, Counter(p.kind for p in unique)

"""Success detectors: what decides that an intent, or the whole task, has succeeded.

The agent stops a skill when its detector says the intent is done and reports the detector's task verdict;
next to both it records the ground truth (the simulator's predicates), so the detector can be measured
against it (its false positives), e.g. by reflection during self-training.

    class Detector(Protocol):
        name: str
        def intent_done(self, intent, obs, ref) -> bool   # ref: the observation when the intent started
        def task_done(self, task, obs, info, start=None, heard=()) -> bool
            # info: the env's info dict of the last step; start: the first observation; heard: what the user said

`PredicateDetector` (the default) reads the ground-truth predicates, so its verdicts are the ground truth.
`LearnedDetector` (agents/learned_detector.py, ``agent.detector.name=learned``) judges from the camera,
proprioception and words alone, as a robot must; `make_detector` builds either from a config.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from intentloop.envs import predicates as P
from intentloop.envs.intents import Intent
from intentloop.envs.tasks import Task


@runtime_checkable
class Detector(Protocol):
    name: str

    def intent_done(self, intent: Intent, obs: dict, ref: dict | None) -> bool: ...

    def task_done(self, task: Task, obs: dict, info: dict, start: dict | None = None, heard=()) -> bool: ...


class PredicateDetector:
    """Ground truth: an intent's own predicate (`intentloop.envs.predicates.achieved`, the contracts'
    postcondition), and the env's task predicate (every subgoal achieved in order)."""

    name = "predicates"

    def intent_done(self, intent: Intent, obs: dict, ref: dict | None) -> bool:
        return bool(P.achieved(intent, obs, ref))

    def task_done(self, task: Task, obs: dict, info: dict, start: dict | None = None, heard=()) -> bool:
        return bool(info.get("is_success", False))


DETECTORS = ("predicates", "learned")


def error_rates(c: dict) -> dict:
    """``c`` (tp / fp / tn / fn counts of verdicts against the ground truth) with the false-positive rate
    fp / (fp + tn), the share of failures judged successful, and the false-negative rate fn / (fn + tp)."""
    negatives, positives = c["fp"] + c["tn"], c["tp"] + c["fn"]
    return {**c, "false_positive_rate": c["fp"] / negatives if negatives else 0.0,
            "false_negative_rate": c["fn"] / positives if positives else 0.0}  # fmt: skip


def make_detector(name: str = "predicates", path: str | None = None) -> Detector:
    """``predicates`` (the ground truth) or ``learned`` (the checkpoint of `intentloop train-detector` at ``path``)."""
    if name == "predicates":
        return PredicateDetector()
    if name != "learned":
        raise ValueError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}")
    if not path:
        raise ValueError(
            "agent.detector.name=learned needs agent.detector.path: the folder `intentloop train-detector` wrote"
        )
    from intentloop.agents.learned_detector import LearnedDetector  # torch and transformers, only when asked for

    return LearnedDetector.from_pretrained(path)


def check_detector(detector: Detector, image: bool, image_size: int) -> None:
    """A detector that judges from the camera (one with an ``image_size``, as `LearnedDetector`) needs it at the
    size it was trained on: one sentence before any episode."""
    size = getattr(detector, "image_size", None)
    if size is None:
        return
    if not image:
        raise ValueError("agent.detector.name=learned judges from the camera: set env.image=true")
    if image_size != size:
        raise ValueError(
            f"the learned detector was trained on {size}x{size} camera images, the env gives "
            f"{image_size}x{image_size}: set env.image_size={size} or train one for this size"
        )

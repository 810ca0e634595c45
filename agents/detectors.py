"""Success detectors: what decides that an intent, or the whole task, has succeeded.

The agent stops a skill when its detector says the intent is done and reports the detector's task verdict;
next to both it records the ground truth (the simulator's predicates), so the detector can be measured
against it (its false positives), e.g. by reflection during self-training.

    class Detector(Protocol):
        name: str
        def intent_done(self, intent, obs, ref) -> bool   # ref: the observation when the intent started
        def task_done(self, task, obs, info) -> bool      # info: the env's info dict of the last step

`PredicateDetector` (the default) reads the ground-truth predicates, so its verdicts are the ground truth. A
learned detector (e.g. an image classifier over ``obs["image"]``) implements the same two methods.
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

    def task_done(self, task: Task, obs: dict, info: dict) -> bool: ...


class PredicateDetector:
    """Ground truth: an intent's own predicate (`intentloop.envs.predicates.achieved`, the contracts'
    postcondition), and the env's task predicate (every subgoal achieved in order)."""

    name = "predicates"

    def intent_done(self, intent: Intent, obs: dict, ref: dict | None) -> bool:
        return bool(P.achieved(intent, obs, ref))

    def task_done(self, task: Task, obs: dict, info: dict) -> bool:
        return bool(info.get("is_success", False))

"""System-2 planners: from the instruction, the camera image and the history, the next intent as text.

A planner returns text, never an `Intent`: the agent parses and validates whatever comes back, so a
planner that emits something malformed is caught the same way for every implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from intentloop.envs import goals
from intentloop.envs import predicates as P
from intentloop.envs.intents import DONE, Intent
from intentloop.envs.tasks import Task


@dataclass(frozen=True)
class IntentOutcome:
    """What happened to one intent: did its own predicate hold, after how many steps, and why not."""

    intent: str  # the planner's text, even when it did not parse
    success: bool
    steps: int
    reason: str  # "achieved", "timeout", "interrupted", "episode ended", "invalid: <why>", "rejected: <rule>: <why>"

    def __str__(self) -> str:
        return f"{self.intent} -> {'success' if self.success else 'failure'} ({self.reason}, {self.steps} steps)"


REFUSED = ("invalid", "rejected")  # reasons of intents that never ran (the parser, a contract or a safety rule)


def refused_since_last_run(history: Sequence[IntentOutcome]) -> frozenset[str]:
    """The intents refused since the last one that ran: nothing has moved since, so the same checks would refuse
    them again (a planner may leave them out of its next choice)."""
    refused: set[str] = set()
    for o in reversed(history):
        if o.reason.split(":")[0] not in REFUSED:
            break
        refused.add(o.intent)
    return frozenset(refused)


@dataclass
class PlannerInput:
    instruction: str
    image: np.ndarray | None  # (H, W, 3) uint8
    history: list[IntentOutcome] = field(default_factory=list)
    # Privileged: only oracles may read these.
    obs: dict | None = None
    task: Task | None = None
    subgoals_done: int = 0
    # What the user said during the episode: (how many outcomes the history had when it arrived, the text).
    feedback: list[tuple[int, str]] = field(default_factory=list)
    # The key of this call's random draw when the planner samples (`EpsilonPlanner` sets it from the episode's
    # seed): the same key, the same intent, however the calls are batched. None: the planner's own randomness.
    sample_seed: int | None = None


@runtime_checkable
class Planner(Protocol):
    name: str

    def reset(self) -> None: ...

    def plan(self, inp: PlannerInput) -> str: ...


class OraclePlanner:
    """Plans any suite task from privileged state. A templated task: its subgoals in order, with a re-pick
    when a block meant to be placed is no longer in hand. A goal-level task: `goals.next_intent` from the
    current state (the first state it sees after ``reset`` is the episode's start)."""

    name = "oracle"

    def __init__(self):
        self._start: dict | None = None

    def reset(self) -> None:
        self._start = None

    def plan(self, inp: PlannerInput) -> str:
        if inp.task is None or inp.obs is None:
            raise ValueError("the oracle planner needs privileged state: PlannerInput.task and PlannerInput.obs")
        if self._start is None:
            self._start = inp.obs
        if inp.task.is_goal:
            goal, event = inp.task.goal, inp.task.event
            if event and event[0] == "correct" and any(text == event[2] for _, text in inp.feedback):
                goal = event[3]  # the user corrected the goal
            return str(goals.next_intent(goal, inp.obs, self._start))
        if inp.subgoals_done >= len(inp.task.intents):
            return str(DONE)
        nxt = inp.task.intents[inp.subgoals_done]
        if nxt.skill == "place" and not P.grasped(inp.obs, nxt.args[0]):
            return str(Intent("pick", (nxt.args[0],)))
        return str(nxt)


def _text_planner():
    from intentloop.agents.text_planner import TextPlanner

    return TextPlanner()


PLANNERS = {"oracle": OraclePlanner, "text": _text_planner}


def make_planner(cfg) -> Planner:
    """A planner from its name or its config node (``planner=vlm planner.model_path=...``)."""
    name = cfg if isinstance(cfg, str) else cfg.name
    if name == "vlm":
        from intentloop.agents.vlm import VLMPlanner  # transformers is imported only when asked for

        return VLMPlanner() if isinstance(cfg, str) else VLMPlanner.from_config(cfg)
    if name not in PLANNERS:
        raise ValueError(f"unknown planner {name!r}; available: {', '.join([*PLANNERS, 'vlm'])}")
    return PLANNERS[name]()

"""Record every planner call and replay it later without the model.

`RecordingPlanner` wraps any `Planner` and appends one JSON line per call to a log::

    {"key": <sha256 of instruction, history and image>, "planner": "vlm", "instruction": ..., "history": [...],
     "intent": "pick(red_block)"}

`ReplayPlanner` answers from such a log: the same inputs give the recorded intents, in recorded order, and
an input that was never recorded raises `UnrecordedInput` naming it.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from intentloop.agents.planner import Planner, PlannerInput


class UnrecordedInput(ValueError):
    """The replay log holds no answer for this planner input."""


def input_key(inp: PlannerInput) -> str:
    """sha256 over what a planner may read: instruction, every outcome field, image shape, dtype and bytes."""
    h = hashlib.sha256()
    history = [[o.intent, o.success, o.steps, o.reason] for o in inp.history]
    h.update(json.dumps([inp.instruction, history]).encode())
    if inp.image is not None:
        image = np.ascontiguousarray(inp.image)
        h.update(f"{image.shape}{image.dtype}".encode())
        h.update(image.tobytes())
    return h.hexdigest()


class RecordingPlanner:
    """Delegates to ``planner`` and logs each (input -> intent) call to the JSONL file ``path`` (appending)."""

    def __init__(self, planner: Planner, path: str | Path):
        self.planner, self.path = planner, Path(path)
        self.name = planner.name
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def reset(self) -> None:
        self.planner.reset()

    def plan(self, inp: PlannerInput) -> str:
        return self.plan_batch([inp])[0]

    def plan_batch(self, inputs: Sequence[PlannerInput]) -> list[str]:
        batch = getattr(self.planner, "plan_batch", None)
        intents = batch(inputs) if batch else [self.planner.plan(i) for i in inputs]
        with open(self.path, "a") as f:
            for inp, intent in zip(inputs, intents, strict=True):
                history = [str(o) for o in inp.history]
                row = {"key": input_key(inp), "planner": self.name, "instruction": inp.instruction}
                f.write(json.dumps({**row, "history": history, "intent": intent}) + "\n")
        return intents


class ReplayPlanner:
    """Answers from a `RecordingPlanner` log. A key recorded n times replays its n answers in order; after
    that it repeats the answer only if all n agree (a deterministic planner), else it refuses."""

    def __init__(self, path: str | Path, name: str | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no planner log at {path}: the file does not exist")
        self._answers: dict[str, list[str]] = defaultdict(list)
        names = set()
        with open(self.path) as f:
            for n, line in enumerate(f, 1):
                try:
                    row = json.loads(line)
                    self._answers[row["key"]].append(row["intent"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise ValueError(f"planner log {path} is corrupt at line {n}") from None
                names.add(row.get("planner", "replay"))
        self.name = name or (f"replay:{names.pop()}" if len(names) == 1 else "replay")
        self.rewind()

    def reset(self) -> None:
        pass  # a new episode: answers keep being consumed in recorded order

    def rewind(self) -> None:
        """Start the log over, as if nothing had been replayed yet."""
        self._used: dict[str, int] = defaultdict(int)  # answers consumed per key, across episodes

    def plan(self, inp: PlannerInput) -> str:
        key = input_key(inp)
        answers = self._answers.get(key)
        if not answers:
            raise UnrecordedInput(
                f"planner log {self.path} has no call for this input (instruction {inp.instruction!r}, "
                f"{len(inp.history)} outcomes in the history)"
            )
        i = self._used[key]
        self._used[key] += 1
        if i < len(answers):
            return answers[i]
        if len(set(answers)) == 1:
            return answers[0]
        raise UnrecordedInput(f"planner log {self.path} has {len(answers)} differing answers for this input, all used")

    def plan_batch(self, inputs: Sequence[PlannerInput]) -> list[str]:
        return [self.plan(i) for i in inputs]

"""The hierarchical agent: plan, validate, execute the skill, feed the outcome back, replan.

    planner.plan(instruction, image, history) -> text -> parse_intent (rejected if invalid, fed back)
        -> skill.reset(intent, obs); skill.act(obs) until the intent's predicate holds or its budget ends
        -> IntentOutcome appended to the history -> next plan, until done() or the intent budget ends
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol

import gymnasium as gym

from intentloop.agents.planner import IntentOutcome, Planner, PlannerInput
from intentloop.envs import predicates as P
from intentloop.envs.intents import InvalidIntent, parse_intent
from intentloop.envs.scene import BLOCKS, ZONES


class Skills(Protocol):
    name: str

    def reset(self, intent, obs: dict) -> None: ...

    def act(self, obs: dict): ...


@dataclass
class EpisodeResult:
    seed: int | None
    backend: str
    task: dict
    instruction: str
    planner: str
    skills: str
    outcomes: list[IntentOutcome] = field(default_factory=list)
    subgoals_done: int = 0
    n_subgoals: int = 0
    success: bool = False
    steps: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class HierarchicalAgent:
    def __init__(self, planner: Planner, skills: Skills, max_steps_per_intent: int = 60, max_intents: int | None = None):
        if max_steps_per_intent < 1:
            raise ValueError(f"max_steps_per_intent must be >= 1, got {max_steps_per_intent}")
        self.planner, self.skills = planner, skills
        self.max_steps_per_intent, self.max_intents = max_steps_per_intent, max_intents

    def run_episode(self, env: gym.Env, seed: int | None = None, options: dict | None = None) -> EpisodeResult:
        obs, info = env.reset(seed=seed, options=options)
        task = info["task"]
        result = EpisodeResult(seed, env.unwrapped.backend, task.to_dict(), task.instruction, self.planner.name,
                               self.skills.name, n_subgoals=info["n_subgoals"])
        self.planner.reset()
        budget = self.max_intents or 2 * len(task.intents) + 2
        ended = False
        for _ in range(budget):
            text = self.planner.plan(PlannerInput(task.instruction, obs.get("image"), list(result.outcomes), obs,
                                                  task, info["subgoals_done"]))
            try:
                intent = parse_intent(text, BLOCKS, ZONES)
            except InvalidIntent as e:  # rejected, recorded, fed back; never executed
                result.outcomes.append(IntentOutcome(str(text), False, 0, f"invalid: {e}"))
                continue
            if intent.is_done:
                break
            outcome, obs, info, ended = self._execute(env, intent, obs)
            result.outcomes.append(outcome)
            result.steps += outcome.steps
            if ended:
                break
        result.subgoals_done, result.success = info["subgoals_done"], bool(info["is_success"])
        return result

    def _execute(self, env: gym.Env, intent, obs: dict):
        ref, info, ended = obs, {}, False
        self.skills.reset(intent, obs)
        for t in range(1, self.max_steps_per_intent + 1):
            obs, _, terminated, truncated, info = env.step(self.skills.act(obs))
            if P.achieved(intent, obs, ref):
                return IntentOutcome(str(intent), True, t, "achieved"), obs, info, terminated or truncated
            if terminated or truncated:
                return IntentOutcome(str(intent), False, t, "episode ended"), obs, info, True
        return IntentOutcome(str(intent), False, self.max_steps_per_intent, "timeout"), obs, info, ended

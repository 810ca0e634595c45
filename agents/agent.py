"""The hierarchical agent: plan, validate, execute the skill, feed the outcome back, replan.

planner.plan(instruction, image, history) -> text
    -> parse_intent                       "invalid: <why>" if it does not parse or fit the scene
    -> contract preconditions, safety     "rejected: <rule>: <why>" (agents/contracts.py, agents/safety.py)
    -> skill.reset(intent, obs); skill.act(obs) until the detector says the intent is done or its budget ends
    -> IntentOutcome appended to the history -> next plan, until done() or the intent budget ends

An invalid or rejected intent is recorded and fed back to the planner, never executed. Each outcome's
``success`` is the detector's verdict; ``EpisodeResult.verified`` holds the ground truth next to it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol

import gymnasium as gym
import numpy as np
from intentloop.agents.contracts import check_contract
from intentloop.agents.detectors import Detector, PredicateDetector
from intentloop.agents.planner import IntentOutcome, Planner, PlannerInput
from intentloop.agents.safety import SafetyRules
from intentloop.envs import predicates as P
from intentloop.envs.intents import Intent, InvalidIntent, parse_intent
from intentloop.envs.scene import BLOCKS, ZONES


class Skills(Protocol):
    name: str

    def reset(self, intent, obs: dict) -> None: ...

    def act(self, obs: dict): ...


@dataclass
class Trace:
    """Every low-level step of an episode, as columns; ``segment`` indexes the episode's outcomes."""

    frames: list[np.ndarray] = field(default_factory=list)  # (H, W, 3) uint8, one per observation
    actions: list[np.ndarray] = field(default_factory=list)  # (4,) per step
    rewards: list[float] = field(default_factory=list)
    proprio: list[np.ndarray] = field(default_factory=list)  # (7,) per observation
    segment: list[int] = field(default_factory=list)  # per step
    goal_distance: list[float] = field(default_factory=list)  # |block - goal| of the running intent, per step

    def observe(self, obs: dict) -> None:
        if "image" in obs:
            self.frames.append(obs["image"])
        self.proprio.append(obs["proprio"])

    def step(self, obs: dict, action, reward: float, segment: int, goal_distance: float) -> None:
        self.observe(obs)
        self.actions.append(np.asarray(action, np.float32))
        self.rewards.append(float(reward))
        self.segment.append(segment)
        self.goal_distance.append(goal_distance)


@dataclass
class EpisodeResult:
    seed: int | None
    backend: str
    task: dict
    instruction: str
    planner: str
    skills: str
    outcomes: list[IntentOutcome] = field(default_factory=list)  # success: the detector's verdict
    verified: list[bool] = field(default_factory=list)  # per outcome, the ground truth; False if never executed
    subgoals_done: int = 0
    n_subgoals: int = 0
    success: bool = False  # ground truth: the env's task predicate
    final_success: bool = False  # ground truth: the end state satisfies the task (nothing undone afterwards)
    judged_success: bool = False  # the detector's task verdict
    feedback: list[tuple[int, str]] = field(default_factory=list)  # what the user said: (outcomes before it, text)
    thoughts: list[str] = field(default_factory=list)  # a thinking planner's thought before each of its answers
    steps: int = 0
    trace: Trace | None = None  # every step, when the agent records

    def to_dict(self) -> dict:
        """The episode's summary (no per-step trace), JSON-serialisable."""
        return {k: v for k, v in asdict(self).items() if k != "trace"}


class HierarchicalAgent:
    def __init__(
        self,
        planner: Planner,
        skills: Skills,
        max_steps_per_intent: int = 60,
        max_intents: int | None = None,
        record: bool = False,
        *,
        contracts: bool = True,
        safety: SafetyRules | dict | None = None,
        detector: Detector | None = None,
        blank_image: bool = False,
    ):
        """``contracts``: check skill preconditions before executing; ``safety``: the rule set (or its config;
        None: the defaults); ``detector``: judges intent and task success (None: the ground-truth predicates);
        ``blank_image``: the planner sees an all-zero camera image (the perception ablation)."""
        if max_steps_per_intent < 1:
            raise ValueError(f"max_steps_per_intent must be >= 1, got {max_steps_per_intent}")
        if max_intents is not None and max_intents < 1:
            raise ValueError(
                f"max_intents must be >= 1 (or null: twice the task's subgoals plus two), got {max_intents}"
            )
        self.planner, self.skills = planner, skills
        self.max_steps_per_intent, self.max_intents, self.record = max_steps_per_intent, max_intents, record
        self.contracts, self.safety = contracts, SafetyRules.from_config(safety)
        self.detector = detector or PredicateDetector()
        self.blank_image = blank_image

    def check(self, text: str, obs: dict) -> tuple[Intent | None, str | None]:
        """Validate the planner's ``text`` in state ``obs``: (the intent, None) if it may run, else (the intent
        or None, the refusal reason: ``invalid: ...`` or ``rejected: <rule>: <why>``)."""
        try:
            intent = parse_intent(text, BLOCKS, ZONES)
        except InvalidIntent as e:
            return None, f"invalid: {e}"
        violations = (check_contract(intent, obs) if self.contracts else []) + self.safety.violations(intent, obs)
        return (intent, f"rejected: {violations[0]}") if violations else (intent, None)

    def run_episode(self, env: gym.Env, seed: int | None = None, options: dict | None = None) -> EpisodeResult:
        obs, info = env.reset(seed=seed, options=options)
        start, task = obs, info["task"]
        result = EpisodeResult(
            seed,
            env.unwrapped.backend,
            task.to_dict(),
            task.instruction,
            self.planner.name,
            self.skills.name,
            n_subgoals=info["n_subgoals"],
        )
        if self.record:
            result.trace = Trace()
            result.trace.observe(obs)
        self.planner.reset()
        budget = self.max_intents or 2 * len(task.intents) + 2
        ended = False
        for _ in range(budget):
            image = obs.get("image")
            if self.blank_image and image is not None:
                image = np.zeros_like(image)
            history, heard = list(result.outcomes), list(result.feedback)
            text = self.planner.plan(
                PlannerInput(task.instruction, image, history, obs, task, info["subgoals_done"], heard)
            )
            if getattr(self.planner, "think", False):
                result.thoughts.append(self.planner.last_thoughts[0])
            intent, refusal = self.check(text, obs)
            if refusal is not None:  # recorded, fed back; never executed
                result.outcomes.append(IntentOutcome(str(text), False, 0, refusal))
                result.verified.append(False)
                continue
            if intent.is_done:
                break
            outcome, verified, obs, info, ended, said = self._execute(
                env, intent, obs, result.trace, len(result.outcomes)
            )
            if said:
                result.feedback.append((len(result.outcomes) + 1, said))
            result.outcomes.append(outcome)
            result.verified.append(verified)
            result.steps += outcome.steps
            if ended:
                break
        result.subgoals_done, result.success = info["subgoals_done"], bool(info["is_success"])
        result.final_success = bool(info.get("final_success", result.success))
        heard = [text for _, text in result.feedback]
        result.judged_success = bool(self.detector.task_done(task, obs, info, start=start, heard=heard))
        return result

    def _execute(self, env: gym.Env, intent, obs: dict, trace: Trace | None, segment: int):
        """Run the skill until the detector says done, the episode ends, the user speaks (the intent is then
        ``interrupted``, so the planner hears it at once) or the budget is spent; returns the outcome, the ground
        truth at the end of the segment, the last observation and info, whether the episode ended, and what
        the user said."""
        ref, info, said = obs, {}, ""
        self.skills.reset(intent, obs)
        outcome = IntentOutcome(str(intent), False, self.max_steps_per_intent, "timeout")
        ended = False
        for t in range(1, self.max_steps_per_intent + 1):
            action = self.skills.act(obs)
            obs, reward, terminated, truncated, info = env.step(action)
            if trace is not None:
                distance = np.linalg.norm(P.block_pos(obs, intent.obj) - P.goal_position(intent, obs, ref))
                trace.step(obs, action, reward, segment, float(distance))
            said = info.get("feedback", "")
            if self.detector.intent_done(intent, obs, ref):
                outcome, ended = IntentOutcome(str(intent), True, t, "achieved"), terminated or truncated
                break
            if terminated or truncated:
                outcome, ended = IntentOutcome(str(intent), False, t, "episode ended"), True
                break
            if said:
                outcome = IntentOutcome(str(intent), False, t, "interrupted")
                break
        return outcome, bool(P.achieved(intent, obs, ref)), obs, info, ended, said

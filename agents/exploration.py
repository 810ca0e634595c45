"""Exploration for self-training: now and then an alternative valid intent instead of the planner's own.

    planner = EpsilonPlanner(VLMPlanner(model_path=..., temperature=0.7), epsilon=0.1)
    planner.seed(episode_seed)   # the same seed, the same detours and the same sampled intents

Each call also hands the inner planner a `sample_seed` drawn from the episode's stream, so a sampling planner
(``temperature > 0``) draws the same intents when an episode is run again, served or not, batched or not.
With probability ``epsilon`` a planning call returns a random valid intent over the scene's objects other than
the one the planner chose; ``done()`` is never forced, and the planner's own ``done()`` is never replaced (an
episode is not kept running after the planner believes it finished).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from intentloop.agents.planner import Planner, PlannerInput
from intentloop.envs.intents import DONE, valid_intents
from intentloop.envs.scene import BLOCKS, ZONES


def alternatives(blocks=BLOCKS, zones=ZONES) -> list[str]:
    """Every valid intent but ``done()``: the set the VLM decodes over."""
    return [t for t in valid_intents(tuple(blocks), tuple(zones)) if t != str(DONE)]


class EpsilonPlanner:
    def __init__(self, planner: Planner, epsilon: float, seed: int = 0):
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
        self.planner, self.epsilon, self.name = planner, epsilon, planner.name
        self.choices = alternatives()
        self.seed(seed)

    def seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        self.planner.reset()

    def plan(self, inp: PlannerInput) -> str:
        text = self.planner.plan(replace(inp, sample_seed=int(self.rng.integers(2**31))))
        if text == str(DONE) or self.epsilon == 0.0 or self.rng.random() >= self.epsilon:
            return text
        return str(self.rng.choice([t for t in self.choices if t != text]))

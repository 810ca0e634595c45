"""Closed-loop evaluation: run the hierarchical agent for N seeded episodes and compute the metrics.

Metrics (one meaning everywhere, see DESIGN.md):
- success_rate: fraction of episodes whose task predicate held (chains: every subgoal in order, at some
  moment; goal-level families: the goal predicate on the final state), with its 95% Wilson interval.
- final_success_rate: fraction whose end state satisfies the task (a subgoal undone later counts as undone).
- avg_chain_length: subgoals achieved in order per episode (CALVIN's metric on 5-intent chains); for goal-level
  families, the goal's conditions that hold at the end; goal_progress: the same as a fraction of n_subgoals.
- per_intent_success: per skill, the fraction of executed intents whose own predicate held.
- invalid_intents / rejected_intents: planner outputs that did not parse / broke a contract or safety rule.
- detector: the success detector's verdicts against the simulator's predicates (all agree with the default
  ground-truth detector): per executed intent and per task, tp / fp / tn / fn and the false-positive and
  false-negative rates (issue 17 asks <= 5% and <= 10% of a learned detector).
"""

from __future__ import annotations

import time
from collections import defaultdict

import gymnasium as gym
import numpy as np
from intentloop.agents.agent import EpisodeResult, HierarchicalAgent
from intentloop.agents.detectors import error_rates
from intentloop.envs.intents import parse_intent
from tqdm import tqdm


def run_episodes(
    env: gym.Env, agent: HierarchicalAgent, seeds: list[int], progress: bool = True, desc: str = "episodes"
) -> list[EpisodeResult]:
    return [agent.run_episode(env, seed=s) for s in tqdm(seeds, desc=desc, disable=not progress, unit="ep")]


def wilson(successes: int, n: int, z: float = 1.96) -> list[float]:
    """The 95% Wilson score interval of a success rate."""
    p, denom = successes / n, 1 + z * z / n
    center, half = (p + z * z / (2 * n)) / denom, z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [round(max(0.0, float(center - half)), 4), round(min(1.0, float(center + half)), 4)]


def confusion(pairs) -> dict:
    """tp / fp / tn / fn of (verdict, truth) pairs, and the false-positive and false-negative rates."""
    c = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    for verdict, truth in pairs:
        c[("t" if verdict == truth else "f") + ("p" if verdict else "n")] += 1
    return error_rates(c)


def summarize(results: list[EpisodeResult], seconds: float) -> dict:
    if not results:
        raise ValueError("no episodes to summarize")
    per_skill: dict[str, list[bool]] = defaultdict(list)
    invalid = rejected = 0
    intent_verdicts = []
    for r in results:
        for o, truth in zip(r.outcomes, r.verified, strict=True):
            if o.reason.startswith("invalid"):
                invalid += 1
            elif o.reason.startswith("rejected"):  # by a contract or safety rule, never executed
                rejected += 1
            else:
                per_skill[parse_intent(o.intent).skill].append(truth)
                intent_verdicts.append((o.success, truth))
    chain = np.array([r.subgoals_done for r in results], float)
    successes = sum(r.success for r in results)
    return {
        "episodes": len(results),
        "seeds": [r.seed for r in results],
        "success_rate": successes / len(results),
        "success_interval_95": wilson(successes, len(results)),
        "final_success_rate": float(np.mean([r.final_success for r in results])),
        "avg_chain_length": float(chain.mean()),
        "goal_progress": float(np.mean([r.subgoals_done / max(1, r.n_subgoals) for r in results])),
        "chain_length_histogram": {int(k): int((chain == k).sum()) for k in range(int(chain.max()) + 1)},
        "per_intent_success": {k: {"rate": float(np.mean(v)), "n": len(v)} for k, v in sorted(per_skill.items())},
        "invalid_intents": invalid,
        "rejected_intents": rejected,
        "detector": {
            "intent": confusion(intent_verdicts),
            "task": confusion((r.judged_success, r.success) for r in results),
        },
        "intents_per_episode": float(np.mean([len(r.outcomes) for r in results])),
        "env_steps": int(sum(r.steps for r in results)),
        "seconds": round(seconds, 3),
        "episodes_per_s": len(results) / seconds if seconds > 0 else float("inf"),
    }


def evaluate(
    env: gym.Env, agent: HierarchicalAgent, seeds: list[int], progress: bool = True, desc: str = "evaluate"
) -> tuple[dict, list[EpisodeResult]]:
    start = time.perf_counter()
    results = run_episodes(env, agent, seeds, progress, desc)
    return summarize(results, time.perf_counter() - start), results

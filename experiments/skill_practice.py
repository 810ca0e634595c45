"""Skill practice in a self-training round: RL training (RLlib PPO) of a skill that failed often, continued from
its current weights, kept only if its held-out success rises.

Reflection lists every skill failure (a valid, needed intent the skill did not achieve); a skill is practised
when its failures in the round reach ``min_failures`` and ``min_failure_rate`` of its executed intents. The
practised set is written as a full skill library (``<out>/<skill>/module``, the others copied), so the next
collection and the candidate's evaluation load it like any ``skills.path``; it is promoted with the planner.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path

from intentloop.agents.reflection import REFUSED
from intentloop.envs.intents import MOTOR_SKILLS, parse_intent
from intentloop.experiments.train_skills import heldout_success
from intentloop.policies.rllib_config import build_ppo
from intentloop.policies.skill_library import load_skill_module, save_skill_module
from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_LEARNER_GROUP, COMPONENT_RL_MODULE, DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from tqdm import tqdm


def failure_rates(rows: list[dict], skill_failures: list[dict]) -> dict[str, dict]:
    """Per skill: executed intents, skill failures among them, and the rate, over one round's episodes."""
    executed = Counter(
        parse_intent(o["intent"]).skill for row in rows for o in row["outcomes"] if not o["reason"].startswith(REFUSED)
    )
    failed = Counter(parse_intent(f["intent"]).skill for f in skill_failures)
    return {
        s: {"executed": executed[s], "failures": failed[s], "rate": failed[s] / executed[s] if executed[s] else 0.0}
        for s in sorted(executed)
    }


def to_practise(rates: dict[str, dict], min_failures: int, min_failure_rate: float, max_skills: int) -> list[str]:
    """The skills that failed often enough, most often first, at most ``max_skills``."""
    often = [s for s, r in rates.items() if r["failures"] >= min_failures and r["rate"] >= min_failure_rate]
    return sorted(often, key=lambda s: -rates[s]["rate"])[:max_skills]


def practise(skill: str, skills_dir: str | Path, staging: Path, env_kwargs: dict, rl: dict, iterations: int,
             eval_episodes: int, seed: int, min_gain: float = 0.0, progress: bool = True,
             trust_pickle: bool = False) -> dict:  # fmt: skip
    """PPO on ``skill`` from its weights under ``skills_dir``; the result is saved to ``staging/<skill>`` if its
    held-out success (same seeds before and after) rises by more than ``min_gain``. Returns the figures."""
    start = time.monotonic()
    current = load_skill_module(skills_dir, skill, trust_pickle)
    before = heldout_success(current, skill, env_kwargs, eval_episodes)
    spec = RLModuleSpec(module_class=type(current), model_config=current.model_config)
    algo = build_ppo(skill, env_kwargs, spec, rl, seed).build_algo()
    try:  # the current weights into the learner, synced to the EnvRunners by RLlib
        weights = {DEFAULT_MODULE_ID: current.get_state()}
        algo.set_state({COMPONENT_LEARNER_GROUP: {COMPONENT_LEARNER: {COMPONENT_RL_MODULE: weights}}})
        for _ in tqdm(range(iterations), desc=f"practise {skill} (PPO)", disable=not progress):
            algo.train()
        after = heldout_success(algo.get_module(), skill, env_kwargs, eval_episodes)
        figures = {"iterations": iterations, "heldout_before": before, "heldout_after": after,
                   "eval_episodes": eval_episodes, "kept": after > before + min_gain}  # fmt: skip
        if figures["kept"]:
            save_skill_module(algo.get_module(), staging / skill / "module")
    finally:
        algo.stop()
    figures["seconds"] = round(time.monotonic() - start, 1)
    if figures["kept"]:
        (staging / skill / "metrics.json").write_text(json.dumps(figures, indent=2))
    return figures


def finish_library(skills_dir: str | Path, staging: Path, out: Path) -> None:
    """Complete ``staging`` with the skills not practised (copied from ``skills_dir``) and move it to ``out``."""
    for skill in MOTOR_SKILLS:
        if not (staging / skill).exists():
            shutil.copytree(Path(skills_dir) / skill, staging / skill)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(staging, out)

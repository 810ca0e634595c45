"""The pieces of a self-training round that do not train anything: which episodes to run, how to score a
version from its evaluation episodes, and whether a candidate is promoted.

Collection seeds (from 10,000,000) never meet the evaluation seeds (``eval.seed`` onwards), so a version is never
judged on a scene it practised on.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
from intentloop.envs.tasks import TEMPLATED_FAMILIES
from intentloop.experiments.collect import EpisodeJob

COLLECT_SEED = 10_000_000
ROUND_SEEDS = 100_000  # practice seeds per round: round r collects from COLLECT_SEED + r * ROUND_SEEDS


def check_seeds(collect_episodes: int, eval_seed: int, eval_episodes: int) -> None:
    """A ValueError if practice seeds could meet the evaluation seeds or another round's."""
    if eval_seed < 0 or eval_seed + eval_episodes > COLLECT_SEED:
        raise ValueError(
            f"evaluation seeds must lie in [0, {COLLECT_SEED}), below every practice seed; "
            f"got eval.seed={eval_seed} with eval.episodes={eval_episodes}"
        )
    if collect_episodes > ROUND_SEEDS:
        raise ValueError(
            f"collect.episodes must be <= {ROUND_SEEDS} (one round's practice seeds), got {collect_episodes}"
        )


def _combos(splits: list[str], chain_lengths: list[int], families: list[str]) -> list[tuple[str, str, int]]:
    """(split, task, chain length): every chain length, then every goal-level family, in each split."""
    return [(s, "chain", n) for n in chain_lengths for s in splits] + [(s, f, 1) for f in families for s in splits]


def practice_jobs(
    round_: int, episodes: int, splits: list[str], chain_lengths: list[int], families: list[str] = ()
) -> list[EpisodeJob]:
    """Round ``round_``'s practice episodes, cycling through every (split, chain length) and (split, goal-level
    family), with fixed ids and seeds."""
    combos = _combos(splits, chain_lengths, list(families))
    return [
        EpisodeJob(f"r{round_:03d}-e{i:05d}", COLLECT_SEED + ROUND_SEEDS * round_ + i, split, n, task=task)
        for i in range(episodes)
        for split, task, n in [combos[i % len(combos)]]
    ]


def eval_jobs(
    episodes: int, seed: int, splits: list[str], chain_lengths: list[int], families: list[str] = ()
) -> list[EpisodeJob]:
    return [
        EpisodeJob(f"eval-{split}-{n if task == 'chain' else task}-seed{s}", s, split, n, task=task)
        for split in splits  # split by split, as before goal-level families joined
        for _, task, n in _combos([split], chain_lengths, list(families))
        for s in range(seed, seed + episodes)
    ]


def _set_name(task: dict) -> str:
    """A templated chain's set is its length (``heldout/5``), a goal-level task's its family (``heldout/clear``)."""
    return str(len(task["intents"])) if task.get("family", "chain") in TEMPLATED_FAMILIES else task["family"]


def _family(task: dict, name: str) -> str:
    """The train family a result counts for: the skill of a 1-intent chain, ``chain<N>``, or the goal family."""
    if not name.isdigit():
        return name
    return task["intents"][0].split("(")[0] if name == "1" else f"chain{name}"


def scores(results: list[dict]) -> dict:
    """Per evaluation set ``<split>/<chain length>`` or ``<split>/<goal-level family>``: success rate, average
    chain length (a goal-level task counts as one subgoal: its success) and episode count; per train-split
    family (`_family`): success rate."""
    sets, families = defaultdict(list), defaultdict(list)
    for r in results:
        split, name = r["task"]["split"], _set_name(r["task"])
        sets[f"{split}/{name}"].append(r)
        if split == "train":
            families[_family(r["task"], name)].append(r["success"])

    def chain(r: dict, name: str) -> float:
        return r["subgoals_done"] if name.split("/")[1].isdigit() else float(r["success"])

    return {
        "sets": {
            k: {
                "success_rate": float(np.mean([r["success"] for r in v])),
                "avg_chain_length": float(np.mean([chain(r, k) for r in v])),
                "episodes": len(v),
            }
            for k, v in sorted(sets.items())
        },
        "train_families": {k: float(np.mean(v)) for k, v in sorted(families.items())},
    }


def heldout_score(s: dict) -> float:
    """The held-out figure promotion looks at: average chain length over the held-out sets (a goal-level set
    counts as one subgoal: its success rate)."""
    held = [v for k, v in s["sets"].items() if k.startswith("heldout/")]
    if not held:
        raise ValueError("promotion needs held-out evaluation: add heldout to eval.splits")
    return float(np.mean([v["avg_chain_length"] for v in held]))


def heldout_success(s: dict) -> float:
    """Mean success rate over the held-out sets."""
    return float(np.mean([v["success_rate"] for k, v in s["sets"].items() if k.startswith("heldout/")]))


def best_families(evals: list[dict]) -> dict[str, float]:
    """Per train family, the best success rate any of ``evals`` reached (the promoted versions so far)."""
    best: dict[str, float] = {}
    for e in evals:
        for f, v in e["train_families"].items():
            best[f] = max(best.get(f, v), v)
    return best


def family_drops(candidate: dict, reference: dict[str, float]) -> dict[str, float]:
    """How far each train family of ``candidate`` is below ``reference`` (negative: above)."""
    return {f: reference[f] - v for f, v in candidate["train_families"].items() if f in reference}


def promotion(
    candidate: dict, promoted: dict, max_drop: float, min_gain: float, reference: dict[str, float] | None = None
) -> tuple[bool, str]:
    """(promote?, why): held-out must improve over ``promoted`` and no train family may be more than
    ``max_drop`` below ``reference`` (default: the promoted version's; self-training passes the best every family
    reached among the promoted versions, so drops cannot add up round after round)."""
    gain = heldout_score(candidate) - heldout_score(promoted)
    reference = promoted["train_families"] if reference is None else reference
    drops = {f: d for f, d in family_drops(candidate, reference).items() if d > max_drop + 1e-9}  # 1e-9: rounding
    if drops:
        worst = max(drops, key=drops.get)
        return False, f"train family {worst} dropped by {drops[worst]:.3f} (> {max_drop})"
    if gain <= min_gain:
        return False, f"held-out average chain length changed by {gain:+.3f} (needs > {min_gain:+.3f})"
    return True, f"held-out average chain length {gain:+.3f}, no train family dropped by more than {max_drop}"


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` atomically: readers (and a resumed run) see the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)

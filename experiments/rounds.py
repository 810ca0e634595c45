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
ROUND_SEEDS = 100_000  # practice seeds per round: round r collects from COLLECT_SEED + r * ROUND_SEEDS ...
MAX_ROUNDS, MAX_RUN_SEED = 100, 200  # ... + run seed * MAX_ROUNDS * ROUND_SEEDS (independent runs never meet)


def check_seeds(
    collect_episodes: int, eval_seed: int, eval_episodes: int, report_seed: int | None = None, report_episodes: int = 0
) -> None:
    """A ValueError if practice seeds could meet the evaluation seeds or another round's, or the report seeds
    the selection seeds (``eval``)."""
    for name, seed, n in (("eval", eval_seed, eval_episodes), ("report", report_seed, report_episodes)):
        if seed is not None and (seed < 0 or seed + n > COLLECT_SEED):
            raise ValueError(
                f"{name} seeds must lie in [0, {COLLECT_SEED}), below every practice seed; "
                f"got {name}.seed={seed} with {name}.episodes={n}"
            )
    overlap = report_seed is not None and eval_seed < report_seed + report_episodes
    if overlap and report_seed < eval_seed + eval_episodes:
        raise ValueError(
            f"report seeds [{report_seed}, {report_seed + report_episodes}) overlap the selection seeds "
            f"[{eval_seed}, {eval_seed + eval_episodes}) (eval.seed, eval.episodes): choose a disjoint report.seed"
        )
    if collect_episodes > ROUND_SEEDS:
        raise ValueError(
            f"collect.episodes must be <= {ROUND_SEEDS} (one round's practice seeds), got {collect_episodes}"
        )


def _combos(splits: list[str], chain_lengths: list[int], families: list[str]) -> list[tuple[str, str, int]]:
    """(split, task, chain length): every chain length, then every goal-level family, in each split."""
    return [(s, "chain", n) for n in chain_lengths for s in splits] + [(s, f, 1) for f in families for s in splits]


def check_run(rounds: int, seed: int) -> None:
    """A ValueError if a run's practice seeds would leave the range kept for them."""
    if not 0 <= rounds < MAX_ROUNDS:
        raise ValueError(f"rounds must be in [0, {MAX_ROUNDS}), got {rounds}")
    if not 0 <= seed < MAX_RUN_SEED:
        raise ValueError(f"seed (and every entry of seeds) must be in [0, {MAX_RUN_SEED}), got {seed}")


def practice_jobs(
    round_: int,
    episodes: int,
    splits: list[str],
    chain_lengths: list[int],
    families: list[str] = (),
    run_seed=0,
    repeats: int = 1,
) -> list[EpisodeJob]:
    """Round ``round_``'s practice episodes, cycling through every (split, chain length) and (split, goal-level
    family), with fixed ids and seeds (other seeds for every ``run_seed``: independent runs). With ``repeats``
    > 1, ``episodes // repeats`` seeds are each run ``repeats`` times with their own draws of the planner's
    sampling and exploration: runs of one situation whose outcomes differ are preference pairs."""
    combos = _combos(splits, chain_lengths, list(families))
    first = COLLECT_SEED + ROUND_SEEDS * (round_ + MAX_ROUNDS * run_seed)
    return [
        EpisodeJob(f"r{round_:03d}-e{i:05d}" + (f"-d{d}" * (repeats > 1)), first + i, split, n, task=task, draw=d)
        for i in range(episodes // repeats)
        for split, task, n in [combos[i % len(combos)]]
        for d in range(repeats)
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


def _gate_sets(s: dict) -> list[dict]:
    """The sets promotion looks at: the practice split's (else the held-out split's); never the unseen split's."""
    sets = [v for k, v in s["sets"].items() if k.startswith("practice/")]
    return sets or [v for k, v in s["sets"].items() if k.startswith("heldout/")]


def heldout_score(s: dict) -> float:
    """The held-out figure promotion looks at: average chain length over the practice sets, or the held-out sets
    when no practice set is evaluated (a goal-level set counts as one subgoal: its success rate)."""
    held = _gate_sets(s)
    if not held:
        raise ValueError("promotion needs held-out evaluation: add practice (or heldout) to eval.splits")
    return float(np.mean([v["avg_chain_length"] for v in held]))


def heldout_success(s: dict) -> float:
    """Mean success rate over the sets promotion looks at."""
    return float(np.mean([v["success_rate"] for v in _gate_sets(s)]))


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


def _spread(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "values": [float(v) for v in values]}  # fmt: skip


def seeds_summary(runs: dict[int, list[dict]]) -> dict:
    """Mean +- std (sample std) over independent runs, per round and report set: the promoted planner's success
    rate and average chain length, the control arm's, and the loop's gain over the control (paired by seed)."""
    rounds = min(len(h) for h in runs.values())
    out = []
    for r in range(rounds):
        ms = [h[r] for h in runs.values()]
        row = {"round": r, "promoted": [bool(m["promoted"]) for m in ms], "sets": {}}
        controlled = all(m.get("control") for m in ms)
        for k in ms[0]["report"]["sets"]:
            cell = {}
            for metric in ("success_rate", "avg_chain_length"):
                mine = [m["report"]["sets"][k][metric] for m in ms]
                cell[metric] = _spread(mine)
                if controlled:
                    control = [m["control"]["report"]["sets"][k][metric] for m in ms]
                    cell[f"control_{metric}"] = _spread(control)
                    cell[f"gain_over_control_{metric}"] = _spread([a - b for a, b in zip(mine, control, strict=True)])
            row["sets"][k] = cell
        out.append(row)
    return {"seeds": list(runs), "rounds": out}


def seeds_table(summary: dict) -> str:
    """Success mean +- std over the seeds per round and set, the control arm's beside it."""
    keys = list(summary["rounds"][0]["sets"])
    head = f"{'round':<6}" + "".join(f"{k:>30}" for k in keys)
    lines = [f"success rate over seeds {summary['seeds']}: self-training mean+-std (control mean+-std)", head]
    for row in summary["rounds"]:
        cells = ""
        for k in keys:
            c = row["sets"][k]
            text = f"{c['success_rate']['mean']:.2f}+-{c['success_rate']['std']:.2f}"
            if "control_success_rate" in c:
                text += f" ({c['control_success_rate']['mean']:.2f}+-{c['control_success_rate']['std']:.2f})"
            cells += f"{text:>30}"
        lines.append(f"{row['round']:<6}{cells}")
    return "\n".join(lines)


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` atomically: readers (and a resumed run) see the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)

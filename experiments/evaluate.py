"""Evaluate a planner and a skill library in the closed loop.

How to run:        intentloop evaluate planner=oracle skills=scripted backend=mujoco chain_length=5 episodes=200
Quick check:       intentloop evaluate episodes=5 env.image=false
Goal-level tasks:  intentloop evaluate task=clear planner=text      (the blind baseline; families in envs/goal_tasks.py)
Does it look?      intentloop evaluate task=refer planner=vlm planner.model_path=... ablation=blank_image
Four levels:       intentloop evaluate -m task=clear,fill,refer level=L1,L2,L3   and   task=clear_except level=L4
Results to expect: oracle + scripted skills solve 1-intent tasks and 5-intent chains (see docs/BENCHMARKS.md).

Writes ``metrics.json`` (success rate, average chain length, per-intent success, episodes/s, the seeds) and
``episodes.jsonl`` (one line per episode: task, instruction, intents and outcomes) to the Hydra run dir;
with ``record=true`` also every step, camera frames included, to the episode store ``episodes/`` there
(replay one with ``intentloop replay episode=<id> store=<run dir>/episodes``).
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import intentloop.configs.planner_schema  # noqa: F401  (registers the config schemas, planner=vlm included)
from hydra.core.hydra_config import HydraConfig
from intentloop.agents.episode_store import episode_row, write_shard
from intentloop.envs.goal_tasks import UNTRAINED_FAMILIES
from intentloop.experiments.common import make_agent, make_env, user_errors
from intentloop.experiments.evaluation import evaluate
from omegaconf import DictConfig, OmegaConf

ABLATIONS = (None, "blank_image")
# The four generalization levels: (split, phrasings), and whether the family must be one never trained.
LEVELS = {
    "L1": ("train", "train", False),  # new scenes (seeds) of trained families
    "L2": ("heldout", "train", False),  # held-out compositions
    "L3": ("train", "heldout", False),  # phrasings of the held-out grammar: new words and structures
    "L4": ("train", "train", True),  # a family never trained that combines trained concepts
}


def apply_level(cfg: DictConfig) -> None:
    """Set ``split`` and ``env.phrasings`` for ``cfg.level``; a family that does not fit the level is an error."""
    if cfg.level is None:
        return
    if cfg.level not in LEVELS:
        raise ValueError(f"unknown level {cfg.level!r}; choose one of: {', '.join(LEVELS)}")
    cfg.split, cfg.env.phrasings, untrained = LEVELS[cfg.level]
    if untrained != (cfg.task in UNTRAINED_FAMILIES):
        which = "a never-trained family" if untrained else "a trained family"
        raise ValueError(
            f"level {cfg.level} needs {which}; task={cfg.task} is not one "
            f"(never trained: {', '.join(UNTRAINED_FAMILIES)})"
        )


def write_results(run_dir: Path, metrics: dict, results) -> None:
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    with open(run_dir / "episodes.jsonl", "w") as f:
        for r in results:
            f.write(json.dumps(r.to_dict()) + "\n")


@hydra.main(config_path="../configs", config_name="evaluate", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> dict:
    if cfg.episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {cfg.episodes}")
    if cfg.seed < 0:
        raise ValueError(f"seed must be >= 0 (episodes use seed, seed + 1, ...), got {cfg.seed}")
    if cfg.ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {cfg.ablation!r}; choose one of: {', '.join(map(str, ABLATIONS))}")
    apply_level(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    env = make_env(cfg, cfg.split, cfg.chain_length, cfg.task)
    agent = make_agent(cfg, cfg.planner, cfg.skills.name)
    agent.record = cfg.record
    seeds = list(range(cfg.seed, cfg.seed + cfg.episodes))
    metrics, results = evaluate(env, agent, seeds, cfg.progress, desc=f"evaluate {cfg.backend}")
    if cfg.ablation == "blank_image":  # the same episodes, the planner's camera zeroed
        agent.blank_image, agent.record = True, False
        ablated, _ = evaluate(env, agent, seeds, cfg.progress, desc="evaluate blank image")
        metrics["ablation"] = {"blank_image": ablated}
    env.close()
    metrics = {"config": OmegaConf.to_container(cfg, resolve=True), **metrics}
    write_results(run_dir, metrics, results)
    if cfg.record:
        rows = [episode_row(r, f"{cfg.backend}-{cfg.split}-{cfg.chain_length}-seed{r.seed}") for r in results]
        print(f"recorded {len(rows)} episodes to {write_shard(str(run_dir / 'episodes'), rows)}")
    if cfg.ablation:
        a = metrics["ablation"][cfg.ablation]
        print(f"{cfg.ablation}: success_rate={a['success_rate']:.3f}  avg_chain_length={a['avg_chain_length']:.2f}")
    print(
        f"success_rate={metrics['success_rate']:.3f}  avg_chain_length={metrics['avg_chain_length']:.2f}  "
        f"episodes={metrics['episodes']}  episodes/s={metrics['episodes_per_s']:.1f}"
    )
    print(f"wrote {run_dir / 'metrics.json'}")
    return metrics


if __name__ == "__main__":
    main()

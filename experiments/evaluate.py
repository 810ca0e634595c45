"""Evaluate a planner and a skill library in the closed loop.

How to run:        intentloop evaluate planner=oracle skills=scripted backend=mujoco chain_length=5 episodes=200
Quick check:       intentloop evaluate episodes=5 env.image=false
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
from intentloop.experiments.common import make_agent, make_env, user_errors
from intentloop.experiments.episode_store import episode_row, write_shard
from intentloop.experiments.evaluation import evaluate
from omegaconf import DictConfig, OmegaConf


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
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    env = make_env(cfg, cfg.split, cfg.chain_length, cfg.task)
    agent = make_agent(cfg, cfg.planner, cfg.skills.name)
    agent.record = cfg.record
    seeds = list(range(cfg.seed, cfg.seed + cfg.episodes))
    metrics, results = evaluate(env, agent, seeds, cfg.progress, desc=f"evaluate {cfg.backend}")
    env.close()
    metrics = {"config": OmegaConf.to_container(cfg, resolve=True), **metrics}
    write_results(run_dir, metrics, results)
    if cfg.record:
        rows = [episode_row(r, f"{cfg.backend}-{cfg.split}-{cfg.chain_length}-seed{r.seed}") for r in results]
        print(f"recorded {len(rows)} episodes to {write_shard(str(run_dir / 'episodes'), rows)}")
    print(
        f"success_rate={metrics['success_rate']:.3f}  avg_chain_length={metrics['avg_chain_length']:.2f}  "
        f"episodes={metrics['episodes']}  episodes/s={metrics['episodes_per_s']:.1f}"
    )
    print(f"wrote {run_dir / 'metrics.json'}")
    return metrics


if __name__ == "__main__":
    main()

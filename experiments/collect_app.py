"""`intentloop collect`: episodes of one (split, chain length) collected by Ray actors into an episode store.

How to run:    intentloop collect episodes=200 collect.workers=2 split=heldout chain_length=5
               intentloop collect planner=vlm planner.model_path=<planner> planner.temperature=0.7 collect.epsilon=0.1
On a cluster:  intentloop collect ray.address=auto collect.workers=16 store=s3://bucket/episodes

Writes ``<run dir>/episodes`` (or ``store=...``) and ``<run dir>/collect.json`` (episodes, skipped, lost, dead
workers, success, episodes/s, nodes). Re-running with the same store skips the episodes it already holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import intentloop.configs.self_train_schema  # noqa: F401  (registers the config schemas)
from hydra.core.hydra_config import HydraConfig
from intentloop.experiments.collect import EpisodeJob, collect, summary
from intentloop.experiments.common import user_errors
from omegaconf import DictConfig, OmegaConf


@hydra.main(config_path="../configs", config_name="collect", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> dict:
    if cfg.episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {cfg.episodes}")
    if cfg.seed < 0:
        raise ValueError(f"seed must be >= 0 (episodes use seed, seed + 1, ...), got {cfg.seed}")
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    store = cfg.store or str(run_dir / "episodes")
    name = f"{cfg.backend}-{cfg.split}-{cfg.chain_length}"
    jobs = [
        EpisodeJob(f"{name}-seed{s}", s, cfg.split, cfg.chain_length, cfg.phrasings, cfg.task)
        for s in range(cfg.seed, cfg.seed + cfg.episodes)
    ]
    plain = OmegaConf.to_container(cfg, resolve=True)
    report = collect(
        jobs,
        store,
        workers=cfg.collect.workers,
        backend=cfg.backend,
        planner=plain["planner"],
        skills=plain["skills"],
        env=plain["env"],
        agent=plain["agent"],
        epsilon=cfg.collect.epsilon,
        serve_planner=cfg.collect.serve_planner,
        planner_replicas=cfg.collect.planner_replicas,
        max_retries=cfg.collect.max_retries,
        progress=cfg.progress,
        ray_address=cfg.ray.address,
        num_cpus=cfg.ray.num_cpus,
    )
    result = {"store": store, **summary(report)}
    (run_dir / "collect.json").write_text(json.dumps(result, indent=2))
    print(
        f"collected {result['episodes']} episodes ({result['skipped']} already in the store, "
        f"{len(result['lost'])} lost, {result['dead_workers']} collectors died) "
        f"at {result['episodes_per_s']:.2f} episodes/s into {store}"
    )
    return result


if __name__ == "__main__":
    main()

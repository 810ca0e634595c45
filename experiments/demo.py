"""The main job on embedded defaults.

How to run:        intentloop demo
Faster:            intentloop demo episodes=5 backend=pybullet

Today the demo runs the scripted loop: the oracle planner and the scripted skills in closed loop, on the train
and held-out splits, for 1-intent tasks and 5-intent chains, and prints a summary table. Training the skills
and the planner, self-training rounds and TensorBoard replays join the demo as their issues land (the
commands exist on their own already); the demo says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import intentloop.configs.schema  # noqa: F401  (registers the config schemas)
from hydra.core.hydra_config import HydraConfig
from intentloop.experiments.common import make_agent, make_env, user_errors
from intentloop.experiments.evaluation import evaluate
from omegaconf import DictConfig

PENDING = (
    "training the RLlib skills and the VLM planner (today: intentloop train-skills / train-planner)",
    "self-training rounds",
    "TensorBoard replays of the runs (today: evaluate record=true, then intentloop replay)",
)


def table(rows: list[dict]) -> str:
    head = f"{'split':<9}{'intents':>8}{'episodes':>10}{'success':>10}{'chain len':>11}{'eps/s':>8}"
    lines = [head, "-" * len(head)]
    lines += [
        f"{r['split']:<9}{r['chain_length']:>8}{r['episodes']:>10}{r['success_rate']:>10.2f}"
        f"{r['avg_chain_length']:>11.2f}{r['episodes_per_s']:>8.1f}"
        for r in rows
    ]
    return "\n".join(lines)


@hydra.main(config_path="../configs", config_name="demo", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> list[dict]:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    print(
        "intentloop demo: the scripted loop (oracle planner + scripted skills) on "
        f"{cfg.backend}; still to come in the demo: {'; '.join(PENDING)}."
    )
    agent = make_agent(cfg, "oracle", "scripted")
    seeds = list(range(cfg.seed, cfg.seed + cfg.episodes))
    rows = []
    for split in cfg.splits:
        for length in cfg.chain_lengths:
            env = make_env(cfg, split, length)
            metrics, _ = evaluate(env, agent, seeds, cfg.progress, desc=f"{split} {length}-intent")
            env.close()
            rows.append({"split": split, "chain_length": length, **metrics})
    (run_dir / "summary.json").write_text(json.dumps(rows, indent=2))
    print(table(rows))
    print(f"wrote {run_dir / 'summary.json'}")
    return rows


if __name__ == "__main__":
    main()

"""Train the VLM planner on scripted-oracle demonstrations from the train split.

How to run:          intentloop train-planner          (or: python -m intentloop.experiments.train_planner)
Quick check:         ... data.episodes=[4,4] train.steps=4 train.eval_every=2 data.val_fraction=0.25
Reuse the data:      ... data_cache=/tmp/planner_data.npz   (collected on the first run, read on the next ones)
More of a family:    ... data.extra_episodes.clear=1500 data.extra_scenes.refer=6000   (after the default data,
                     which stays as it was: the same seeds, example for example)
Fine-tune a model:   ... planner.model_path=<save_pretrained folder>
Results to expect:   default data: 2200 chain episodes, 350 of each trained goal-level family, 3000 scene examples
                     per scene-dependent family and captions of the recorded images (79,435 examples, 37,238 of
                     them captions, ~8 minutes of collection, before `fill_except` added 350 episodes and 3000
                     scenes). 5000 steps of batch 32 (~33 CPU minutes on one
                     thread) gave val/exact_match 0.65 and the first planner that uses the image (L1 goal families
                     0.42, with the camera zeroed 0.14); fine-tuning on, 0.80 after 5000 more steps at
                     lr 5e-4 and 0.82 after 3000 more at 3e-4 (planner v4 in docs/BENCHMARKS.md). Fine-tuning
                     the shipped planner (planner.model_path=shipped) with train.arg_smoothing=0.4 for held-out
                     compositions: 1500 steps at 0.2, then 4000 at 0.4 (~33 minutes) took planner v4 to v5
                     (held-out compositions, L2: 0.36 -> 0.53).
                     Chains only (data.families=[] data.scene_examples=0 data.captions=0): val/exact_match ~0.95.
Teach it to think:   ... train.think=true: a thought before each intent (what each zone holds, the held block;
                     agents/vlm/data.py `scene_thought`), then the intent; the saved checkpoint thinks by default
                     (planner.think=null). Needs data collected since planner v6 (examples carry their thought).

Writes the trained planner (model + processor, ``save_pretrained``) to ``<run dir>/planner``, TensorBoard
scalars to ``<run dir>/tb`` and ``metrics.json``; evaluate it with
``intentloop evaluate planner=vlm planner.model_path=<run dir>/planner``.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import intentloop.configs.planner_schema  # noqa: F401  (registers the config schemas)
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from intentloop.agents.vlm.data import (
    check_examples_file,
    collect_examples,
    load_examples,
    save_examples,
    split_examples,
)
from intentloop.agents.vlm.modeling import build_default_model, load_model
from intentloop.agents.vlm.training import train_planner
from intentloop.configs.planner_schema import TrainPlannerConfig
from intentloop.experiments.common import user_errors, writable_folder
from omegaconf import DictConfig, OmegaConf


def keep_captions(examples: list, fraction: float, seed: int) -> list:
    """Every intent example and each cached caption with probability ``fraction`` (`DataSettings.captions`): a
    cache collected with all captions trains with fewer, so the two tasks' share of the batches is a setting."""
    rng = np.random.default_rng(seed)
    return [e for e in examples if e.task == "plan" or rng.random() < fraction]


def examples_for(c: TrainPlannerConfig) -> list:
    if c.data_cache and Path(c.data_cache).exists():
        print(f"reading planner data from {c.data_cache}")
        return keep_captions(load_examples(c.data_cache), c.data.captions, c.data.seed)
    examples = collect_examples(c.data, progress=c.progress)
    if c.data_cache:
        save_examples(c.data_cache, examples)
        print(f"wrote {len(examples)} examples to {c.data_cache}")
    return examples


@hydra.main(config_path="../configs", config_name="train_planner", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> dict:
    c: TrainPlannerConfig = OmegaConf.to_object(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    torch.set_num_threads(c.train.threads)
    # The model, the output folder and a cached data file are checked before the data is collected.
    model, processor = (
        load_model(c.planner.model_path) if c.planner.model_path else build_default_model(c.planner.model)
    )
    out = writable_folder(c.output_dir or run_dir / "planner", "output_dir")
    if c.data_cache and Path(c.data_cache).exists():
        check_examples_file(c.data_cache)
    elif c.data_cache:
        writable_folder(Path(c.data_cache).absolute().parent, "the folder of data_cache")
    train, val = split_examples(examples_for(c), c.data.val_fraction, c.data.seed)
    metrics = train_planner(model, processor, train, val, out, c.train, logdir=run_dir / "tb", progress=c.progress)
    metrics = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "train_examples": len(train),
        "val_examples": len(val),
        "planner": str(out),
        **metrics,
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(
        f"train/loss={metrics.get('train/loss', float('nan')):.4f}  "
        f"val/exact_match={metrics.get('val/exact_match', float('nan')):.3f}  steps={metrics['steps']}  "
        f"examples={len(train)}+{len(val)}  seconds={metrics['seconds']}"
    )
    print(f"wrote the planner to {out}; evaluate: intentloop evaluate planner=vlm planner.model_path={out}")
    return metrics


if __name__ == "__main__":
    main()

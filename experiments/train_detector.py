"""Train the learned success detector on simulator-labelled episodes of the train split.

How to run:        intentloop train-detector        (or: python -m intentloop.experiments.train_detector)
Quick check:       ... data.episodes=[4,4,0,0,0] data.family_episodes=2 data.val_fraction=0.3 train.steps=5
Reuse the data:    ... data_cache=/tmp/detector_data.npz   (collected on the first run, read on the next ones)
Use it:            intentloop evaluate agent.detector.name=learned agent.detector.path=<run dir>/detector
                   (metrics.json `detector` then holds its false-positive and false-negative rates against the
                   simulator's predicates, per intent and per task)
Results to expect: see docs/BENCHMARKS.md "Learned success detector".

The data (agents/detector_data.py): oracle + scripted-skill episodes with detours and noisy skills, every
intent's start and later frames with the simulator's verdict; the model (agents/learned_detector.py) judges from
camera frames, proprioception and words only. The thresholds are chosen on the validation episodes (at most
``train.max_false_positive_rate`` false positives, as the agent asks at run time) and saved in the checkpoint.
Writes ``<run dir>/detector`` (save_pretrained), ``metrics.json`` and TensorBoard scalars in ``<run dir>/tb``.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import intentloop.configs.detector_schema  # noqa: F401  (registers the config schema)
import torch
from hydra.core.hydra_config import HydraConfig
from intentloop.agents.detector_data import collect_detector_data, load_detector_data, save_detector_data
from intentloop.agents.detector_training import train_detector
from intentloop.agents.learned_detector import DetectorConfig, SuccessDetectorModel, load_detector_model
from intentloop.configs.detector_schema import TrainDetectorConfig
from intentloop.experiments.common import user_errors, writable_folder
from omegaconf import DictConfig, OmegaConf


def data_for(c: TrainDetectorConfig):
    if c.data_cache and Path(c.data_cache).exists():
        print(f"reading detector data from {c.data_cache}")
        return load_detector_data(c.data_cache)
    data = collect_detector_data(c.data, progress=c.progress)
    if c.data_cache:
        save_detector_data(c.data_cache, data)
        print(f"wrote {len(data)} examples ({len(data.frames)} frames) to {c.data_cache}")
    return data


def model_for(c: TrainDetectorConfig, image_size: int) -> SuccessDetectorModel:
    if c.init:
        model = load_detector_model(c.init)
        if model.config.image_size != image_size:
            raise ValueError(
                f"the detector at {c.init} takes {model.config.image_size}px images, the data has {image_size}px"
            )
        return model
    m = c.model
    config = DetectorConfig(image_size=image_size, channels=m.channels, text_dim=m.text_dim, buckets=m.buckets,
                            hidden=m.hidden)  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(m.seed)
        return SuccessDetectorModel(config)


@hydra.main(config_path="../configs", config_name="train_detector", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> dict:
    c: TrainDetectorConfig = OmegaConf.to_object(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    torch.set_num_threads(c.train.threads)
    if c.init:
        load_detector_model(c.init)  # a bad checkpoint or output folder: one sentence before the data is collected
    out = writable_folder(c.output_dir or run_dir / "detector", "output_dir")
    data = data_for(c)
    model = model_for(c, int(data.frames.shape[1]))
    metrics = train_detector(model, data, c.train, out, logdir=run_dir / "tb", progress=c.progress)
    metrics = {"config": OmegaConf.to_container(cfg, resolve=True), "detector": str(out), **metrics}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    for kind, m in metrics["val"].items():
        r = m["run_time"]
        print(f"{kind}: threshold={m['threshold']:.2f}  false_positive_rate={r['false_positive_rate']:.3f} "
              f"(of {r['negatives']})  false_negative_rate={r['false_negative_rate']:.3f} (of {r['positives']})  "
              f"ece={m['frames']['ece']:.3f}")  # fmt: skip
    print(f"wrote the detector to {out}; use it: intentloop evaluate agent.detector.name=learned "
          f"agent.detector.path={out}")  # fmt: skip
    return metrics


if __name__ == "__main__":
    main()

"""Structured config schema of ``intentloop train-detector`` (registered as ``base_train_detector``).

The data and training settings are the dataclasses of ``intentloop.agents.detector_data`` and
``intentloop.agents.detector_training``, used as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from intentloop.agents.detector_data import DetectorDataSettings
from intentloop.agents.detector_training import DetectorTrainSettings


@dataclass
class DetectorModelSettings:
    """The model's size (agents/learned_detector.py `DetectorConfig`; the image size is the data's)."""

    channels: list[int] = field(default_factory=lambda: [32, 64, 64, 64])  # per strided convolution
    text_dim: int = 64
    buckets: int = 4096  # hash buckets of words and character trigrams
    hidden: int = 128
    seed: int = 0  # initial weights

    def __post_init__(self):
        if not self.channels or min(self.channels) < 1 or min(self.text_dim, self.buckets, self.hidden) < 1:
            raise ValueError(f"model.channels must list widths >= 1 and model.text_dim, model.buckets and "
                             f"model.hidden be >= 1. Got {list(self.channels)}, {self.text_dim}, {self.buckets}, "
                             f"{self.hidden}.")  # fmt: skip


@dataclass
class TrainDetectorConfig:
    data: DetectorDataSettings = field(default_factory=DetectorDataSettings)
    train: DetectorTrainSettings = field(default_factory=DetectorTrainSettings)
    model: DetectorModelSettings = field(default_factory=DetectorModelSettings)
    init: str | None = None  # a detector folder to fine-tune; null: a new model from `model`
    data_cache: str | None = None  # .npz of collected data: read if it exists, else written after collecting
    output_dir: str | None = None  # where the detector is saved; default: <run dir>/detector
    progress: bool = True


ConfigStore.instance().store(name="base_train_detector", node=TrainDetectorConfig)

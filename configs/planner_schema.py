"""Structured config schemas of the VLM planner: the ``planner=vlm`` group option and ``intentloop train-planner``.

Importing this module registers them in Hydra's ConfigStore (``base_vlm_planner`` in the ``planner`` group,
``base_train_planner``). The model, data and training settings are the dataclasses of
``intentloop.agents.vlm.configuration``, used as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import intentloop.configs.schema  # noqa: F401  (registers the base schemas, the planner group included)
from hydra.core.config_store import ConfigStore
from intentloop.agents.vlm.configuration import DataSettings, TrainSettings, VLMModelConfig
from intentloop.configs.schema import PlannerConfig


@dataclass
class VLMPlannerConfig(PlannerConfig):
    name: str = "vlm"
    model_path: str | None = None  # a save_pretrained folder; None: the tiny default built from `model`
    temperature: float = 0.0  # 0: greedy; > 0 samples among valid intents (exploration)
    max_history: int = 12  # outcomes shown in the prompt
    avoid_refused: bool = True  # decoding leaves out intents refused since the last one that ran
    think: bool | None = None  # a thought before each intent; null: as the checkpoint was trained (train.think)
    max_thought: int = 48  # tokens a thought may take before `next:` is forced
    device: str = "cpu"
    model: VLMModelConfig = field(default_factory=VLMModelConfig)  # used only when model_path is null


@dataclass
class TrainPlannerConfig:
    planner: VLMPlannerConfig = field(default_factory=VLMPlannerConfig)  # model_path: fine-tune that checkpoint
    data: DataSettings = field(default_factory=DataSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    data_cache: str | None = None  # .npz of collected examples: read if it exists, else written after collecting
    output_dir: str | None = None  # where the trained planner is saved; default: <run dir>/planner
    progress: bool = True


cs = ConfigStore.instance()
cs.store(name="base_train_planner", node=TrainPlannerConfig)
cs.store(group="planner", name="base_vlm_planner", node=VLMPlannerConfig)

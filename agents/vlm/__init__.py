"""The transformers VLM planner: model, tokenizer, constrained decoding, record/replay, data and training.

Imports are lazy, so reading the settings (``intentloop.agents.vlm.configuration``) does not load torch or
transformers.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "VLMModelConfig": "configuration",
    "DataSettings": "configuration",
    "TrainSettings": "configuration",
    "VLMPlanner": "vlm_planner",
    "build_default_model": "modeling",
    "load_model": "modeling",
    "RecordingPlanner": "record",
    "ReplayPlanner": "record",
    "collect_examples": "data",
    "train_planner": "training",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)

"""The learned skill library: one RLlib RLModule per skill, rebuilt from its weights and a JSON spec, no Algorithm,
no Ray, no unpickling.

Layout written by ``intentloop train-skills`` (``<path>`` is its run directory or any folder laid out so):

    <path>/<skill>/module/model.safetensors  the module's torch state dict (safetensors: tensors only, no code)
    <path>/<skill>/module/spec.json          how to rebuild it: the module class by name (one of MODULE_CLASSES),
                                             the observation and action Box spaces (shape, low, high, dtype)
                                             and the model_config
    <path>/<skill>/metrics.json              training and held-out evaluation figures

Loading builds the module with RLlib's ``RLModuleSpec(...).build()`` and loads the weights with
``load_state_dict(strict=True)`` once they are checked complete and finite. Older folders hold RLlib's pickled
checkpoint (``module_state.pkl``, ``class_and_ctor_args.pkl``), which runs code when loaded: it loads only with
``trust_pickle=True`` (``skills.trust_pickle=true``); ``python -m intentloop.policies.skill_library <path>``
rewrites such a folder once in the safe format.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from intentloop.envs.intents import MOTOR_SKILLS, Intent
from intentloop.envs.skill_env import OBS_DIM, skill_observation
from intentloop.policies.skill_module import SkillModule
from ray.rllib.core.rl_module.rl_module import RLModule, RLModuleSpec
from safetensors.torch import load_file, save_file

FORMAT = "intentloop-skill-module/1"
WEIGHTS, SPEC = "model.safetensors", "spec.json"
MODULE_CLASSES = {cls.__name__: cls for cls in (SkillModule,)}  # the only classes a spec.json may name


class _RLlibsOwnDeprecation(logging.Filter):
    """RLModule.__init__ itself builds the deprecated RLModuleConfig and warns about it on every first build: a
    line about RLlib's code that a user of ours cannot act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "RLModule(config=" not in record.getMessage()


logging.getLogger("ray._common.deprecation").addFilter(_RLlibsOwnDeprecation())


def _box_to_json(space: gym.Space) -> dict:
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"a skill module's spaces must be Box spaces, got {space}")
    return {
        "shape": list(space.shape),
        "low": space.low.tolist(),
        "high": space.high.tolist(),
        "dtype": str(space.dtype),
    }


def _box_from_json(d: dict) -> gym.spaces.Box:
    dtype = np.dtype(d["dtype"])
    return gym.spaces.Box(np.asarray(d["low"], dtype), np.asarray(d["high"], dtype), tuple(d["shape"]), dtype)


def save_skill_module(module: RLModule, directory: str | Path) -> Path:
    """Write ``module`` to ``directory`` as model.safetensors and spec.json (written last); returns the folder."""
    name = type(module).__name__
    if MODULE_CLASSES.get(name) is not type(module):
        raise ValueError(f"cannot save a {type(module).__qualname__}: skills load only {', '.join(MODULE_CLASSES)}")
    spec = {
        "format": FORMAT,
        "module_class": name,
        "observation_space": _box_to_json(module.observation_space),
        "action_space": _box_to_json(module.action_space),
        "model_config": dict(module.model_config or {}),
    }
    # one key a line; fails here, before any file is written, on a non-JSON model_config
    text = "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in spec.items()) + "\n}\n"
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, directory / WEIGHTS)
    (directory / SPEC).write_text(text)
    return directory


def _build(spec_path: Path) -> RLModule:
    """The module ``spec_path`` describes, with fresh weights."""
    try:
        spec = json.loads(spec_path.read_text())
        name, model_config = spec["module_class"], spec["model_config"]
        spaces = _box_from_json(spec["observation_space"]), _box_from_json(spec["action_space"])
    except Exception as err:  # noqa: BLE001 (unreadable JSON, missing keys, bad bounds: one bad-spec error)
        raise ValueError(f"{spec_path} is not a valid skill spec: {type(err).__name__}: {err}") from None
    if not isinstance(name, str) or name not in MODULE_CLASSES:
        raise ValueError(f"{spec_path} names module class {name!r}; skills load only {', '.join(MODULE_CLASSES)}")
    if not isinstance(model_config, dict):
        raise ValueError(f"{spec_path} has a {type(model_config).__name__} model_config, not a JSON object")
    spec = RLModuleSpec(
        module_class=MODULE_CLASSES[name],
        observation_space=spaces[0],
        action_space=spaces[1],
        model_config=model_config,
    )
    try:
        return spec.build()
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{spec_path} does not build a {name}: {err}") from None


def _load_safe(directory: Path) -> RLModule:
    module, weights = _build(directory / SPEC), directory / WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"the skill checkpoint {directory} has a {SPEC} but no {WEIGHTS}")
    try:
        state = load_file(weights)
    except Exception as err:  # noqa: BLE001 (truncated or not safetensors)
        raise ValueError(f"{weights} cannot be read as safetensors: {err}") from None
    expected = module.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{weights} does not fit its {SPEC}: missing tensors {missing}, unexpected {unexpected}, "
            f"wrong shapes {wrong}"
        )
    if bad := [k for k, v in state.items() if not torch.isfinite(v).all()]:
        raise ValueError(f"{weights} holds non-finite weights in {', '.join(bad)}")
    module.load_state_dict(state, strict=True)
    return module


def _load_pickled(path: str | Path, skill: str, directory: Path, trust_pickle: bool) -> RLModule:
    if not trust_pickle:
        raise ValueError(
            f"the checkpoint of skill {skill!r} at {directory} holds pickled weights (RLlib's *.pkl files), which "
            "can run code when loaded: load it only if you trust its source, with skills.trust_pickle=true "
            "(trust_pickle=True in Python), or convert the folder once to the safe format with "
            f"`python -m intentloop.policies.skill_library {path}`"
        )
    try:
        return RLModule.from_checkpoint(str(directory.resolve()))
    except Exception as err:  # noqa: BLE001 (any failure to unpickle or load weights means a bad checkpoint)
        raise ValueError(f"the checkpoint of skill {skill!r} at {directory} cannot be loaded: {err}") from None


def load_skill_module(path: str | Path, skill: str, trust_pickle: bool = False) -> RLModule:
    """The RLModule of ``skill`` under ``path``; a missing, corrupt or incompatible checkpoint is one clear error.
    A legacy pickled checkpoint loads only with ``trust_pickle``."""
    directory = Path(path) / skill / "module"
    if not directory.is_dir():
        raise FileNotFoundError(
            f"no checkpoint for skill {skill!r} at {directory} (train one with: intentloop train-skills skill={skill})"
        )
    if (directory / SPEC).is_file():
        module = _load_safe(directory)
    elif any(directory.glob("*.pkl")):
        module = _load_pickled(path, skill, directory, trust_pickle)
    else:
        raise FileNotFoundError(f"the checkpoint of skill {skill!r} at {directory} has no {SPEC}")
    shapes = (getattr(module.observation_space, "shape", None), getattr(module.action_space, "shape", None))
    if shapes != ((OBS_DIM,), (4,)) or not hasattr(module, "greedy_action"):
        raise ValueError(
            f"the checkpoint of skill {skill!r} at {directory} is incompatible: it maps {shapes[0]} "
            f"observations to {shapes[1]} actions, the skill envs need ({OBS_DIM},) -> (4,)"
        )
    module.eval()
    return module


def convert_pickled_skills(path: str | Path, skills: tuple[str, ...] = MOTOR_SKILLS) -> list[str]:
    """Rewrite the pickled skill checkpoints under ``path`` in the safe format and delete the pickles (and RLlib's
    metadata.json). This unpickles them once: run it only on folders you trust. Returns the skills converted."""
    converted = []
    for skill in skills:
        directory = Path(path) / skill / "module"
        if (directory / SPEC).is_file() or not any(directory.glob("*.pkl")):
            continue
        legacy = load_skill_module(path, skill, trust_pickle=True)
        save_skill_module(legacy, directory)
        for old, new in zip(
            legacy.state_dict().values(), load_skill_module(path, skill).state_dict().values(), strict=True
        ):
            if not torch.equal(old, new):
                raise RuntimeError(f"the conversion of {directory} changed its weights; the pickles are kept")
        for stale in [*directory.glob("*.pkl"), directory / "metadata.json"]:
            stale.unlink(missing_ok=True)
        converted.append(skill)
    return converted


class RLlibSkills:
    """Executes intents with learned policies; `act` for one env, `act_batch` for many at once."""

    name = "rllib"

    def __init__(self, path: str | Path, skills: tuple[str, ...] = MOTOR_SKILLS, trust_pickle: bool = False):
        self.path = Path(path)
        self.modules = {skill: load_skill_module(self.path, skill, trust_pickle) for skill in skills}
        self.intent: Intent | None = None
        self.ref: dict | None = None

    def reset(self, intent: Intent, obs: dict) -> None:
        if intent.skill not in self.modules:
            raise ValueError(f"no learned skill {intent.skill!r} in {self.path}; available: {', '.join(self.modules)}")
        self.intent, self.ref = intent, obs

    def act(self, obs: dict) -> np.ndarray:
        if self.intent is None:
            raise RuntimeError("call reset(intent, obs) before act()")
        x = skill_observation(self.intent, obs, self.ref)[None]  # (1, OBS_DIM)
        return self.modules[self.intent.skill].greedy_action(x)[0]

    def act_batch(self, intents: list[Intent], observations: list[dict], refs: list[dict]) -> np.ndarray:
        """Actions (B, 4) for B envs, one forward pass per skill present in the batch."""
        actions = np.zeros((len(intents), 4), np.float32)
        for skill, module in self.modules.items():
            rows = [i for i, intent in enumerate(intents) if intent.skill == skill]
            if rows:
                x = np.stack([skill_observation(intents[i], observations[i], refs[i]) for i in rows])
                actions[rows] = module.greedy_action(x)
        return actions


if __name__ == "__main__":  # python -m intentloop.policies.skill_library <path> [<path> ...]
    for folder in sys.argv[1:]:
        print(f"{folder}: converted {', '.join(convert_pickled_skills(folder)) or 'nothing'}")

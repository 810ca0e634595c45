"""The learned skill library: one RLlib RLModule per skill, loaded from its checkpoint, no Algorithm, no Ray.

Layout written by ``intentloop train-skills`` (``<path>`` is its run directory or any folder laid out so):

    <path>/<skill>/module/      the RLModule checkpoint (RLModule.save_to_path)
    <path>/<skill>/metrics.json training and held-out evaluation figures
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from intentloop.envs.intents import MOTOR_SKILLS, Intent
from intentloop.envs.skill_env import OBS_DIM, skill_observation
from ray.rllib.core.rl_module.rl_module import RLModule


def load_skill_module(path: str | Path, skill: str) -> RLModule:
    """The RLModule of ``skill`` under ``path``; a missing or incompatible checkpoint is one clear error."""
    directory = Path(path) / skill / "module"
    if not directory.is_dir():
        raise FileNotFoundError(
            f"no checkpoint for skill {skill!r} at {directory} (train one with: intentloop train-skills skill={skill})"
        )
    try:
        module = RLModule.from_checkpoint(str(directory))
    except Exception as err:  # noqa: BLE001 (any failure to unpickle or load weights means a bad checkpoint)
        raise ValueError(f"the checkpoint of skill {skill!r} at {directory} cannot be loaded: {err}") from None
    shapes = (getattr(module.observation_space, "shape", None), getattr(module.action_space, "shape", None))
    if shapes != ((OBS_DIM,), (4,)) or not hasattr(module, "greedy_action"):
        raise ValueError(
            f"the checkpoint of skill {skill!r} at {directory} is incompatible: it maps {shapes[0]} "
            f"observations to {shapes[1]} actions, the skill envs need ({OBS_DIM},) -> (4,)"
        )
    module.eval()
    return module


class RLlibSkills:
    """Executes intents with learned policies; `act` for one env, `act_batch` for many at once."""

    name = "rllib"

    def __init__(self, path: str | Path, skills: tuple[str, ...] = MOTOR_SKILLS):
        self.path = Path(path)
        self.modules = {skill: load_skill_module(self.path, skill) for skill in skills}
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

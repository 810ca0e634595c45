"""The RLModule every learned skill uses: a goal-conditioned Gaussian MLP policy and an MLP value function.

Input: `intentloop.envs.skill_env.skill_observation` (31,), normalised by the demonstration statistics,
which are stored in the module (buffers), so a checkpoint carries its own input normalisation.
Output: mean and a state-independent log std of the 4 action dimensions (RLlib's diagonal Gaussian).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override
from torch import nn


def mlp(sizes: list[int], out_gain: float) -> nn.Sequential:
    """Tanh MLP with orthogonal init; the last layer's gain is ``out_gain``."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = i == len(sizes) - 2
        linear = nn.Linear(n_in, n_out)
        nn.init.orthogonal_(linear.weight, gain=out_gain if last else np.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers += [linear] if last else [linear, nn.Tanh()]
    return nn.Sequential(*layers)


class SkillModule(TorchRLModule, ValueFunctionAPI):
    """model_config: hidden (list[int]), log_std_init (float), obs_mean / obs_std (lists of the obs size)."""

    @override(TorchRLModule)
    def setup(self):
        cfg = dict(self.model_config or {})
        obs_dim, act_dim = self.observation_space.shape[0], self.action_space.shape[0]
        hidden = list(cfg.get("hidden", [256, 256]))
        mean = np.asarray(cfg.get("obs_mean") or np.zeros(obs_dim), np.float32)
        std = np.asarray(cfg.get("obs_std") or np.ones(obs_dim), np.float32)
        if mean.shape != (obs_dim,) or std.shape != (obs_dim,):
            raise ValueError(f"obs_mean and obs_std must have {obs_dim} entries, got {mean.shape} and {std.shape}")
        self.register_buffer("obs_mean", torch.from_numpy(mean))
        self.register_buffer("obs_std", torch.from_numpy(np.maximum(std, 1e-2)))
        self.pi = mlp([obs_dim, *hidden, act_dim], out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(cfg.get("log_std_init", -0.5))))
        self.vf = mlp([obs_dim, *hidden, 1], out_gain=1.0)

    def _normalised(self, batch: dict[str, Any]) -> torch.Tensor:
        return (batch[Columns.OBS] - self.obs_mean) / self.obs_std  # (B, obs_dim)

    @override(TorchRLModule)
    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        mean = self.pi(self._normalised(batch))  # (B, act_dim)
        return {Columns.ACTION_DIST_INPUTS: torch.cat([mean, self.log_std.expand_as(mean)], dim=-1)}

    @override(ValueFunctionAPI)
    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        return self.vf(self._normalised(batch)).squeeze(-1)  # (B,)

    @torch.no_grad()
    def greedy_action(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions (the Gaussian means) for a batch of observations (B, obs_dim) -> (B, act_dim)."""
        out = self.forward_inference({Columns.OBS: torch.as_tensor(obs, dtype=torch.float32)})
        act_dim = self.action_space.shape[0]
        return out[Columns.ACTION_DIST_INPUTS][:, :act_dim].clamp(-1.0, 1.0).numpy()

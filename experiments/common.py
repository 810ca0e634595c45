"""What the Hydra apps share: building envs and agents from a config, and turning bad input into one sentence."""

from __future__ import annotations

import functools
import logging
import sys

import gymnasium as gym
import intentloop.envs  # noqa: F401  (registers the env ids)
from intentloop.agents import HierarchicalAgent, make_planner
from intentloop.envs.intents import InvalidIntent
from intentloop.policies import make_skills
from omegaconf import DictConfig

logging.getLogger("OpenGL").setLevel(logging.WARNING)  # PyOpenGL announces a missing optional module at INFO

USER_ERRORS = (ValueError, InvalidIntent, FileNotFoundError, KeyError)


def user_errors(app):
    """Report a bad value from the user as ``intentloop <cmd>: error: <sentence>`` and exit 2, no traceback."""

    @functools.wraps(app)
    def wrapper(cfg):
        try:
            return app(cfg)
        except USER_ERRORS as e:
            message = e.args[0] if isinstance(e, KeyError) and e.args else e
            print(f"{sys.argv[0]}: error: {message}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


def make_env(cfg: DictConfig, split: str, chain_length: int, task: str = "chain") -> gym.Env:
    e = cfg.env
    return gym.make(
        "intentloop/Tabletop-v0",
        backend=cfg.backend,
        task=task,
        chain_length=chain_length,
        split=split,
        split_seed=e.split_seed,
        phrasings=e.phrasings,
        image=e.image,
        image_size=e.image_size,
        frame_skip=e.frame_skip,
        max_delta=e.max_delta,
        steps_per_intent=e.steps_per_intent,
    )


def make_agent(cfg: DictConfig, planner, skills: str) -> HierarchicalAgent:
    s = cfg.get("skills") or {}
    return HierarchicalAgent(
        make_planner(planner),
        make_skills(skills, cfg.env.max_delta, s.get("path"), cfg.backend, s.get("trust_pickle", False)),
        cfg.agent.max_steps_per_intent,
        cfg.agent.max_intents,
        contracts=cfg.agent.get("contracts", True),
        safety=cfg.agent.get("safety"),
    )

"""What the Hydra apps share: building envs and agents from a config, and turning bad input into one sentence."""

from __future__ import annotations

import functools
import logging
import os
import socket
import sys
from pathlib import Path

import gymnasium as gym
import intentloop.envs  # noqa: F401  (registers the env ids)
from intentloop.agents import HierarchicalAgent, make_planner
from intentloop.agents.detectors import check_detector, make_detector
from intentloop.envs.intents import InvalidIntent
from intentloop.policies import make_skills
from omegaconf import DictConfig

logging.getLogger("OpenGL").setLevel(logging.WARNING)  # PyOpenGL announces a missing optional module at INFO

USER_ERRORS = (ValueError, InvalidIntent, OSError, KeyError)  # OSError: FileNotFoundError, PermissionError, ...
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "LP_NUM_THREADS": "1"}  # Ray actors sharing cores


def user_errors(app):
    """Report a bad value from the user as ``intentloop <cmd>: error: <sentence>`` and exit 2, no traceback."""

    @functools.wraps(app)
    def wrapper(cfg):
        try:
            return app(cfg)
        except USER_ERRORS as e:
            e = _raised_in_actor(e)
            message = e.args[0] if isinstance(e, KeyError) and e.args else e
            if isinstance(e, OSError) and e.strerror:  # "[Errno 20] Not a directory: 'x'" as a sentence
                message = f"{e.strerror}: {e.filename}" if e.filename else e.strerror
            print(f"{sys.argv[0]}: error: {message}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


def _raised_in_actor(e: Exception) -> Exception:
    """The exception a Ray actor or task raised, for one that Ray re-raised here (its message is a traceback)."""
    from ray.exceptions import RayTaskError

    while isinstance(e, RayTaskError) and isinstance(e.cause, Exception):
        e = e.cause
    return e


def writable_folder(folder: str | Path, what: str) -> Path:
    """``folder`` (absolute) after checking it could be written, creating nothing: an output in a file's way or
    in a read-only place is one sentence before the work, not an OS error after it."""
    path = Path(folder).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"{what} {folder} cannot be written: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {folder} cannot be written: no permission to write in {existing}")
    return path


def start_ray(address: str | None, num_cpus: int | None, timeout_s: float = 10.0) -> bool:
    """Start Ray unless it runs already; True if this call started it (the caller shuts it down). No address
    (and no RAY_ADDRESS) means a fresh local Ray with ``num_cpus``, never a stray cluster. A bad core count or an
    address that does not answer within ``timeout_s`` is one sentence, before any work, instead of a hang."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address == "local" and num_cpus is not None and num_cpus < 1:
        raise ValueError(f"ray.num_cpus must be >= 1 (or null for every core), got {num_cpus}")
    if address not in ("local", "auto"):
        host, _, port = address.removeprefix("ray://").rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"ray.address must be 'auto' or host:port, got {address!r}")
        try:
            socket.create_connection((host, int(port)), timeout=timeout_s).close()
        except OSError as e:
            raise ValueError(f"no Ray cluster answers at ray.address={address}: {e.strerror or e}") from None
    # A loaded machine can need more than Ray's default 30 s for a new head's GCS to bind its port.
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")
    kwargs = {"address": address, "num_cpus": num_cpus if address == "local" else None, "include_dashboard": False,
              "log_to_driver": False}  # fmt: skip
    try:
        try:
            ray.init(**kwargs)
        except Exception as e:  # noqa: BLE001  (Ray raises a bare Exception when its raylet misses its fixed 30 s)
            if address != "local" or "timed out during startup" not in str(e):
                raise
            ray.shutdown()  # a loaded machine: a fresh local head, once more
            ray.init(**kwargs)
    except ConnectionError as e:  # address=auto with no cluster running
        raise ValueError(f"no Ray cluster to join at ray.address={address}: {e}") from None
    return True


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
    s, d = cfg.get("skills") or {}, cfg.agent.get("detector") or {}
    detector = make_detector(d.get("name", "predicates"), d.get("path"))
    check_detector(detector, cfg.env.image, cfg.env.image_size)
    return HierarchicalAgent(
        make_planner(planner),
        make_skills(skills, cfg.env.max_delta, s.get("path"), cfg.backend, s.get("trust_pickle", False)),
        cfg.agent.max_steps_per_intent,
        cfg.agent.max_intents,
        contracts=cfg.agent.get("contracts", True),
        safety=cfg.agent.get("safety"),
        detector=detector,
    )


"""Scripted-expert demonstrations in a single-skill env, as RLlib's offline data (one row per transition)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import intentloop.envs  # noqa: F401  (registers the env ids)
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from intentloop.envs import SKILL_ENVS
from intentloop.policies.scripted import ScriptedSkill
from tqdm import tqdm

COLUMNS = ("eps_id", "obs", "actions", "rewards", "new_obs", "terminateds", "truncateds")  # RLlib's offline SCHEMA


def record_demos(skill: str, episodes: int, env_kwargs: dict, seed: int = 0, progress: bool = True) -> dict:
    """Run the scripted expert of ``skill`` for ``episodes`` episodes; returns columns and the expert's success."""
    env = gym.make(f"intentloop/{SKILL_ENVS[skill]}", **env_kwargs)
    rows: dict[str, list] = {c: [] for c in COLUMNS}
    successes = []
    for ep in tqdm(range(episodes), desc=f"demos {skill}", disable=not progress, unit="ep"):
        obs, _ = env.reset(seed=seed + ep)
        skill_env, expert = env.unwrapped, ScriptedSkill(max_delta=env.unwrapped.world.max_delta)
        expert.reset(skill_env.intent, skill_env.world.state_obs())
        done = False
        while not done:
            action = expert.act(skill_env.world.state_obs())
            new_obs, reward, terminated, truncated, info = env.step(action)
            for key, value in zip(
                COLUMNS, (seed + ep, obs, action, reward, new_obs, terminated, truncated), strict=True
            ):
                rows[key].append(value)
            obs, done = new_obs, terminated or truncated
        successes.append(info["is_success"])
    env.close()
    return {"columns": rows, "expert_success": float(np.mean(successes)), "transitions": len(rows["obs"])}


def write_demos(demos: dict, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    c = demos["columns"]
    vectors = pa.list_(pa.float32())
    table = pa.table(
        {
            "eps_id": pa.array(np.asarray(c["eps_id"], np.int64)),
            "obs": pa.array([np.asarray(o, np.float32) for o in c["obs"]], type=vectors),
            "actions": pa.array([np.asarray(a, np.float32) for a in c["actions"]], type=vectors),
            "rewards": pa.array(np.asarray(c["rewards"], np.float32)),
            "new_obs": pa.array([np.asarray(o, np.float32) for o in c["new_obs"]], type=vectors),
            "terminateds": pa.array(c["terminateds"]),
            "truncateds": pa.array(c["truncateds"]),
        }
    )
    pq.write_table(table, directory / "demos.parquet")
    return directory


def obs_statistics(demos: dict) -> tuple[list[float], list[float]]:
    obs = np.asarray(demos["columns"]["obs"], np.float64)
    return obs.mean(0).tolist(), np.maximum(obs.std(0), 1e-2).tolist()

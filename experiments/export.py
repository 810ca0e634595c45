"""Export an episode store as a Minari dataset or a LeRobot (v3.0) dataset.

How to run:   intentloop export format=minari store=runs/collect/<date>/episodes out=datasets
              intentloop export format=lerobot store=runs/collect/<date>/episodes out=datasets/tabletop-lerobot
Needs:        pip install -e ".[export]"   (Minari; the LeRobot layout is written with pyarrow alone)

**Minari** (Farama's offline-RL format; its Parquet storage): ``<out>/<name>/`` with ``name`` a Minari
dataset id, read back with ``MINARI_DATASETS_PATH=<out>`` and ``minari.load_dataset(name)``. Per step:
observations ``image`` (lossless unless ``jpeg=true``), ``proprio`` and ``instruction`` (one more than the
actions: the final observation is included), actions, rewards, terminations (the last step of a successful
episode) and truncations (the last step of any other); infos ``segment`` (the outcome index of the intent being
executed, -1 on the final observation), ``intent`` and ``goal_distance`` (NaN on the final observation). Each
episode's ``seed`` and ``options`` (``{"task": ...}``) replay its start with ``env.reset(seed=..., options=...)``
on ``dataset.recover_environment()``; its metadata (``dataset.storage.get_episode_metadata``) holds the store's
episode-level columns (episode_id, instruction, outcomes, feedback, success, ...).

**LeRobot** (Hugging Face's robot-data format, codebase v3.0): ``meta/info.json`` (features, fps, path
templates), ``meta/stats.json``, ``meta/tasks.parquet`` (each instruction a task), ``meta/episodes/chunk-000/
file-000.parquet`` (one row per episode: length, tasks, frame range, per-episode stats, and the store's episode
columns), ``data/chunk-000/file-NNN.parquet`` (one row per frame: ``observation.images.front`` as PNG bytes in
Hugging Face's Image type, ``observation.state``, ``action``, ``next.reward``, ``next.done``, ``goal_distance``,
``segment``, ``intent`` and the index columns). A LeRobot frame pairs an observation with the action taken
there, so the final observation of each episode is not exported.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import hydra
import intentloop.configs.schema  # noqa: F401  (registers the config schemas)
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from intentloop.agents.episode_store import count_episodes, decode_png, read_store, shard_paths
from intentloop.experiments.common import user_errors, writable_folder
from omegaconf import DictConfig
from tqdm import tqdm

FORMATS = ("minari", "lerobot")
EPISODE_COLUMNS = (  # episode-level columns of the store carried into each format's episode metadata
    "episode_id", "seed", "backend", "planner", "skills", "task", "instruction", "success", "judged_success",
    "subgoals_done", "n_subgoals", "outcomes", "verified", "feedback", "thoughts", "relabels",
)  # fmt: skip
STATE_NAMES = ["ee_x", "ee_y", "ee_z", "ee_vx", "ee_vy", "ee_vz", "finger_opening"]
ACTION_NAMES = ["dx", "dy", "dz", "gripper"]


def episodes(store: str):
    """The store's episodes one by one, a shard at a time (a store larger than memory exports too)."""
    for path in shard_paths(store):
        yield from read_store(path).to_pylist()


def _first_episode(store: str) -> tuple[dict, Iterator[dict]]:
    """The store's first episode and the rest; a store without episodes, or a first one without frames, is one
    sentence before any progress bar."""
    rows = episodes(store)
    first = next(rows, None)
    if first is None:
        raise ValueError(f"the store {store} holds no episodes")
    if not first["frames"]:
        raise ValueError(f"episode {first['episode_id']} is not exportable: it has no frames (env.image=false?)")
    return first, rows


def _arrays(row: dict) -> dict:
    """One stored episode as arrays, checked for the lengths the store promises."""
    steps = row["steps"]
    if not row["frames"]:
        raise ValueError(f"episode {row['episode_id']} is not exportable: it has no frames (env.image=false?)")
    frames = np.stack([decode_png(f) for f in row["frames"]])
    out = {
        "frames": frames,
        "proprio": np.asarray(row["proprio"], np.float32),
        "actions": np.asarray(row["actions"], np.float32).reshape(steps, len(ACTION_NAMES)),
        "rewards": np.asarray(row["rewards"], np.float32),
        "goal_distance": np.asarray(row["goal_distance"], np.float32),
        "segment": np.asarray(row["segment"], np.int32),
    }
    if len(frames) != steps + 1 or len(out["proprio"]) != steps + 1 or len(out["rewards"]) != steps:
        raise ValueError(f"episode {row['episode_id']} is not exportable: it has no frames or its lengths disagree")
    intents = [o["intent"] for o in row["outcomes"]]
    out["intent"] = [intents[s] for s in out["segment"]]
    return out


def _episode_meta(row: dict) -> dict:
    meta = {k: row[k] for k in EPISODE_COLUMNS}
    meta["task"] = json.loads(meta["task"])
    return meta


# ---------------------------------------------------------------- Minari


def to_minari(store: str, out: str, name: str, jpeg: bool = False) -> Path:
    import gymnasium as gym
    import intentloop.envs  # noqa: F401  (registers the env ids)
    import minari
    from gymnasium import spaces
    from intentloop.envs.instruction_space import Instruction
    from intentloop.envs.tabletop_env import INSTRUCTION_CHARSET, MAX_INSTRUCTION
    from minari.data_collector import EpisodeBuffer

    first, rows = _first_episode(store)
    height, width = decode_png(first["frames"][0]).shape[:2]
    obs_space = spaces.Dict(
        {
            "image": spaces.Box(0, 255, (height, width, 3), np.uint8),
            "proprio": spaces.Box(-10.0, 10.0, (len(STATE_NAMES),), np.float32),
            "instruction": Instruction(MAX_INSTRUCTION, min_length=1, charset=INSTRUCTION_CHARSET),
        }
    )
    env = gym.make("intentloop/Tabletop-v0", backend=first["backend"], image_size=(height, width))  # its spec only
    env.close()
    dataset, metas = None, []
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(out).resolve())
    try:
        for i, row in enumerate(tqdm(itertools.chain([first], rows), desc="episodes -> minari", unit="ep")):
            a = _arrays(row)
            if a["frames"].shape[1:3] != (height, width):
                raise ValueError(f"episode {row['episode_id']} has images of another size than the first episode's")
            last = len(a["rewards"]) - 1
            buffer = EpisodeBuffer(
                id=i,
                seed=row["seed"],
                options={"task": json.loads(row["task"])},
                observations={
                    "image": a["frames"],
                    "proprio": a["proprio"],
                    "instruction": [row["instruction"]] * len(a["frames"]),
                },
                actions=a["actions"],
                rewards=a["rewards"],
                terminations=np.arange(last + 1) == last if row["success"] else np.zeros(last + 1, bool),
                truncations=np.zeros(last + 1, bool) if row["success"] else np.arange(last + 1) == last,
                infos={  # lists: Minari 0.5 cannot read back the 1-D arrays it writes
                    "segment": [*a["segment"].tolist(), -1],
                    "intent": [*a["intent"], ""],
                    "goal_distance": [*a["goal_distance"].tolist(), float("nan")],
                },
            )
            if dataset is None:
                with warnings.catch_warnings():  # Minari asks for an e-mail address and a code link we do not have
                    warnings.filterwarnings("ignore", "`(author_email|code_permalink)` is set", module="minari")
                    dataset = minari.create_dataset_from_buffers(
                        name, [buffer], env=env.spec, eval_env=env.spec, author="intentloop export",
                        observation_space=obs_space, action_space=env.action_space,
                        algorithm_name=f"intentloop: planner {row['planner']}, skills {row['skills']}",
                        description="intentloop tabletop episodes (intentloop export; the episode metadata holds "
                        "the instruction, the planner's intents and their outcomes, and the user's feedback)",
                        data_format="parquet", jpeg_encoding=jpeg,
                    )  # fmt: skip
            else:
                dataset.storage.update_episodes([buffer])
            metas.append(_episode_meta(row))
        dataset.storage.update_episode_metadata(metas, range(len(metas)))
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous
    return Path(out) / name


# ---------------------------------------------------------------- LeRobot

DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
IMAGE_KEY = "observation.images.front"
CHUNKS_SIZE, DATA_FILE_MB = 1000, 100


def _features(height: int, width: int) -> dict:
    one = [1]
    return {
        IMAGE_KEY: {"dtype": "image", "shape": [height, width, 3], "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": [len(STATE_NAMES)], "names": STATE_NAMES},
        "action": {"dtype": "float32", "shape": [len(ACTION_NAMES)], "names": ACTION_NAMES},
        "next.reward": {"dtype": "float32", "shape": one, "names": None},
        "next.done": {"dtype": "bool", "shape": one, "names": None},
        "goal_distance": {"dtype": "float32", "shape": one, "names": None},
        "segment": {"dtype": "int64", "shape": one, "names": None},
        "intent": {"dtype": "string", "shape": one, "names": None},
        "timestamp": {"dtype": "float32", "shape": one, "names": None},
        "frame_index": {"dtype": "int64", "shape": one, "names": None},
        "episode_index": {"dtype": "int64", "shape": one, "names": None},
        "index": {"dtype": "int64", "shape": one, "names": None},
        "task_index": {"dtype": "int64", "shape": one, "names": None},
    }


def _frame_schema(features: dict) -> pa.Schema:
    """The data files' Arrow schema, with the Hugging Face ``datasets`` feature types LeRobot reads them by."""
    fields, hf = [], {}
    for key, ft in features.items():
        if ft["dtype"] == "image":
            fields.append(pa.field(key, pa.struct([("bytes", pa.binary()), ("path", pa.string())])))
            hf[key] = {"_type": "Image"}
        elif ft["shape"] == [1]:
            fields.append(pa.field(key, pa.string() if ft["dtype"] == "string" else pa.from_numpy_dtype(ft["dtype"])))
            hf[key] = {"dtype": ft["dtype"], "_type": "Value"}
        else:
            fields.append(pa.field(key, pa.list_(pa.from_numpy_dtype(ft["dtype"]), ft["shape"][0])))
            hf[key] = {"feature": {"dtype": ft["dtype"], "_type": "Value"}, "length": ft["shape"][0], "_type": "List"}
    return pa.schema(fields, metadata={"huggingface": json.dumps({"info": {"features": hf}})})


class _Stats:
    """Running min, max, mean, std and count of a feature over frames (LeRobot's stats.json entries)."""

    def __init__(self):
        self.rows, self.count, self.sum, self.sq, self.min, self.max = 0, 0, 0.0, 0.0, None, None

    def add(self, x: np.ndarray, frames: int) -> None:  # x: (rows, ...), reduced over the rows
        x = x.astype(np.float64)
        self.rows, self.count = self.rows + len(x), self.count + frames
        self.sum, self.sq = self.sum + x.sum(0), self.sq + (x * x).sum(0)
        lo, hi = x.min(0), x.max(0)
        self.min = lo if self.min is None else np.minimum(self.min, lo)
        self.max = hi if self.max is None else np.maximum(self.max, hi)

    def as_lists(self, shape: tuple) -> dict:
        mean = self.sum / self.rows
        std = np.sqrt(np.maximum(self.sq / self.rows - mean * mean, 0.0))
        out = {"min": self.min, "max": self.max, "mean": mean, "std": std}
        return {**{k: np.reshape(v, shape).tolist() for k, v in out.items()}, "count": [self.count]}


def _stat_rows(a: dict, n: int) -> dict:
    """What each feature's stats reduce over: frames, and for the camera every pixel of them, per channel in
    [0, 1] (LeRobot's image stats, shaped (3, 1, 1))."""
    return {
        IMAGE_KEY: (a["frames"][:n].reshape(-1, 3) / 255.0, (3, 1, 1)),
        "observation.state": (a["proprio"][:n], (len(STATE_NAMES),)),
        "action": (a["actions"], (len(ACTION_NAMES),)),
        "next.reward": (a["rewards"][:, None], (1,)),
        "goal_distance": (a["goal_distance"][:, None], (1,)),
    }


def to_lerobot(store: str, out: str, fps: int) -> Path:
    root = Path(out)
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"out={out} exists and is not empty; a LeRobot dataset needs a folder of its own")
    features, schema, writer = None, None, None
    tasks: dict[str, int] = {}
    episode_rows, totals = [], {}
    file_index, index = 0, 0
    first, rows = _first_episode(store)
    for ep, row in enumerate(tqdm(itertools.chain([first], rows), desc="episodes -> lerobot", unit="ep")):
        a = _arrays(row)
        n = len(a["actions"])
        if features is None:
            features = _features(*a["frames"].shape[1:3])
            schema = _frame_schema(features)
        elif list(a["frames"].shape[1:3]) != features[IMAGE_KEY]["shape"][:2]:
            raise ValueError(f"episode {row['episode_id']} has images of another size than the first episode's")
        task = tasks.setdefault(row["instruction"], len(tasks))
        path = root / DATA_PATH.format(chunk_index=0, file_index=file_index)
        if writer is not None and path.stat().st_size > DATA_FILE_MB * 2**20:
            writer.close()
            file_index, writer = file_index + 1, None
            path = root / DATA_PATH.format(chunk_index=0, file_index=file_index)
        if writer is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = pq.ParquetWriter(path, schema)
        frames = {
            IMAGE_KEY: [{"bytes": png, "path": None} for png in row["frames"][:n]],
            "observation.state": a["proprio"][:n].tolist(),
            "action": a["actions"].tolist(),
            "next.reward": a["rewards"],
            "next.done": np.arange(n) == n - 1,
            "goal_distance": a["goal_distance"],
            "segment": a["segment"].astype(np.int64),
            "intent": a["intent"],
            "timestamp": (np.arange(n) / fps).astype(np.float32),
            "frame_index": np.arange(n),
            "episode_index": np.full(n, ep),
            "index": index + np.arange(n),
            "task_index": np.full(n, task),
        }
        writer.write_table(pa.Table.from_pydict(frames, schema=schema))  # one row group per episode
        stats = {}
        for key, (x, shape) in _stat_rows(a, n).items():
            (episode_stats := _Stats()).add(x, n)
            totals.setdefault(key, (_Stats(), shape))[0].add(x, n)
            stats.update({f"stats/{key}/{k}": v for k, v in episode_stats.as_lists(shape).items()})
        meta = {
            "episode_index": ep, "tasks": [row["instruction"]], "length": n,
            "data/chunk_index": 0, "data/file_index": file_index,
            "dataset_from_index": index, "dataset_to_index": index + n,
            "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
            **stats,
        }  # fmt: skip
        nested = ("task", "outcomes", "feedback")  # as JSON text: one column each, whatever their shape
        meta.update({k: json.dumps(v) if k in nested else v for k, v in _episode_meta(row).items()})
        episode_rows.append(meta)
        index += n
    writer.close()
    (root / "meta").mkdir(parents=True, exist_ok=True)
    episodes_path = root / EPISODES_PATH
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(episode_rows), episodes_path)
    # LeRobot reads the tasks with pandas, the task strings as the index
    pd.DataFrame({"task_index": list(tasks.values())}, index=pd.Index(list(tasks), name="task")).to_parquet(
        root / "meta" / "tasks.parquet"
    )
    stats = {key: s.as_lists(shape) for key, (s, shape) in totals.items()}
    (root / "meta" / "stats.json").write_text(json.dumps(stats, indent=2))
    info = {
        "codebase_version": "v3.0", "robot_type": "intentloop_gantry",
        "total_episodes": len(episode_rows), "total_frames": index, "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILE_MB, "video_files_size_in_mb": 200,
        "fps": fps, "splits": {"train": f"0:{len(episode_rows)}"},
        "data_path": DATA_PATH, "video_path": None, "features": features,
    }  # fmt: skip
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=2))
    return root


MINARI_NAME = re.compile(r"([A-Za-z0-9_.-]+/)*[A-Za-z0-9_.-]+-v\d+")


def export(fmt: str, store: str, out: str, name: str, fps: int, jpeg: bool) -> Path:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if fps < 1:
        raise ValueError(f"fps must be >= 1, got {fps}")
    count_episodes(store)  # a missing or empty store: one sentence now
    if fmt == "minari" and not MINARI_NAME.fullmatch(name):
        raise ValueError(f"name={name!r} is not a Minari dataset id: write it as [namespace/]dataset-v<version>")
    writable_folder(out, "out")
    if fmt == "minari":
        try:
            import minari  # noqa: F401
        except ImportError:
            raise ValueError('format=minari needs Minari: pip install -e ".[export]"') from None
        return to_minari(store, out, name, jpeg)
    return to_lerobot(store, out, fps)


@hydra.main(config_path="../configs", config_name="export", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> str:
    path = export(cfg.format, cfg.store, cfg.out, cfg.name, cfg.fps, cfg.jpeg)
    print(f"wrote a {cfg.format} dataset to {path}")
    return str(path)


if __name__ == "__main__":
    main()

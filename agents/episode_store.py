"""The episode store: Parquet shards of recorded episodes, readable by pandas, pyarrow and Ray Data.

A store is a directory (a local path or any pyarrow filesystem URI, e.g. ``s3://bucket/run``) of files
``*.parquet``, one row per episode. A shard is written under a temporary name of its writer's own (two
writers of the same shard never share one) and renamed when complete, so a reader sees a whole shard or
none. A shard that cannot be read is reported and skipped, never silently read.

Columns:

| column | type | meaning |
|---|---|---|
| episode_id | string | unique id |
| seed, backend, planner, skills | int64, string | how the episode was produced |
| task | string | the task as JSON (`Task.to_dict`) |
| instruction | string | the instruction the planner saw |
| success, subgoals_done, n_subgoals, steps | bool, int32 | the result (success: the env's task predicate) |
| judged_success | bool | the success detector's task verdict (equals success with the ground-truth detector) |
| outcomes | list<struct<intent, success, steps, reason>> | one per planned intent, in order; success: the detector's |
| verified | list<bool> | per outcome, the intent's ground-truth predicate when its segment ended (False if refused) |
| relabels | list<string> | hindsight instructions; empty as collected (self-training keeps them in its examples) |
| frames | list<binary> | PNG-encoded camera images, one per observation (steps + 1) |
| actions, proprio | list<list<float32>> | per step / per observation |
| rewards, goal_distance | list<float32> | per step |
| segment | list<int32> | per step: index into outcomes of the intent being executed |
| feedback | list<struct<at, text>> | what the user said: after how many outcomes, and the words |
| thoughts | list<string> | a thinking planner's thought before each answer (``planner.think``); else empty |
"""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

OUTCOME = pa.struct([("intent", pa.string()), ("success", pa.bool_()), ("steps", pa.int32()), ("reason", pa.string())])
FEEDBACK = pa.struct([("at", pa.int32()), ("text", pa.string())])
SCHEMA = pa.schema(
    [
        ("episode_id", pa.string()),
        ("seed", pa.int64()),
        ("backend", pa.string()),
        ("planner", pa.string()),
        ("skills", pa.string()),
        ("task", pa.string()),
        ("instruction", pa.string()),
        ("success", pa.bool_()),
        ("judged_success", pa.bool_()),
        ("subgoals_done", pa.int32()),
        ("n_subgoals", pa.int32()),
        ("steps", pa.int32()),
        ("outcomes", pa.list_(OUTCOME)),
        ("verified", pa.list_(pa.bool_())),
        ("relabels", pa.list_(pa.string())),
        ("frames", pa.list_(pa.binary())),
        ("actions", pa.list_(pa.list_(pa.float32()))),
        ("proprio", pa.list_(pa.list_(pa.float32()))),
        ("rewards", pa.list_(pa.float32())),
        ("goal_distance", pa.list_(pa.float32())),
        ("segment", pa.list_(pa.int32())),
        ("feedback", pa.list_(FEEDBACK)),
        ("thoughts", pa.list_(pa.string())),
    ]
)


SHARD_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
# Columns every shard has had since the first version (later ones, e.g. feedback, read as nulls in older shards).
REQUIRED = ("episode_id", "task", "instruction", "success", "outcomes", "frames", "actions")


def _fs(location: str) -> tuple[pafs.FileSystem, str]:
    if "://" in str(location):
        return pafs.FileSystem.from_uri(str(location))
    return pafs.LocalFileSystem(), str(Path(location).resolve())


def encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not PNG-encode an image of shape {image.shape}")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("corrupt PNG frame")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def episode_row(result, episode_id: str | None = None) -> dict:
    """A store row from an `intentloop.agents.agent.EpisodeResult` recorded with ``record=True``."""
    trace = result.trace
    if trace is None:
        raise ValueError("the episode has no trace: run the agent with record=True")
    return {
        "episode_id": episode_id or uuid.uuid4().hex[:16],
        "seed": result.seed,
        "backend": result.backend,
        "planner": result.planner,
        "skills": result.skills,
        "task": json.dumps(result.task),
        "instruction": result.instruction,
        "success": result.success,
        "judged_success": result.judged_success,
        "subgoals_done": result.subgoals_done,
        "n_subgoals": result.n_subgoals,
        "steps": result.steps,
        "outcomes": [
            {"intent": o.intent, "success": o.success, "steps": o.steps, "reason": o.reason} for o in result.outcomes
        ],
        "verified": list(result.verified),
        "relabels": [],
        "frames": [encode_png(f) for f in trace.frames],
        "actions": [a.tolist() for a in trace.actions],
        "proprio": [p.tolist() for p in trace.proprio],
        "rewards": trace.rewards,
        "goal_distance": trace.goal_distance,
        "segment": trace.segment,
        "feedback": [{"at": at, "text": text} for at, text in result.feedback],
        "thoughts": list(result.thoughts),
    }


def write_shard(store: str, rows: list[dict], name: str | None = None) -> str:
    """Write ``rows`` as one shard of ``store``, atomically; returns the shard's path."""
    name = name or f"shard-{uuid.uuid4().hex[:12]}"
    if not SHARD_NAME.fullmatch(name):
        raise ValueError(f"a shard name is letters, digits, '.', '_' and '-' and starts with neither '.' nor '-': "
                         f"{name!r} could name a file outside the store")  # fmt: skip
    fs, root = _fs(store)
    fs.create_dir(root, recursive=True)
    final = f"{root}/{name}.parquet"
    tmp = f"{root}/.{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet.tmp"  # this writer's own
    with fs.open_output_stream(tmp) as out:
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), out)
    fs.move(tmp, final)
    return final


def shard_paths(store: str) -> list[str]:
    fs, root = _fs(store)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"no episode store or shard at {store}")
    if info.type == pafs.FileType.File:
        return [root]
    files = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    return sorted(f.path for f in files if f.path.endswith(".parquet") and not Path(f.path).name.startswith("."))


def read_store(store: str, columns: list[str] | None = None, report=None) -> pa.Table:
    """Every complete shard of ``store`` (a directory or one shard file) as one table.

    A shard that cannot be read is reported through ``report(path, error)`` (default: a line on stderr)
    and skipped.
    """
    report = report or (lambda path, err: print(f"skipping corrupt shard {path}: {err}", file=sys.stderr))
    fs, _ = _fs(store)
    tables = []
    for path in shard_paths(store):
        try:
            with fs.open_input_file(path) as f:
                table = pq.read_table(f, columns=columns)
        except (pa.ArrowException, OSError) as err:
            report(path, err)
            continue
        if missing := [c for c in REQUIRED if c in (columns or REQUIRED) and c not in table.column_names]:
            report(path, f"not an episode shard: no column {missing[0]!r}")
        else:
            tables.append(table)
    if not tables:
        return SCHEMA.empty_table() if columns is None else SCHEMA.empty_table().select(columns)
    return pa.concat_tables(tables, promote_options="default")  # shards from before a column was added: nulls


def _read_or_explain(store: str, columns: list[str] | None = None) -> pa.Table:
    """`read_store`, its skipped shards reported on stderr, or named in the error if no episode is left."""
    skipped: list[tuple[str, object]] = []
    table = read_store(store, columns, report=lambda path, err: skipped.append((path, err)))
    if table.num_rows == 0:
        first = f"first: {skipped[0][0]}: {str(skipped[0][1]).splitlines()[0]}" if skipped else ""
        why = f" ({len(skipped)} unreadable file(s) skipped, {first})" if skipped else ""
        raise ValueError(f"the store {store} holds no episodes{why}")
    for path, err in skipped:
        print(f"skipping corrupt shard {path}: {err}", file=sys.stderr)
    return table


def count_episodes(store: str) -> int:
    """How many episodes ``store`` holds; none (or only unreadable files) is one sentence."""
    return _read_or_explain(store, ["episode_id"]).num_rows


def load_episode(source: str, episode_id: str | None = None) -> dict:
    """One episode: ``source`` is a store or a shard; ``episode_id`` picks one (default: the only one)."""
    table = _read_or_explain(source)
    if episode_id is not None:
        table = table.filter(pc.equal(table["episode_id"], episode_id))
        if table.num_rows == 0:
            raise KeyError(f"no episode {episode_id!r} in {source}")
    elif table.num_rows != 1:
        raise ValueError(f"{source} holds {table.num_rows} episodes; name one with episode=<id>")
    return table.slice(0, 1).to_pylist()[0]

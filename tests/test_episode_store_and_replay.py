import io
import json
import subprocess
import sys

import gymnasium as gym
import intentloop.envs  # noqa: F401
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from intentloop.agents import HierarchicalAgent, OraclePlanner, episode_store
from intentloop.agents.episode_store import (
    decode_png,
    episode_row,
    load_episode,
    read_store,
    shard_paths,
    write_shard,
)
from intentloop.experiments.replay import TEXT_BAR, write_replay
from intentloop.policies import ScriptedSkill
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


@pytest.fixture(scope="module")
def recorded():
    env = gym.make("intentloop/Tabletop-v0", task="put", image_size=48)
    agent = HierarchicalAgent(OraclePlanner(), ScriptedSkill(), record=True)
    results = [agent.run_episode(env, seed=s) for s in (0, 1)]
    env.close()
    return results


def test_trace_has_one_frame_per_observation(recorded):
    for r in recorded:
        t = r.trace
        assert len(t.frames) == len(t.proprio) == r.steps + 1
        assert len(t.actions) == len(t.rewards) == len(t.segment) == len(t.goal_distance) == r.steps
        assert t.frames[0].shape == (48, 48, 3)
        assert sorted(set(t.segment)) == list(range(len(r.outcomes)))


def test_shard_round_trips_through_pyarrow_and_pandas(recorded, tmp_path):
    rows = [episode_row(r, f"ep{r.seed}") for r in recorded]
    path = write_shard(str(tmp_path), rows)
    assert shard_paths(str(tmp_path)) == [path]
    frame = pd.read_parquet(path)
    assert list(frame["episode_id"]) == ["ep0", "ep1"] and frame["success"].all()
    episode = load_episode(str(tmp_path), "ep1")
    original = recorded[1].trace
    assert np.array_equal(decode_png(episode["frames"][5]), original.frames[5])
    assert np.allclose(episode["actions"][3], original.actions[3])
    assert json.loads(episode["task"]) == recorded[1].task
    assert [o["intent"] for o in episode["outcomes"]] == [o.intent for o in recorded[1].outcomes]


def test_corrupt_shard_is_reported_and_skipped(recorded, tmp_path):
    write_shard(str(tmp_path), [episode_row(recorded[0], "good")])
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really parquet")
    reports = []
    table = read_store(str(tmp_path), report=lambda path, err: reports.append(path))
    assert table.column("episode_id").to_pylist() == ["good"]
    assert len(reports) == 1 and reports[0].endswith("broken.parquet")


def test_a_parquet_file_of_another_schema_is_reported_and_skipped_not_merged(recorded, tmp_path):
    write_shard(str(tmp_path), [episode_row(recorded[0], "good")])
    pq.write_table(pa.table({"x": [1, 2, 3]}), tmp_path / "someone-elses.parquet")
    reports = []
    table = read_store(str(tmp_path), report=lambda path, err: reports.append((path, str(err))))
    assert table.column("episode_id").to_pylist() == ["good"] and "x" not in table.column_names
    assert len(reports) == 1 and reports[0][0].endswith("someone-elses.parquet") and "episode_id" in reports[0][1]
    ids = read_store(str(tmp_path), columns=["episode_id"], report=lambda path, err: reports.append(path))
    assert ids.column("episode_id").to_pylist() == ["good"] and len(reports) == 2


@pytest.mark.parametrize("name", ["/../../x", "../x", ".hidden", "a/b", "-rf", "a\0b"])
def test_a_shard_name_cannot_leave_the_store(recorded, tmp_path, name):
    with pytest.raises(ValueError, match="could name a file outside the store"):
        write_shard(str(tmp_path / "store"), [episode_row(recorded[0], "a")], name=name)
    assert not list(tmp_path.rglob("*.parquet"))


def test_unfinished_shard_is_invisible(recorded, tmp_path):
    (tmp_path / ".shard-x.parquet.tmp").write_bytes(b"partial")
    write_shard(str(tmp_path), [episode_row(recorded[0], "a")])
    assert read_store(str(tmp_path)).num_rows == 1


class RenameLater:
    """The local filesystem, except that ``before_rename()`` runs just before its first rename."""

    def __init__(self, before_rename):
        self.fs, self.before_rename = pafs.LocalFileSystem(), before_rename

    def __getattr__(self, name):
        return getattr(self.fs, name)

    def move(self, src, dst):
        before, self.before_rename = self.before_rename, lambda: None
        before()
        self.fs.move(src, dst)


def test_two_writers_of_the_same_shard_leave_one_whole_shard(recorded, tmp_path, monkeypatch):
    store, real_fs = str(tmp_path), episode_store._fs
    # the first writer is overtaken by a second one between its write and its rename
    overtaken = [RenameLater(lambda: write_shard(store, [episode_row(recorded[1], "same")], name="same"))]

    def first_overtaken(location):
        fs, root = real_fs(location)
        return (overtaken.pop() if overtaken else fs), root

    monkeypatch.setattr(episode_store, "_fs", first_overtaken)
    write_shard(store, [episode_row(recorded[0], "same")], name="same")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.parquet"]  # no temporary file left behind
    assert load_episode(store, "same")["seed"] == recorded[0].seed  # the last rename wins, whole


CRASH_BEFORE_RENAME = """
import os, sys
from intentloop.agents import episode_store

real = episode_store._fs
class Crash:
    def __init__(self, fs): self.fs = fs
    def __getattr__(self, name): return getattr(self.fs, name)
    def move(self, src, dst): os._exit(9)  # the process dies: no cleanup runs
episode_store._fs = lambda location: (Crash(real(location)[0]), real(location)[1])
episode_store.write_shard(sys.argv[1], [{"episode_id": "torn", "seed": 1}], name="torn")
"""


def test_a_writer_killed_between_write_and_rename_leaves_no_shard(recorded, tmp_path):
    crashed = subprocess.run([sys.executable, "-c", CRASH_BEFORE_RENAME, str(tmp_path)], capture_output=True)
    assert crashed.returncode == 9, crashed.stderr.decode()[-2000:]
    assert [p.name for p in tmp_path.iterdir()] != [], "the writer wrote something before it died"
    assert shard_paths(str(tmp_path)) == [] and read_store(str(tmp_path)).num_rows == 0
    write_shard(str(tmp_path), [episode_row(recorded[0], "torn")], name="torn")  # collected again
    assert read_store(str(tmp_path), columns=["episode_id"])["episode_id"].to_pylist() == ["torn"]


def test_missing_store_and_unknown_episode_fail_clearly(recorded, tmp_path):
    with pytest.raises(FileNotFoundError, match="no episode store"):
        read_store(str(tmp_path / "nowhere"))
    write_shard(str(tmp_path), [episode_row(r, f"ep{r.seed}") for r in recorded])
    with pytest.raises(KeyError, match="no episode 'ep9'"):
        load_episode(str(tmp_path), "ep9")
    with pytest.raises(ValueError, match="holds 2 episodes"):
        load_episode(str(tmp_path))


def test_replay_writes_video_key_frames_scalars_and_text(recorded, tmp_path):
    episode = load_episode(write_shard(str(tmp_path / "store"), [episode_row(recorded[0], "ep0")]))
    prefix = write_replay(episode, str(tmp_path / "tb"), fps=10, scale=2)
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    steps = recorded[0].steps
    video = acc.Images(f"{prefix}/video")
    gif = Image.open(io.BytesIO(video[0].encoded_image_string))
    assert gif.n_frames == steps + 1
    assert gif.size == (48 * 2, 48 * 2 + 2 * TEXT_BAR), "upscaled frame plus a text bar above and below"
    first = np.array(Image.open(io.BytesIO(acc.Images(f"{prefix}/key_frames")[0].encoded_image_string)))  # PNG
    upscaled = np.repeat(np.repeat(recorded[0].trace.frames[0], 2, axis=0), 2, axis=1)
    assert np.array_equal(first[TEXT_BAR:-TEXT_BAR], upscaled), "the camera frame sits between the two bars"
    assert len(acc.Images(f"{prefix}/key_frames")) == len(recorded[0].outcomes) + 1
    for name in ("reward", "gripper_opening", "goal_distance"):
        assert [e.step for e in acc.Scalars(f"{prefix}/{name}")] == list(range(1, steps + 1))
    texts = {t for t in acc.Tags()["tensors"]}
    assert {f"{prefix}/{n}/text_summary" for n in ("instruction", "plan", "outcomes")} <= texts
    plan = acc.Tensors(f"{prefix}/plan/text_summary")[0].tensor_proto.string_val[0].decode()
    assert recorded[0].task["intents"][0] in plan


def test_user_feedback_is_stored_and_replayed(tmp_path):
    env = gym.make("intentloop/Tabletop-v0", task="correct", image_size=32)
    result = HierarchicalAgent(OraclePlanner(), ScriptedSkill(), record=True).run_episode(env, seed=0)
    said = env.unwrapped.task.event[2]
    episode = load_episode(write_shard(str(tmp_path / "store"), [episode_row(result, "fb")]))
    assert episode["feedback"] == [{"at": 1, "text": said}]
    prefix = write_replay(episode, str(tmp_path / "tb"), fps=10, scale=1)
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    text = acc.Tensors(f"{prefix}/outcomes/text_summary")[0].tensor_proto.string_val[0].decode()
    lines = text.split("  \n")
    assert lines[2] == f"user: *{said}*" and lines[1].startswith("1. `pick(")  # after the interrupted pick


def test_a_thinking_planners_thoughts_are_stored_and_replayed(tmp_path):
    from intentloop.agents.vlm import VLMModelConfig, VLMPlanner

    config = VLMModelConfig(image_size=32, vision_hidden=16, vision_layers=1, vision_heads=1, text_hidden=32,
                            text_layers=1, text_heads=2, text_intermediate=64, max_positions=256)  # fmt: skip
    planner = VLMPlanner(model_config=config, think=True, max_thought=5)
    env = gym.make("intentloop/Tabletop-v0", task="put", image_size=32)
    result = HierarchicalAgent(planner, ScriptedSkill(), record=True, max_intents=3).run_episode(env, seed=0)
    env.close()
    calls = len(result.outcomes) + (len(result.outcomes) < 3)  # a done() ends the episode without an outcome
    assert len(result.thoughts) == calls and all(isinstance(t, str) for t in result.thoughts)
    episode = load_episode(write_shard(str(tmp_path / "store"), [episode_row(result, "th")]))
    assert episode["thoughts"] == result.thoughts
    prefix = write_replay(episode, str(tmp_path / "tb"), fps=10, scale=1)
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    text = acc.Tensors(f"{prefix}/outcomes/text_summary")[0].tensor_proto.string_val[0].decode()
    for i, _ in enumerate(result.outcomes):
        assert f"{i + 1}. `" in text and f"(thought: *{result.thoughts[i]}*)" in text


def test_replay_without_frames_is_refused(recorded, tmp_path):
    episode = load_episode(write_shard(str(tmp_path), [episode_row(recorded[0], "ep0")]))
    episode["frames"] = []
    with pytest.raises(ValueError, match="has no frames"):
        write_replay(episode, str(tmp_path / "tb"))

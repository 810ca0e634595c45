"""`intentloop export`: a 20-episode store out to Minari and LeRobot, read back with their own readers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import gymnasium as gym
import intentloop.envs  # noqa: F401  (registers the env ids)
import minari
import numpy as np
import pandas as pd
import pytest
from intentloop.agents import HierarchicalAgent, OraclePlanner
from intentloop.agents.episode_store import decode_png, episode_row, read_store, write_shard
from intentloop.experiments.export import export
from intentloop.policies import ScriptedSkill

FAMILIES = ("put", "chain", "clear", "correct", "perturb")  # templated, goal-level, user feedback, a perturbation


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """20 oracle episodes, 4 per family, in two shards (the export reads a shard at a time)."""
    rows = []
    for family in FAMILIES:
        env = gym.make("intentloop/Tabletop-v0", task=family, chain_length=2, image_size=32)
        agent = HierarchicalAgent(OraclePlanner(), ScriptedSkill(), record=True)
        rows += [episode_row(agent.run_episode(env, seed=s), f"{family}-{s}") for s in range(4)]
        env.close()
    path = tmp_path_factory.mktemp("store")
    write_shard(str(path), rows[:9])
    write_shard(str(path), rows[9:])
    stored = read_store(str(path)).to_pylist()
    assert len(stored) == 20 and any(r["feedback"] for r in stored)
    return str(path), stored


def test_minari_export_loads_back_with_minari_every_value_equal(store, tmp_path, monkeypatch):
    path, rows = store
    export("minari", path, str(tmp_path), "intentloop/tabletop/test-v0", fps=20, jpeg=False)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    dataset = minari.load_dataset("intentloop/tabletop/test-v0")
    assert dataset.total_episodes == 20 and dataset.total_steps == sum(r["steps"] for r in rows)
    metas = list(dataset.storage.get_episode_metadata(range(20)))
    for row, episode, meta in zip(rows, dataset.iterate_episodes(), metas, strict=True):
        steps = row["steps"]
        assert len(episode) == steps and meta["episode_id"] == row["episode_id"]
        frames = np.stack([decode_png(f) for f in row["frames"]])
        assert np.array_equal(episode.observations["image"], frames)  # lossless: every pixel
        assert np.array_equal(episode.observations["proprio"], np.asarray(row["proprio"], np.float32))
        assert list(episode.observations["instruction"]) == [row["instruction"]] * (steps + 1)
        assert np.array_equal(episode.actions, np.asarray(row["actions"], np.float32))
        assert np.array_equal(episode.rewards, np.asarray(row["rewards"], np.float32))
        assert episode.terminations[-1] == row["success"] and episode.truncations[-1] != row["success"]
        assert not episode.terminations[:-1].any() and not episode.truncations[:-1].any()
        assert list(episode.infos["segment"]) == [*row["segment"], -1]
        assert list(episode.infos["intent"]) == [*(row["outcomes"][s]["intent"] for s in row["segment"]), ""]
        assert np.allclose(episode.infos["goal_distance"][:-1], row["goal_distance"])
        assert meta["outcomes"] == row["outcomes"] and meta["feedback"] == row["feedback"]
        assert meta["success"] == row["success"] and meta["task"] == json.loads(row["task"])
    # the recovered env replays an episode's start from its seed and options
    env = dataset.recover_environment()
    obs, _ = env.reset(seed=metas[5]["seed"], options=metas[5]["options"])
    assert obs["instruction"] == rows[5]["instruction"]
    assert np.array_equal(obs["image"], decode_png(rows[5]["frames"][0]))
    env.close()


def test_lerobot_export_is_the_v3_layout_file_by_file_and_its_frames_read_back_with_hf_datasets(store, tmp_path):
    path, rows = store
    root = export("lerobot", path, str(tmp_path / "ds"), "", fps=20, jpeg=False)
    info = json.loads((root / "meta" / "info.json").read_text())
    frames_total = sum(r["steps"] for r in rows)  # a frame pairs an observation with its action
    assert info["codebase_version"] == "v3.0" and info["fps"] == 20 and info["video_path"] is None
    assert (info["total_episodes"], info["total_frames"]) == (20, frames_total)
    assert info["total_tasks"] == len({r["instruction"] for r in rows}) and info["splits"] == {"train": "0:20"}
    features = info["features"]
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):  # LeRobot's own columns
        assert features[key]["shape"] == [1] and features[key]["dtype"] in ("float32", "int64")
    assert features["observation.images.front"] == {
        "dtype": "image", "shape": [32, 32, 3], "names": ["height", "width", "channels"]
    }  # fmt: skip
    assert features["observation.state"]["shape"] == [7] and features["action"]["shape"] == [4]

    tasks = pd.read_parquet(root / "meta" / "tasks.parquet")  # as LeRobot reads it
    assert tasks.index.name == "task" and sorted(tasks["task_index"]) == list(range(info["total_tasks"]))
    episodes = pd.read_parquet(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    assert list(episodes["episode_index"]) == list(range(20))
    assert list(episodes["length"]) == [r["steps"] for r in rows]
    assert list(episodes["dataset_from_index"][1:]) == list(episodes["dataset_to_index"][:-1])
    assert episodes["dataset_to_index"].iloc[-1] == frames_total
    assert [json.loads(o) for o in episodes["outcomes"]] == [r["outcomes"] for r in rows]
    stats = json.loads((root / "meta" / "stats.json").read_text())
    assert np.array(stats["observation.images.front"]["mean"]).shape == (3, 1, 1)
    assert stats["action"]["count"] == [frames_total]
    all_actions = np.concatenate([np.asarray(r["actions"], np.float32) for r in rows])
    assert np.allclose(stats["action"]["mean"], all_actions.mean(0), atol=1e-5)

    files = sorted({info["data_path"].format(chunk_index=c, file_index=f) for c, f in
                    zip(episodes["data/chunk_index"], episodes["data/file_index"], strict=True)})  # fmt: skip
    data = datasets.concatenate_datasets([datasets.Dataset.from_parquet(str(root / f)) for f in files])
    assert isinstance(data.features["observation.images.front"], datasets.Image) and len(data) == frames_total
    task_of = dict(zip(tasks["task_index"], tasks.index, strict=True))
    for e, row in enumerate(rows):
        start = episodes["dataset_from_index"][e]
        for t in (0, row["steps"] // 2, row["steps"] - 1):
            frame = data[int(start + t)]
            assert (frame["episode_index"], frame["frame_index"], frame["index"]) == (e, t, start + t)
            assert np.array_equal(np.asarray(frame["observation.images.front"]), decode_png(row["frames"][t]))
            assert np.array_equal(np.float32(frame["observation.state"]), np.float32(row["proprio"][t]))
            assert np.array_equal(np.float32(frame["action"]), np.float32(row["actions"][t]))
            assert frame["next.reward"] == np.float32(row["rewards"][t])
            assert frame["next.done"] == (t == row["steps"] - 1)
            assert frame["intent"] == row["outcomes"][row["segment"][t]]["intent"]
            assert task_of[frame["task_index"]] == row["instruction"]
            assert frame["timestamp"] == pytest.approx(t / 20)


def test_bad_export_requests_fail_with_one_sentence(store, tmp_path):
    path, _ = store
    with pytest.raises(ValueError, match="unknown format 'hdf9'; choose one of: minari, lerobot"):
        export("hdf9", path, str(tmp_path), "x", fps=20, jpeg=False)
    with pytest.raises(FileNotFoundError, match="no episode store"):
        export("lerobot", str(tmp_path / "nothing"), str(tmp_path / "out"), "", fps=20, jpeg=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ValueError, match="exists and is not empty"):
        export("lerobot", path, str(tmp_path / "full"), "", fps=20, jpeg=False)
    export("minari", path, str(tmp_path / "m"), "intentloop/tabletop/again-v0", fps=20, jpeg=False)
    with pytest.raises(ValueError, match="already exists"):
        export("minari", path, str(tmp_path / "m"), "intentloop/tabletop/again-v0", fps=20, jpeg=False)
    assert os.environ.get("MINARI_DATASETS_PATH") != str((tmp_path / "m").resolve())  # put back as it was


def test_the_export_command_writes_a_dataset_and_refuses_a_bad_format_in_one_sentence(store, tmp_path):
    path, _ = store
    cli = str(Path(sys.executable).parent / "intentloop")
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    common = [f"store={path}", f"hydra.run.dir={tmp_path / 'run'}"]
    ok = subprocess.run([cli, "export", "format=lerobot", f"out={tmp_path / 'ds'}", *common], capture_output=True,
                        text=True, env=env, timeout=300)  # fmt: skip
    assert ok.returncode == 0 and (tmp_path / "ds" / "meta" / "info.json").exists(), ok.stderr
    bad = subprocess.run([cli, "export", "format=hdf9", f"out={tmp_path / 'x'}", *common], capture_output=True,
                         text=True, env=env, timeout=300)  # fmt: skip
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith("intentloop export: error: unknown format")

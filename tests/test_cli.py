import io
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import intentloop.configs.detector_schema  # noqa: F401
import intentloop.configs.planner_schema  # noqa: F401
import intentloop.configs.self_train_schema  # noqa: F401
import intentloop.envs  # noqa: F401  (registers the env ids)
import pytest
import torch
from hydra import compose, initialize_config_module
from intentloop.agents import PlannerInput
from intentloop.agents.episode_store import load_episode
from intentloop.agents.vlm.modeling import build_default_model, load_model
from intentloop.agents.vlm.vlm_planner import VLMPlanner
from intentloop.envs.intents import parse_intent
from intentloop.envs.scene import BLOCKS, ZONES
from intentloop.experiments.cli import COMMANDS, PLANNED, main
from omegaconf import OmegaConf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

CLI = str(Path(sys.executable).parent / "intentloop")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def run(*args, cwd, timeout=300):
    env = {**os.environ, "MUJOCO_GL": "egl", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([CLI, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in [*COMMANDS, *PLANNED])


def test_unknown_commands_fail_clearly(capsys):
    assert main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_every_app_config_composes(name):
    with initialize_config_module("intentloop.configs", version_base="1.3"):
        cfg = compose(name)
    assert type(cfg._metadata.object_type).__name__ == "type", "every app config extends a structured schema"
    assert cfg._metadata.object_type.__name__.lower() == f"{name.replace('_', '')}config"


def test_evaluate_writes_metrics_json(tmp_path):
    proc = run(
        "evaluate",
        "episodes=3",
        "chain_length=2",
        "env.image_size=32",
        "progress=false",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("success_rate", "avg_chain_length", "per_intent_success", "episodes_per_s", "episodes", "seeds"):
        assert key in metrics
    assert metrics["episodes"] == 3 and metrics["seeds"] == [0, 1, 2]
    assert metrics["config"]["chain_length"] == 2
    assert len((tmp_path / "episodes.jsonl").read_text().splitlines()) == 3


@pytest.mark.slow
def test_train_detector_then_evaluate_with_it(tmp_path):
    tiny = ["data.episodes=[3,2,0,0,0]", "data.families=[clear]", "data.family_episodes=2", "data.val_fraction=0.4",
            "data.image_size=32", "model.channels=[8,8,8,8]", "model.text_dim=8", "train.steps=3", "train.eval_every=3",
            "progress=false"]  # fmt: skip
    proc = run("train-detector", *tiny, f"hydra.run.dir={tmp_path / 'train'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "intent: threshold=" in proc.stdout and "task: threshold=" in proc.stdout
    trained = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert trained["steps"] == 3 and {"intent", "task"} <= set(trained["val"])
    path = tmp_path / "train" / "detector"
    args = ["evaluate", "episodes=2", "env.image_size=32", "progress=false", "agent.detector.name=learned"]
    proc = run(*args, f"agent.detector.path={path}", f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    detector = json.loads((tmp_path / "eval" / "metrics.json").read_text())["detector"]
    assert sum(detector["task"][k] for k in ("tp", "fp", "tn", "fn")) == 2
    proc = run(*args[:-1], "agent.detector.name=learned", f"agent.detector.path={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("has no config.json: it is not a save_pretrained folder")
    proc = run(*args[:1], "episodes=1", "progress=false", "agent.detector.name=learned", f"agent.detector.path={path}",
               cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2
    assert "trained on 32x32 camera images, the env gives 96x96: set env.image_size=32" in proc.stderr


def test_evaluate_blank_image_ablation_reports_both_figures(tmp_path):
    proc = run(
        "evaluate",
        "task=clear",
        "planner=text",
        "ablation=blank_image",
        "episodes=2",
        "env.image_size=32",
        "progress=false",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    blank = metrics["ablation"]["blank_image"]
    assert blank["seeds"] == metrics["seeds"] == [0, 1] and "blank_image: success_rate=" in proc.stdout
    for m in (metrics, blank):
        assert {"success_rate", "final_success_rate", "goal_progress", "success_interval_95"} <= set(m)
    # the text planner never looks, so the same episodes give the same figures with a blank image
    assert blank["goal_progress"] == metrics["goal_progress"]


def test_multirun_sweeps_values(tmp_path):
    proc = run(
        "evaluate",
        "-m",
        "episodes=1",
        "chain_length=1,2",
        "env.image=false",
        "progress=false",
        f"hydra.sweep.dir={tmp_path}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lengths = sorted(
        json.loads((tmp_path / str(i) / "metrics.json").read_text())["config"]["chain_length"] for i in range(2)
    )
    assert lengths == [1, 2]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("backend=gazebo", "unknown backend 'gazebo'"),
        ("task=juggle", "unknown task 'juggle'; choose one of: pick, push, put, stack, chain, clear, fill, refer"),
        ("episodes=0", "episodes must be >= 1"),
        ("ablation=squint", "unknown ablation 'squint'"),
        ("level=L9", "unknown level 'L9'; choose one of: L1, L2, L3, L4"),
        ("level=L4", "level L4 needs a never-trained family; task=chain is not one (never trained: clear_except)"),
        # what Hydra itself cannot compose (it would print several lines and exit 1)
        ("episodez=3", "Could not override 'episodez': Key 'episodez' not in 'EvaluateConfig'"),
        ("episodes=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
        ("planner=gpt", "Could not find 'planner/gpt'; choose one of: oracle, text, vlm"),
        ("episodes", "Error parsing override 'episodes': missing EQUAL"),
    ],
)
def test_bad_values_fail_with_one_sentence(tmp_path, override, message):
    proc = run("evaluate", override, f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("intentloop evaluate: error: ")
    assert message in lines[0] and not (tmp_path / "metrics.json").exists()


@pytest.mark.slow
def test_demo_runs_the_whole_loop_and_prints_a_summary_table(tmp_path):
    from test_self_train import TINY

    with initialize_config_module("intentloop.configs", version_base="1.3"):
        defaults = OmegaConf.to_object(compose("demo"))
    assert defaults.init.planner == "shipped" and defaults.update.arg_smoothing > 0  # the demo starts competent
    # from scratch (init.planner=null), tiny, so the training stage is exercised too
    overrides = (*TINY, "init.planner=null", "rounds=1", "collect.episodes=2", f"hydra.run.dir={tmp_path}")
    proc = run("demo", *overrides, cwd=tmp_path, timeout=900)  # 205-246 s in the slow tier, whose neighbours load it
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "planner: the default VLM trained on 5 oracle episodes" in proc.stdout
    assert "unseen/1" in proc.stdout and "the control arm" in proc.stdout
    assert f"tensorboard --logdir {tmp_path / 'tb'}" in proc.stdout
    assert f"the report (plots, failures, replays): {tmp_path / 'report.html'}" in proc.stdout
    assert "<svg" in (tmp_path / "report.html").read_text()
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [r["round"] for r in rows] == [0, 1]
    assert set(rows[1]["report"]) == set(rows[1]["control"]) == {"train/1", "practice/1", "unseen/1"}
    with initialize_config_module("intentloop.configs", version_base="1.3"):
        model_config = OmegaConf.to_object(compose("demo", overrides=list(TINY))).planner.model
    trained, init = load_model(tmp_path / "planner" / "v000")[0], build_default_model(model_config)[0]
    assert trained.state_dict().keys() == init.state_dict().keys()
    assert any(not torch.equal(w, init.state_dict()[k]) for k, w in trained.state_dict().items()), "never trained"
    env = gym.make("intentloop/Tabletop-v0", task="pick", image_size=48)
    obs, _ = env.reset(seed=0)
    text = VLMPlanner(tmp_path / "planner" / "v000").plan(PlannerInput(obs["instruction"], obs["image"]))
    assert parse_intent(text, BLOCKS, ZONES)  # the demo's planner loads and plans


@pytest.mark.slow
def test_recorded_episode_replays_to_tensorboard(tmp_path):
    proc = run(
        "evaluate",
        "episodes=1",
        "task=pick",
        "record=true",
        "env.image_size=32",
        "progress=false",
        f"hydra.run.dir={tmp_path / 'eval'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    proc = run(
        "replay",
        "episode=mujoco-train-1-seed0",
        f"store={tmp_path / 'eval' / 'episodes'}",
        f"logdir={tmp_path / 'tb'}",
        f"hydra.run.dir={tmp_path / 'replay'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"tensorboard --logdir {tmp_path / 'tb'}" in proc.stdout
    episode, prefix = load_episode(str(tmp_path / "eval" / "episodes")), "replay/mujoco-train-1-seed0"
    tb = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0, "tensors": 0}).Reload()
    video = Image.open(io.BytesIO(tb.Images(f"{prefix}/video")[0].encoded_image_string))
    assert video.n_frames == len(episode["frames"]) == episode["steps"] + 1  # the episode's own frames
    said = {
        n: tb.Tensors(f"{prefix}/{n}/text_summary")[0].tensor_proto.string_val[0].decode()
        for n in ("instruction", "outcomes")
    }
    assert said["instruction"] == episode["instruction"]
    assert episode["outcomes"] and all(f"`{o['intent']}`" in said["outcomes"] for o in episode["outcomes"])


@pytest.mark.slow
def test_replay_of_a_missing_store_is_one_sentence(tmp_path):
    proc = run("replay", f"episode={tmp_path / 'nothing'}", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 2 and "no episode store or shard" in proc.stderr and "Traceback" not in proc.stderr


def test_wilson_interval_stays_in_zero_one_and_covers_the_rate():
    from intentloop.experiments.evaluation import wilson

    lo, hi = wilson(0, 30)
    assert str(lo) == "0.0" and 0.10 < hi < 0.13  # no "-0.0" printed for an empty count
    assert wilson(30, 30)[1] == 1.0 and 0.87 < wilson(30, 30)[0] < 0.9
    lo, hi = wilson(15, 30)
    assert lo < 0.5 < hi and abs((0.5 - lo) - (hi - 0.5)) < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize(
    "override, message",
    [
        ("ray.num_cpus=0", "ray.num_cpus must be >= 1"),
        ("ray.address=127.0.0.1:1", "no Ray cluster answers at ray.address=127.0.0.1:1"),
        ("ray.address=nonsense", "ray.address must be 'auto' or host:port"),
        ("task=bogus", "unknown task 'bogus'"),
        ("seed=-3", "seed must be >= 0"),
        ("env.max_delta=-1", "max_delta (the hand's step at action 1.0) must be in (0, 0.1] m"),
    ],
)
def test_collect_refuses_bad_settings_with_one_sentence_before_ray_starts(tmp_path, override, message):
    proc = run("collect", "episodes=1", "skills=scripted", "progress=false", override, f"hydra.run.dir={tmp_path}",
               cwd=tmp_path)  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("intentloop collect: error: " + message)
    assert not (tmp_path / "episodes").exists()

"""The run report (experiments/report.py): the verdict sentence, the chart and the replays, from real episodes."""

import base64
import io
import re

import gymnasium as gym
import intentloop.envs  # noqa: F401
import pytest
from intentloop.agents import HierarchicalAgent, OraclePlanner
from intentloop.agents.episode_store import episode_row, write_shard
from intentloop.experiments.report import verdict, write_report
from intentloop.policies import ScriptedSkill
from PIL import Image


def cell(success: float, episodes: int = 30) -> dict:
    return {"success_rate": success, "avg_chain_length": success, "episodes": episodes}


def round_metrics(r: int, promoted: bool, heldout: float, train: float, kept: dict | None = None) -> dict:
    sets = {"heldout/1": cell(heldout), "train/1": cell(train)}
    m = {"round": r, "promoted": promoted, "eval": {"sets": sets}, "promoted_eval": {"sets": kept or sets}}
    if r:
        m["reflect"] = {"episodes": 4, "failures_by_cause": {"planner": 3 * r, "skill": 1}}
    return m


def test_the_verdict_says_whether_held_out_success_rose_and_the_train_sets_held():
    start = round_metrics(0, True, 0.30, 0.90)
    up = round_metrics(1, True, 0.80, 0.90)
    assert verdict([start, up]) == (
        "Round 1 promoted: held-out success heldout/1 +0.50 (heldout/1: 0.30 -> 0.80, outside its 95% interval); "
        "the train sets held."
    )
    small = round_metrics(1, True, 0.40, 0.85)  # inside the interval, and a train set fell
    assert verdict([start, small]) == "Round 1 promoted: held-out success heldout/1 +0.10; a train set fell 0.05."
    refused = round_metrics(1, False, 0.90, 0.50, kept=start["eval"]["sets"])
    assert verdict([start, refused]) == "No round was promoted: the round-0 planner is kept (1 rounds tried)."
    with pytest.raises(ValueError, match="no rounds to report"):
        write_report("nowhere", [])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory whose round 1 holds two recorded episodes: a success and a failure."""
    run = tmp_path_factory.mktemp("run")
    env = gym.make("intentloop/Tabletop-v0", task="put", image_size=32)
    good = HierarchicalAgent(OraclePlanner(), ScriptedSkill(), record=True).run_episode(env, seed=0)
    bad = HierarchicalAgent(OraclePlanner(), ScriptedSkill(), record=True, max_steps_per_intent=2).run_episode(
        env, seed=1
    )
    env.close()
    assert good.subgoals_done > bad.subgoals_done
    write_shard(str(run / "rounds" / "r001" / "episodes"), [episode_row(good, "good"), episode_row(bad, "bad")])
    history = [round_metrics(0, True, 0.30, 0.90), round_metrics(1, True, 0.80, 0.90)]
    return run, history, good, bad


def test_the_report_holds_the_chart_tables_and_the_best_and_worst_replays(run_dir):
    run, history, good, bad = run_dir
    page = write_report(run, history).read_text()
    assert page.count("<polyline") == 2 and "heldout/1" in page and "Round 1 promoted" in page
    assert "0.80 [0.63, 0.91] / 0.80" in page  # the candidate's success with its Wilson interval
    assert re.search(r"<td>1</td><td>4</td><td>3</td><td>1</td>", page)  # failures of round 1 by cause
    gifs = [Image.open(io.BytesIO(base64.b64decode(g))) for g in re.findall(r"data:image/gif;base64,([^\"]+)", page)]
    assert [g.n_frames for g in gifs] == [good.steps + 1, bad.steps + 1]  # best first, every frame of each
    assert good.instruction in page and "best of round 1" in page and "worst of round 1" in page

"""End to end: a real TensorBoard server on localhost, opened in headless Chromium, shows the replay."""

import os

import gymnasium as gym
import intentloop.envs  # noqa: F401
import pytest
from intentloop.agents import HierarchicalAgent, OraclePlanner
from intentloop.agents.episode_store import episode_row, load_episode, write_shard
from intentloop.experiments.replay import TEXT_BAR, write_replay
from intentloop.experiments.tensorboard_view import browser_missing, chromium, tensorboard_server, wait_for_images
from intentloop.policies import ScriptedSkill

MISSING = browser_missing()
IN_CI = os.environ.get("CI", "").lower() == "true"  # .ci/run sets it: there the test must run, never skip
pytestmark = pytest.mark.skipif(MISSING is not None and not IN_CI, reason=f"no browser here: {MISSING}")


def test_replay_is_listed_and_renders_in_tensorboard(tmp_path):
    if MISSING is not None:
        pytest.fail(f"CI=true but the browser test cannot run: {MISSING}")
    env = gym.make("intentloop/Tabletop-v0", task="pick", image_size=48)
    result = HierarchicalAgent(OraclePlanner(), ScriptedSkill(), record=True).run_episode(env, seed=0)
    episode = load_episode(write_shard(str(tmp_path / "store"), [episode_row(result, "browser-ep")]))
    prefix = write_replay(episode, str(tmp_path / "tb"), scale=2)
    with tensorboard_server(str(tmp_path / "tb")) as url, chromium() as driver:
        driver.get(f"{url}/?darkMode=false#images")
        found = wait_for_images(driver, f"{prefix}/video")
        driver.save_screenshot(str(tmp_path / "replay.png"))
    assert [96, 96 + 2 * TEXT_BAR] in found["sizes"], found  # the annotated replay frame, not just any image
    assert (tmp_path / "replay.png").stat().st_size > 10_000


def test_the_run_report_renders_in_chromium_with_its_chart_and_playing_replays(tmp_path):
    """report.html opened from disk: no console error, the chart drawn, both replays loaded and animated."""
    if MISSING is not None:
        pytest.fail(f"CI=true but the browser test cannot run: {MISSING}")
    from intentloop.experiments.report import write_report
    from test_report import round_metrics

    env = gym.make("intentloop/Tabletop-v0", task="put", image_size=32)
    rows = [
        episode_row(HierarchicalAgent(OraclePlanner(), ScriptedSkill(), record=True).run_episode(env, seed=s), f"e{s}")
        for s in (0, 1)
    ]
    write_shard(str(tmp_path / "rounds" / "r001" / "episodes"), rows)
    page = write_report(tmp_path, [round_metrics(0, True, 0.3, 0.9), round_metrics(1, True, 0.8, 0.9)])
    with chromium() as driver:
        driver.get(page.as_uri())
        found = driver.execute_script(
            "return {images: [...document.images].map(i => [i.complete, i.naturalWidth]),"
            " lines: document.querySelectorAll('svg.chart polyline').length,"
            " verdict: document.getElementById('verdict').textContent}"
        )
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        driver.save_screenshot(str(tmp_path / "report.png"))
    assert errors == [], errors
    assert found["images"] == [[True, 96], [True, 96]] and found["lines"] == 2, found  # 32 px frames, scale 3
    assert found["verdict"].startswith("Round 1 promoted")
    assert (tmp_path / "report.png").stat().st_size > 10_000

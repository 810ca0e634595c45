"""Regenerate docs/replay.png, the README's TensorBoard replay screenshot, with the project's own code.

    python docs/make_screenshot.py

Records a 3-intent episode (oracle planner + scripted skills, seed 1), replays it to TensorBoard, serves
it on localhost and screenshots the Images tab in headless Chromium.
"""

import tempfile
import time
from pathlib import Path

import gymnasium as gym
import intentloop.envs  # noqa: F401
from intentloop.agents import HierarchicalAgent, OraclePlanner
from intentloop.agents.episode_store import episode_row, load_episode, write_shard
from intentloop.experiments.replay import write_replay
from intentloop.experiments.tensorboard_view import chromium, tensorboard_server, wait_for_images
from intentloop.policies import ScriptedSkill


def main(out: Path = Path(__file__).parent / "replay.png") -> None:
    env = gym.make("intentloop/Tabletop-v0", chain_length=3, image_size=96)
    result = HierarchicalAgent(OraclePlanner(), ScriptedSkill(), record=True).run_episode(env, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        episode = load_episode(write_shard(f"{tmp}/store", [episode_row(result, "demo-episode")]))
        prefix = write_replay(episode, f"{tmp}/tb")
        with tensorboard_server(f"{tmp}/tb") as url, chromium(1280, 760) as driver:
            driver.get(f"{url}/?darkMode=false#images")
            wait_for_images(driver, f"{prefix}/video")
            time.sleep(1.5)  # let the GIF advance a few frames
            driver.save_screenshot(str(out))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

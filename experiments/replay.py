"""Replay a stored episode as TensorBoard events.

How to run:   intentloop replay episode=runs/evaluate/<date>/episodes            (a store with one episode)
              intentloop replay episode=<episode_id> store=runs/evaluate/<date>/episodes logdir=tb/replays
Then:         tensorboard --logdir <logdir>

Writes, under the tag prefix ``replay/<episode_id>``: the camera video with the step number, the current
intent and its outcome drawn on every frame (an animated image in the Images tab); key frames (the first
frame of every intent and the last frame); per-step scalars (reward, gripper opening, distance of the
intent's block to its goal); the instruction, the plan and every outcome as text.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import hydra
import intentloop.configs.schema  # noqa: F401  (registers the config schemas)
import numpy as np
from hydra.core.hydra_config import HydraConfig
from intentloop.agents.episode_store import decode_png, load_episode
from intentloop.experiments.common import user_errors, writable_folder
from omegaconf import DictConfig
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter

GREEN, RED, WHITE = (60, 200, 80), (230, 60, 60), (255, 255, 255)
TEXT_BAR = 18  # px: the bar above the frame (step and intent) and the one below it (outcome)


def annotate(frame: np.ndarray, step: int, intent: str, outcome: str | None, ok: bool | None, scale: int) -> np.ndarray:
    """Upscale ``frame`` and draw the step, the intent and its outcome on it."""
    h, w = frame.shape[:2]
    img = cv2.resize(frame, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    bar = TEXT_BAR
    img = cv2.copyMakeBorder(img, bar, bar, 0, 0, cv2.BORDER_CONSTANT, value=(20, 20, 20))
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    cv2.putText(img, f"t={step}  {intent}", (4, 13), font, size, WHITE, 1, cv2.LINE_AA)
    if outcome:
        color = GREEN if ok else RED
        cv2.putText(img, outcome, (4, img.shape[0] - 5), font, size, color, 1, cv2.LINE_AA)
        cv2.rectangle(img, (0, bar), (img.shape[1] - 1, img.shape[0] - bar - 1), color, 2)
    return img


def gif_bytes(frames: list[np.ndarray], fps: int) -> bytes:
    """``frames`` as one animated GIF, looping."""
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return buf.getvalue()


def gif_summary(tag: str, frames: list[np.ndarray], fps: int) -> Summary:
    """An animated-GIF image summary: TensorBoard plays it in the Images tab (no video codec needed)."""
    h, w = frames[0].shape[:2]
    image = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=gif_bytes(frames, fps))
    return Summary(value=[Summary.Value(tag=tag, image=image)])


def segment_labels(episode: dict, step: int) -> tuple[str, str | None, bool | None]:
    """(intent, outcome text, success) of the intent running at observation ``step`` (0 = before any)."""
    if step == 0 or not episode["segment"]:
        return "(planning)", None, None
    outcome = episode["outcomes"][episode["segment"][step - 1]]
    text = f"{'success' if outcome['success'] else 'failure'}: {outcome['reason']} ({outcome['steps']} steps)"
    return outcome["intent"], text, outcome["success"]


def annotated_frames(episode: dict, scale: int) -> list[np.ndarray]:
    """Every camera frame of ``episode`` (a store row), upscaled, with its step, intent and outcome drawn."""
    return [annotate(decode_png(f), t, *segment_labels(episode, t), scale) for t, f in enumerate(episode["frames"])]


def write_replay(episode: dict, logdir: str, fps: int = 10, scale: int = 3) -> str:
    """Write ``episode`` (a store row) to TensorBoard under ``logdir``; returns the tag prefix."""
    if not episode["frames"]:
        raise ValueError(f"episode {episode['episode_id']} has no frames (recorded with env.image=false?)")
    prefix = f"replay/{episode['episode_id']}"
    annotated = annotated_frames(episode, scale)
    writer = SummaryWriter(logdir)
    writer.file_writer.add_summary(gif_summary(f"{prefix}/video", annotated, fps), 0)
    segment = episode["segment"]
    starts = [0] + [t for t in range(1, len(segment)) if segment[t] != segment[t - 1]]  # frame t precedes step t
    for k, t in enumerate([*starts, len(annotated) - 1]):
        writer.add_image(f"{prefix}/key_frames", annotated[t], k, dataformats="HWC")
    for t, (reward, proprio, distance) in enumerate(
        zip(episode["rewards"], episode["proprio"][1:], episode["goal_distance"], strict=True), start=1
    ):
        writer.add_scalar(f"{prefix}/reward", reward, t)
        writer.add_scalar(f"{prefix}/gripper_opening", proprio[6], t)
        writer.add_scalar(f"{prefix}/goal_distance", distance, t)
    task = json.loads(episode["task"])
    writer.add_text(f"{prefix}/instruction", episode["instruction"], 0)
    plan = "  \n".join(f"{i + 1}. `{t}`" for i, t in enumerate(task["intents"]))
    if task.get("goal"):  # a goal-level task: judged by its goal; the intents are the oracle's reference plan
        plan = f"goal: `{task['goal']}`  \nreference plan:  \n{plan}"
    writer.add_text(f"{prefix}/plan", plan, 0)
    thoughts = episode.get("thoughts") or []  # a thinking planner's, one per answer
    lines = [
        f"{i + 1}. `{o['intent']}` -> {'success' if o['success'] else 'failure'} ({o['reason']}, {o['steps']} steps)"
        + (f" (thought: *{thoughts[i]}*)" if i < len(thoughts) else "")
        for i, o in enumerate(episode["outcomes"])
    ]
    for f in sorted(episode.get("feedback") or [], key=lambda f: -f["at"]):  # the user's words where they came
        lines.insert(f["at"], f"user: *{f['text']}*")
    result = f"**{'success' if episode['success'] else 'failure'}**: {episode['subgoals_done']}/{episode['n_subgoals']}"
    writer.add_text(f"{prefix}/outcomes", "  \n".join([result, *lines]), 0)
    writer.close()
    return prefix


MAX_SCALE, MAX_VIDEO_BYTES = 8, 2 * 2**30  # a 96 px camera at 8x is 768 px; the whole video stays in memory


@hydra.main(config_path="../configs", config_name="replay", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> str:
    if not 1 <= cfg.fps <= 120 or not 1 <= cfg.scale <= MAX_SCALE:
        raise ValueError(f"fps must be in [1, 120] and scale in [1, {MAX_SCALE}]; got fps={cfg.fps}, scale={cfg.scale}")
    if cfg.store is None:
        episode = load_episode(cfg.episode)  # a path to a store or shard holding one episode
    else:
        episode = load_episode(cfg.store, cfg.episode)
    if episode["frames"]:  # the video is held in memory whole: bound it before decoding a frame
        side = max(decode_png(episode["frames"][0]).shape[:2]) * cfg.scale
        need = len(episode["frames"]) * side * side * 3
        if need > MAX_VIDEO_BYTES:
            raise ValueError(f"the replay video at scale={cfg.scale} would take {need / 2**30:.1f} GiB of memory (at "
                             f"most {MAX_VIDEO_BYTES / 2**30:.0f}): choose a smaller scale")  # fmt: skip
    logdir = str(writable_folder(cfg.logdir or Path(HydraConfig.get().runtime.output_dir) / "tb", "logdir"))
    prefix = write_replay(episode, logdir, cfg.fps, cfg.scale)
    print(f"wrote {prefix} ({len(episode['frames'])} frames) to {logdir}\nview it: tensorboard --logdir {logdir}")
    return logdir


if __name__ == "__main__":
    main()

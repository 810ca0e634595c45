"""Simulator overhead: ``env.step`` and rendering against the raw engine, side by side in one run.

    python bench/bench_sim.py                       # both backends
    python bench/bench_sim.py --backends mujoco --rounds 7 --steps 400

For each backend, two pairs are timed in alternating rounds (so machine noise hits both sides alike):

- step:   ``env.step`` of ``intentloop/Tabletop-v0`` (``image=False``, through ``gym.make``'s wrappers)
          against a raw loop on the same model and frame skip (``mujoco.mj_step(m, d, nstep=frame_skip)`` /
          ``frame_skip`` x ``stepSimulation`` after setting the motors), with the same servo targets.
- render: ``env.render()`` at the observation size against the raw renderer on the same world
          (``mujoco.Renderer.update_scene + render`` / ``getCameraImage`` with ``ER_TINY_RENDERER``,
          no shadows, no segmentation mask: the settings the env uses).

The ratio is raw time / our time per call: 1.0 means no overhead; the goal is >= 0.8. Medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import intentloop.envs  # noqa: E402,F401
import numpy as np  # noqa: E402


def raw_mujoco(sim, frame_skip: int, size: int):
    import mujoco

    renderer = mujoco.Renderer(sim.model, size, size)
    camera = sim.model.camera("front").id

    def step(ctrl):
        sim.data.ctrl[:4] = ctrl
        sim.data.ctrl[4] = ctrl[3]
        mujoco.mj_step(sim.model, sim.data, nstep=frame_skip)

    def render():
        renderer.update_scene(sim.data, camera)
        return renderer.render()

    return step, render


def raw_pybullet(sim, frame_skip: int, size: int):
    import pybullet as pb
    from intentloop.envs import scene as S
    from intentloop.envs.sim import bullet_sim as B

    client, body = sim.client, sim.robot
    forces, gains = [B.GANTRY_FORCE] * 3 + [B.FINGER_FORCE] * 2, [B.GANTRY_GAIN] * 3 + [B.FINGER_GAIN] * 2
    view = client.computeViewMatrix(S.CAMERA_POS.tolist(), S.CAMERA_TARGET.tolist(), [0.0, 0.0, 1.0])
    proj = client.computeProjectionMatrixFOV(S.CAMERA_FOVY, 1.0, B.CAMERA_NEAR, B.CAMERA_FAR)

    def step(ctrl):
        client.setJointMotorControlArray(
            body, B.JOINTS, pb.POSITION_CONTROL, targetPositions=[*ctrl, ctrl[3]], forces=forces, positionGains=gains
        )
        for _ in range(frame_skip):
            client.stepSimulation()

    def render():
        flags = pb.ER_NO_SEGMENTATION_MASK
        return client.getCameraImage(size, size, view, proj, renderer=pb.ER_TINY_RENDERER, shadow=0, flags=flags)[2]

    return step, render


def stepper(env, actions):
    """A no-argument call that steps ``env`` with the next of ``actions``."""
    it = iter(actions)
    return lambda: env.step(next(it))


def timed(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def bench_backend(backend: str, rounds: int, steps: int, renders: int, size: int) -> dict:
    env = gym.make(
        "intentloop/Tabletop-v0",
        backend=backend,
        image=False,
        image_size=size,
        render_size=size,
        render_mode="rgb_array",
        steps_per_intent=10**9,
    )
    env.reset(seed=0)
    world = env.unwrapped.world
    raw_step, raw_render = (raw_mujoco if backend == "mujoco" else raw_pybullet)(world.sim, world.frame_skip, size)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps, 4)).astype(np.float32)
    ctrl = np.array([0.0, 0.0, 0.15, 0.02])
    times = {"env_step": [], "raw_step": [], "env_render": [], "raw_render": []}
    for _ in range(rounds):
        env.reset(seed=0)
        times["env_step"].append(timed(stepper(env, actions), steps))
        env.reset(seed=0)
        times["raw_step"].append(timed(lambda: raw_step(ctrl), steps))
        times["env_render"].append(timed(env.render, renders))
        times["raw_render"].append(timed(raw_render, renders))
    env.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "backend": backend,
        "frame_skip": world.frame_skip,
        "env_step_per_s": 1 / med["env_step"],
        "raw_step_per_s": 1 / med["raw_step"],
        "step_ratio": med["raw_step"] / med["env_step"],
        "render_size": size,
        "env_render_fps": 1 / med["env_render"],
        "raw_render_fps": 1 / med["raw_render"],
        "render_ratio": med["raw_render"] / med["env_render"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=["mujoco", "pybullet"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--renders", type=int, default=100)
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    for backend in args.backends:
        result = bench_backend(backend, args.rounds, args.steps, args.renders, args.size)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()

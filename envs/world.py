"""The tabletop world shared by every env: a simulator, the action mapping and the observation arrays.

Action (4,) in [-1, 1]: EE displacement (dx, dy, dz) as a fraction of ``max_delta`` meters, relative to
the current EE position, and the gripper command (-1 open ... +1 closed).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from intentloop.envs import scene as S
from intentloop.envs.scene import Layout
from intentloop.envs.sim.base import make_sim


def image_shape(image_size) -> tuple[int, int]:
    """``96`` or ``(height, width)`` -> (height, width); raises a clear error for anything else."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and 16 <= s <= 640 for s in size):
        raise ValueError(f"image_size must be an int or (height, width) between 16 and 640 pixels, got {image_size!r}")
    return size


class TabletopWorld:
    def __init__(self, backend: str = "mujoco", frame_skip: int = 25, max_delta: float = 0.03):
        if frame_skip < 1:
            raise ValueError(f"frame_skip must be >= 1, got {frame_skip}")
        if not 0.0 < max_delta <= 0.1:
            raise ValueError(f"max_delta (the hand's step at action 1.0) must be in (0, 0.1] m, got {max_delta}")
        self.sim = make_sim(backend)
        self.backend, self.frame_skip, self.max_delta = backend, frame_skip, max_delta
        self.zones = np.zeros((len(S.ZONES), 2), np.float32)
        self.ctrl = np.zeros(4)

    @property
    def dt(self) -> float:
        return self.sim.timestep * self.frame_skip

    def reset(self, layout: Layout, settle_steps: int = 2, ee_pos=None, finger_q: float = S.FINGER_OPEN) -> None:
        """Place the scene; the robot starts at ``ee_pos`` (default: home, behind the blocks)."""
        ee = S.EE_HOME if ee_pos is None else np.asarray(ee_pos, np.float64)
        self.zones = layout.zones.astype(np.float32)
        self.ctrl = np.array([*ee, finger_q])
        self.sim.reset(layout, ee, finger_q)
        self.sim.step(self.ctrl, settle_steps * self.frame_skip)

    def apply(self, action: np.ndarray) -> None:
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        ee = self.sim.proprio()[:3]
        self.ctrl[:3] = np.clip(ee + a[:3] * self.max_delta, S.EE_LOW, S.EE_HIGH)
        self.ctrl[3] = S.FINGER_OPEN * (1.0 - a[3]) / 2.0
        self.sim.step(self.ctrl, self.frame_skip)

    def grasp(self, block: str, lift: float = 0.1, steps: int = 8) -> None:
        """Set-up for skills that start with a block in hand: close the gripper on it and lift it. The hand
        first rises to ``lift`` where it is: from a low (random) start, going straight over could sweep the block
        (or another) away before the fingers reach it."""
        pos, ee = self.sim.blocks()[S.BLOCKS.index(block), :3], self.sim.proprio()[:3]
        if ee[2] < lift:
            self.ctrl = np.array([ee[0], ee[1], lift, S.FINGER_OPEN])
            self.sim.step(self.ctrl, steps * self.frame_skip)
        for z, q in ((pos[2] + 0.04, S.FINGER_OPEN), (pos[2], S.FINGER_OPEN), (pos[2], S.FINGER_CLOSED)):
            self.ctrl = np.array([pos[0], pos[1], z, q])
            self.sim.step(self.ctrl, steps * self.frame_skip)
        self.ctrl[2] = lift
        self.sim.step(self.ctrl, steps * self.frame_skip)

    def state_obs(self) -> dict[str, np.ndarray]:
        return {"proprio": self.sim.proprio(), "blocks": self.sim.blocks(), "zones": self.zones.copy()}

    @staticmethod
    def state_spaces() -> dict[str, spaces.Box]:
        return {  # meters, unit quaternions, m/s and rad/s
            "proprio": spaces.Box(-10.0, 10.0, (7,), np.float32),
            "blocks": spaces.Box(-100.0, 100.0, (len(S.BLOCKS), 13), np.float32),
            "zones": spaces.Box(-1.0, 1.0, (len(S.ZONES), 2), np.float32),
        }


class WorldEnv(gym.Env):
    """What every tabletop env shares: the world, its backend, ``rgb_array`` rendering and closing."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def _make_world(self, backend: str, frame_skip: int, max_delta: float, render_mode, render_size) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"unknown render_mode {render_mode!r}; only 'rgb_array' is supported")
        self.render_mode, self.render_hw = render_mode, image_shape(render_size)
        self.world = TabletopWorld(backend, frame_skip, max_delta)

    @property
    def backend(self) -> str:
        return self.world.backend

    def render(self):
        if self.render_mode == "rgb_array":
            return self.world.sim.render(self.render_hw[1], self.render_hw[0])
        return None

    def close(self):
        self.world.sim.close()


def random_start(rng: np.random.Generator, layout: Layout) -> tuple[np.ndarray, float]:
    """An EE position and finger opening like those a previous intent leaves behind: anywhere over the
    workspace, low or high, fingers open or closed, but never inside a block."""
    for _ in range(100):
        xy = rng.uniform(S.WORKSPACE_LOW - 0.03, S.WORKSPACE_HIGH + 0.03)
        z = rng.uniform(S.EE_LOW[2] + 0.004, S.EE_HOME[2])
        clear = np.min(np.linalg.norm(layout.blocks[:, :2] - xy, axis=1)) > 0.075
        if z > 0.075 or clear:  # fingertips above the blocks' tops, or beside every block
            return np.array([*xy, z]), float(rng.choice([S.FINGER_OPEN, S.FINGER_CLOSED]))
    return S.EE_HOME.copy(), S.FINGER_OPEN

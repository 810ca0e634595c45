"""The one small interface every physics backend implements.

Tasks, intents, predicates and rewards never talk to a simulator directly: they read the arrays this
interface returns, so they are written once for MuJoCo and PyBullet alike.

Control is a target for the robot's position servos: ``ctrl = [x, y, z, finger_q]``, the EE point in
world coordinates and the opening of each finger (see `intentloop.envs.scene`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from intentloop.envs.scene import Layout


class Sim(ABC):
    """One independent world (its own model, data and renderer); several may live in one process."""

    timestep: float  # seconds per physics step

    @abstractmethod
    def reset(self, layout: Layout, ee_pos: np.ndarray, finger_q: float) -> None:
        """Put blocks and zones where ``layout`` says, the robot at ``ee_pos``, everything at rest."""

    @abstractmethod
    def step(self, ctrl: np.ndarray, n: int) -> None:
        """Hold servo targets ``ctrl`` (4,) for ``n`` physics steps."""

    @abstractmethod
    def proprio(self) -> np.ndarray:
        """(7,) float32: EE position (3), EE velocity (3), finger opening q (1)."""

    @abstractmethod
    def blocks(self) -> np.ndarray:
        """(n_blocks, 13) float32: position (3), quaternion wxyz (4), linear (3), angular (3) velocity."""

    @abstractmethod
    def render(self, width: int, height: int) -> np.ndarray:
        """(height, width, 3) uint8 RGB from the front camera."""

    @abstractmethod
    def move_block(self, index: int, pos: np.ndarray) -> None:
        """Teleport block ``index`` to ``pos`` (3,), at rest, keeping its orientation (a scene perturbation)."""

    @abstractmethod
    def get_state(self) -> np.ndarray:
        """Everything needed to continue the simulation exactly, as a flat array."""

    @abstractmethod
    def set_state(self, state: np.ndarray) -> None: ...

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Free native resources."""


BACKENDS = ("mujoco", "pybullet")


def make_sim(backend: str) -> Sim:
    """Build a world on the named backend; an unknown name is one clear error."""
    if backend == "mujoco":
        from intentloop.envs.sim.mujoco_sim import MujocoSim

        return MujocoSim()
    if backend == "pybullet":
        from intentloop.envs.sim.bullet_sim import BulletSim

        return BulletSim()
    raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")


def look_at(pos: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera x (right) and y (up) axes for a camera at ``pos`` looking at ``target``."""
    forward = (target - pos) / np.linalg.norm(target - pos)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    return right, np.cross(right, forward)

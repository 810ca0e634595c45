"""The tabletop scene, backend-independent: names, sizes, colors, the workspace, the layout sampler.

Both simulators build their world from these constants, so the same seed gives the same layout on MuJoCo
and PyBullet. All lengths are in meters; the table top is the plane z = 0.

The robot is a Cartesian (gantry) manipulator: three prismatic joints move the end-effector (EE) point,
the center between the two fingers of a parallel gripper; the fingers close along y.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCKS: tuple[str, ...] = ("red_block", "green_block", "yellow_block", "purple_block")
ZONES: tuple[str, ...] = ("blue_zone", "orange_zone", "cyan_zone")
COLORS: dict[str, tuple[float, float, float]] = {
    "red_block": (0.85, 0.15, 0.15),
    "green_block": (0.15, 0.7, 0.2),
    "yellow_block": (0.95, 0.85, 0.1),
    "purple_block": (0.55, 0.2, 0.75),
    "blue_zone": (0.15, 0.3, 0.95),
    "orange_zone": (1.0, 0.55, 0.1),
    "cyan_zone": (0.1, 0.85, 0.85),
}
TABLE_RGB = (0.45, 0.42, 0.4)

BLOCK_HALF = 0.02  # half edge of a cube block
BLOCK_MASS = 0.05  # [kg]
ZONE_HALF = 0.05  # half edge of a square target zone
FRICTION = 1.0  # sliding friction of blocks and fingers

# Workspace of block and zone centers, and the box the EE target is clipped to.
WORKSPACE_LOW = np.array([-0.22, -0.15])
WORKSPACE_HIGH = np.array([0.22, 0.15])
EE_LOW = np.array([-0.3, -0.25, 0.022])
EE_HIGH = np.array([0.3, 0.25, 0.3])
EE_HOME = np.array([0.0, 0.2, 0.2])  # behind the blocks, out of the camera's way

# Gripper: each finger is a box; `finger_q` is the distance of a finger's inner face from the EE plane.
FINGER_HALF = (0.012, 0.008, 0.03)  # half extents x, y, z
FINGER_Z_OFFSET = 0.012  # finger center above the EE point; the tips are 1.8 cm below it
FINGER_OPEN = 0.04  # finger_q when open: an 8 cm gap
FINGER_CLOSED = 0.0
PALM_HALF = (0.02, 0.06, 0.008)
PALM_Z_OFFSET = FINGER_Z_OFFSET + FINGER_HALF[2] + PALM_HALF[2]

# Camera: in front of the table, looking at its center.
CAMERA_POS = np.array([0.0, -0.4, 0.62])
CAMERA_TARGET = np.array([0.0, 0.02, 0.0])
CAMERA_FOVY = 45.0  # degrees

# Sampling margins.
MIN_BLOCK_GAP = 0.1  # center-to-center; leaves room for an open finger between blocks
MIN_ZONE_GAP = 0.13
ZONE_CLEARANCE = ZONE_HALF + BLOCK_HALF + 0.02  # blocks start outside the zones


@dataclass(frozen=True)
class Layout:
    """Where things start: block centers (x, y, yaw), zone centers (x, y) and, for arranged scenes, the
    height of each block's center (None: every block on the table)."""

    blocks: np.ndarray  # (n_blocks, 3): x, y, yaw
    zones: np.ndarray  # (n_zones, 2): x, y
    heights: np.ndarray | None = None  # (n_blocks,) center heights; BLOCK_HALF on the table, 3 BLOCK_HALF stacked

    def block_z(self) -> np.ndarray:
        """(n_blocks,) center heights."""
        return np.full(len(self.blocks), BLOCK_HALF) if self.heights is None else np.asarray(self.heights, float)

    def block_xy(self, name: str) -> np.ndarray:
        return self.blocks[BLOCKS.index(name), :2]

    def zone_xy(self, name: str) -> np.ndarray:
        return self.zones[ZONES.index(name)]


def sample_layout(rng: np.random.Generator, max_tries: int = 1000) -> Layout:
    """Zones first, then blocks outside every zone and apart from each other (rejection sampling)."""
    zones: list[np.ndarray] = []
    for _ in range(max_tries):
        xy = rng.uniform(WORKSPACE_LOW + ZONE_HALF, WORKSPACE_HIGH - ZONE_HALF)
        if all(np.linalg.norm(xy - z) >= MIN_ZONE_GAP for z in zones):
            zones.append(xy)
            if len(zones) == len(ZONES):
                break
    blocks: list[np.ndarray] = []
    for _ in range(max_tries):
        xy = rng.uniform(WORKSPACE_LOW + 0.01, WORKSPACE_HIGH - 0.01)
        if all(np.max(np.abs(xy - z)) >= ZONE_CLEARANCE for z in zones) and all(
            np.linalg.norm(xy - b[:2]) >= MIN_BLOCK_GAP for b in blocks
        ):
            blocks.append(np.array([xy[0], xy[1], rng.uniform(-0.25, 0.25)]))
            if len(blocks) == len(BLOCKS):
                break
    if len(zones) < len(ZONES) or len(blocks) < len(BLOCKS):
        return sample_layout(rng, max_tries)  # a crowded draw; rare, and still deterministic in rng
    return Layout(blocks=np.array(blocks), zones=np.array(zones))

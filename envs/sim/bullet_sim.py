"""PyBullet backend: the tabletop world built from `intentloop.envs.scene` with ``createMultiBody``.

Each instance owns a DIRECT-mode `BulletClient`, so several worlds live in one process. The gantry is one
multibody on a fixed base with five prismatic joints (x, y, z, left finger, right finger) held by position
motors: the x, y, z joint values are the EE point, a finger's value is the distance of its inner face from
the EE plane. Rendering uses the CPU ``ER_TINY_RENDERER`` without shadows.

Bullet carries contact points and their impulses from one step to the next (warm starting), and they cannot
be read or written through its API. So the state is an array of joint, block and zone values, and
`set_state` (which `reset` uses) rebuilds the world before loading it: the next steps depend on that array
alone. `get_state` loads what it returns the same way, so the simulation goes on from exactly that state,
however often it is restored.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

import numpy as np
import pybullet as pb
from intentloop.envs import scene as S
from intentloop.envs.scene import Layout
from intentloop.envs.sim.base import Sim
from pybullet_utils.bullet_client import BulletClient

TIMESTEP = 0.002
SOLVER_ITERATIONS = 5
# A position motor drives its joint towards the velocity gain * error / dt, with at most `force` newtons;
# unlike a MuJoCo servo it needs no gravity compensation to hold its target.
GANTRY_GAIN, GANTRY_FORCE = 0.05, 60.0
FINGER_GAIN, FINGER_FORCE = 0.05, 10.0
GEAR_FORCE = 100.0  # couples the fingers (see _build)
# Bullet's Coulomb friction is exact: a block yawed by t between parallel fingers only turns square to them
# when tan(45 deg - t) > mu, never at mu = 1, whereas MuJoCo's soft contacts let it creep square up to about
# 25 deg. Fingers with mu = 0.3 (Bullet multiplies the two bodies' coefficients) turn blocks up to 28 deg
# square and still hold a block against 12 times its weight.
FINGER_FRICTION = 0.3
SPINNING_FRICTION, ROLLING_FRICTION = 0.001, 0.0001
CARRIAGE_MASS, HAND_MASS, FINGER_MASS = 0.3, 0.3, 0.02
ROBOT_RGBA, MAST_RGBA = (0.25, 0.25, 0.28, 1.0), (0.55, 0.55, 0.58, 1.0)
MAST_RADIUS, MAST_TOP = 0.012, 0.8  # a visual-only column from the palm up to MAST_TOP above the EE
# Joint limits, as in MuJoCo; the EE targets are clipped to [EE_LOW, EE_HIGH] before they get here.
JOINT_RANGES = [
    (S.EE_LOW[0], S.EE_HIGH[0]),
    (S.EE_LOW[1], S.EE_HIGH[1]),
    (0.0, S.EE_HIGH[2] + 0.05),
    (S.FINGER_CLOSED, S.FINGER_OPEN + 0.005),
    (S.FINGER_CLOSED, S.FINGER_OPEN + 0.005),
]
TABLE_HALF = (0.6, 0.6, 0.01)  # visual only: the table's collision shape is the plane z = 0
ZONE_THICKNESS = 0.001
CAMERA_NEAR, CAMERA_FAR = 0.01, 5.0

X, Y, Z, LEFT, RIGHT = JOINTS = [0, 1, 2, 3, 4]  # robot joint = link indices
N_BLOCKS, N_ZONES, N_JOINTS = len(S.BLOCKS), len(S.ZONES), len(JOINTS)
# State: joint positions, velocities and motor targets; per block position, quaternion xyzw, linear and
# angular velocity (world frame); zone centers.
_SPLITS = np.cumsum([N_JOINTS, N_JOINTS, N_JOINTS, N_BLOCKS * 13])


@contextlib.contextmanager
def _quiet_stdout():
    """Silence what native code writes to file descriptor 1."""
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        ctypes.CDLL(None).fflush(None)  # what the C library buffered goes to /dev/null too
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _rgba(rgb) -> list[float]:
    return [*rgb, 1.0]


class BulletSim(Sim):
    timestep = TIMESTEP

    def __init__(self):
        with _quiet_stdout():  # the C library prints "argv[0]=" on every connect
            self.client = BulletClient(connection_mode=pb.DIRECT)
        c = self.client  # bound once: BulletClient looks every other attribute up again on each call
        self._step, self._joint_states = c.stepSimulation, c.getJointStates
        self._pose, self._velocity = c.getBasePositionAndOrientation, c.getBaseVelocity
        self._matrix = c.getMatrixFromQuaternion
        self._cameras: dict[tuple[int, int], tuple] = {}
        self._targets = [0.0] * N_JOINTS
        self._zones = np.zeros((N_ZONES, 2))
        self._build()

    def _build(self) -> None:
        """A new world, without any contact history; the bodies are put in place by `set_state`."""
        c = self.client
        c.resetSimulation()
        c.setGravity(0.0, 0.0, -9.81)
        c.setPhysicsEngineParameter(
            fixedTimeStep=TIMESTEP, numSolverIterations=SOLVER_ITERATIONS, deterministicOverlappingPairs=1
        )
        table_visual = c.createVisualShape(
            pb.GEOM_BOX,
            halfExtents=TABLE_HALF,
            rgbaColor=_rgba(S.TABLE_RGB),
            visualFramePosition=[0, 0, -TABLE_HALF[2]],
        )
        self.table = c.createMultiBody(0.0, c.createCollisionShape(pb.GEOM_PLANE), table_visual)
        zone_half = [S.ZONE_HALF, S.ZONE_HALF, ZONE_THICKNESS / 2]
        self.zone_ids = [
            c.createMultiBody(
                0.0, -1, c.createVisualShape(pb.GEOM_BOX, halfExtents=zone_half, rgbaColor=_rgba(S.COLORS[z]))
            )
            for z in S.ZONES
        ]
        half = [S.BLOCK_HALF] * 3
        cube = c.createCollisionShape(pb.GEOM_BOX, halfExtents=half)
        self.block_ids = [
            c.createMultiBody(
                S.BLOCK_MASS,
                cube,
                c.createVisualShape(pb.GEOM_BOX, halfExtents=half, rgbaColor=_rgba(S.COLORS[b])),
                useMaximalCoordinates=True,
            )
            for b in S.BLOCKS
        ]
        self.robot = self._build_robot()
        # The fingers move as a pair (q_left = q_right): with both motors pushing a block at their force limit,
        # nothing else would keep the pair and the block from sliding along y relative to the hand.
        gear = c.createConstraint(self.robot, LEFT, self.robot, RIGHT, pb.JOINT_GEAR, [0, 1, 0], [0, 0, 0], [0, 0, 0])
        c.changeConstraint(gear, gearRatio=-1, maxForce=GEAR_FORCE, erp=0.2)
        c.changeDynamics(self.robot, -1, activationState=pb.ACTIVATION_STATE_DISABLE_SLEEPING)
        for joint, (low, high) in zip(JOINTS, JOINT_RANGES, strict=True):
            c.changeDynamics(self.robot, joint, jointLowerLimit=low, jointUpperLimit=high)
        for body in self.block_ids:  # blocks at rest sleep (are not simulated) until something touches them
            c.changeDynamics(body, -1, activationState=pb.ACTIVATION_STATE_ENABLE_SLEEPING)
        for body, link, mu in [
            (self.table, -1, S.FRICTION),
            *((b, -1, S.FRICTION) for b in self.block_ids),
            (self.robot, Z, S.FRICTION),
            (self.robot, LEFT, FINGER_FRICTION),
            (self.robot, RIGHT, FINGER_FRICTION),
        ]:
            c.changeDynamics(
                body,
                link,
                lateralFriction=mu,
                spinningFriction=SPINNING_FRICTION,
                rollingFriction=ROLLING_FRICTION,
                frictionAnchor=True,
            )

    def _build_robot(self) -> int:
        c, fh, ph = self.client, S.FINGER_HALF, S.PALM_HALF
        palm_pos, mast_length = [0, 0, S.PALM_Z_OFFSET], MAST_TOP - S.PALM_Z_OFFSET
        hand_visual = c.createVisualShapeArray(
            shapeTypes=[pb.GEOM_BOX, pb.GEOM_CYLINDER],
            halfExtents=[ph, [0, 0, 0]],
            radii=[0, MAST_RADIUS],
            lengths=[0, mast_length],
            rgbaColors=[ROBOT_RGBA, MAST_RGBA],
            visualFramePositions=[palm_pos, [0, 0, S.PALM_Z_OFFSET + mast_length / 2]],
        )
        collisions, visuals = (
            [-1, -1, c.createCollisionShape(pb.GEOM_BOX, halfExtents=ph, collisionFramePosition=palm_pos)],
            [-1, -1, hand_visual],
        )
        for sign in (1, -1):  # left, right: the finger box lies outside its inner face
            offset = [0, sign * fh[1], S.FINGER_Z_OFFSET]
            collisions.append(c.createCollisionShape(pb.GEOM_BOX, halfExtents=fh, collisionFramePosition=offset))
            visuals.append(
                c.createVisualShape(pb.GEOM_BOX, halfExtents=fh, visualFramePosition=offset, rgbaColor=ROBOT_RGBA)
            )
        return c.createMultiBody(  # links chained base -> x -> y -> z (the hand) -> both fingers
            baseMass=0.0,
            linkMasses=[CARRIAGE_MASS, CARRIAGE_MASS, HAND_MASS, FINGER_MASS, FINGER_MASS],
            linkCollisionShapeIndices=collisions,
            linkVisualShapeIndices=visuals,
            linkPositions=[[0, 0, 0]] * N_JOINTS,
            linkOrientations=[[0, 0, 0, 1]] * N_JOINTS,
            linkInertialFramePositions=[[0, 0, 0]] * N_JOINTS,
            linkInertialFrameOrientations=[[0, 0, 0, 1]] * N_JOINTS,
            linkParentIndices=[0, X + 1, Y + 1, Z + 1, Z + 1],
            linkJointTypes=[pb.JOINT_PRISMATIC] * N_JOINTS,
            linkJointAxis=[[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0], [0, -1, 0]],
        )

    def reset(self, layout: Layout, ee_pos: np.ndarray, finger_q: float) -> None:
        q = [*ee_pos, finger_q, finger_q]
        blocks = np.zeros((N_BLOCKS, 13))
        blocks[:, :2], blocks[:, 2] = layout.blocks[:, :2], layout.block_z()
        blocks[:, 5], blocks[:, 6] = np.sin(layout.blocks[:, 2] / 2), np.cos(layout.blocks[:, 2] / 2)
        self.set_state(np.concatenate([q, np.zeros(N_JOINTS), q, blocks.ravel(), np.ravel(layout.zones)]))

    def move_block(self, index: int, pos: np.ndarray) -> None:
        body = self.block_ids[index]
        _, orientation = self.client.getBasePositionAndOrientation(body)
        self.client.resetBasePositionAndOrientation(body, list(map(float, pos)), orientation)
        self.client.resetBaseVelocity(body, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])

    def step(self, ctrl: np.ndarray, n: int) -> None:
        x, y, z, q = np.asarray(ctrl, np.float64).tolist()
        if [x, y, z, q, q] != self._targets:
            self._drive([x, y, z, q, q])
        for _ in range(n):
            self._step()

    def _drive(self, targets: list[float]) -> None:
        self._targets = targets
        self.client.setJointMotorControlArray(
            self.robot,
            JOINTS,
            pb.POSITION_CONTROL,
            targetPositions=targets,
            forces=[GANTRY_FORCE] * 3 + [FINGER_FORCE] * 2,
            positionGains=[GANTRY_GAIN] * 3 + [FINGER_GAIN] * 2,
        )

    def proprio(self) -> np.ndarray:
        (x, vx, *_), (y, vy, *_), (z, vz, *_), (ql, *_), (qr, *_) = self._joint_states(self.robot, JOINTS)
        return np.array([x, y, z, vx, vy, vz, 0.5 * (ql + qr)], np.float32)

    def _block_rows(self) -> np.ndarray:
        """(n_blocks, 13) float64: position, quaternion xyzw, linear and angular velocity in the world frame."""
        rows = []
        for body in self.block_ids:
            (pos, orn), (lin, ang) = self._pose(body), self._velocity(body)
            rows.append((*pos, *orn, *lin, *ang))
        return np.array(rows)

    def blocks(self) -> np.ndarray:
        rows = self._block_rows()
        out = np.empty((N_BLOCKS, 13), np.float32)
        out[:, :3], out[:, 3], out[:, 4:7], out[:, 7:10] = rows[:, :3], rows[:, 6], rows[:, 3:6], rows[:, 7:10]
        # Angular velocity in the block's own frame, as MuJoCo's free joint reports it.
        rotations = np.reshape([self._matrix(orn) for orn in rows[:, 3:7].tolist()], (N_BLOCKS, 3, 3))
        out[:, 10:] = np.einsum("nji,nj->ni", rotations, rows[:, 10:])
        return out

    def render(self, width: int, height: int) -> np.ndarray:
        camera = self._cameras.get((width, height))
        if camera is None:
            c = self.client
            camera = self._cameras[(width, height)] = (
                c.computeViewMatrix(S.CAMERA_POS.tolist(), S.CAMERA_TARGET.tolist(), [0.0, 0.0, 1.0]),
                c.computeProjectionMatrixFOV(S.CAMERA_FOVY, width / height, CAMERA_NEAR, CAMERA_FAR),
            )
        _, _, rgba, _, _ = self.client.getCameraImage(
            width, height, *camera, shadow=0, renderer=pb.ER_TINY_RENDERER, flags=pb.ER_NO_SEGMENTATION_MASK
        )
        return np.asarray(rgba, np.uint8).reshape(height, width, 4)[:, :, :3].copy()

    def get_state(self) -> np.ndarray:
        joints = self._joint_states(self.robot, JOINTS)
        state = np.concatenate(
            [
                [j[0] for j in joints],
                [j[1] for j in joints],
                self._targets,
                self._block_rows().ravel(),
                self._zones.ravel(),
            ]
        )
        self.set_state(state)  # go on from exactly this state, as a restored copy will (see the module docstring)
        return state

    def set_state(self, state: np.ndarray) -> None:
        q, qd, targets, blocks, zones = np.split(np.asarray(state, np.float64), _SPLITS)
        self._build()
        c = self.client
        for joint in JOINTS:
            c.resetJointState(self.robot, joint, q[joint], qd[joint])
        for body, row in zip(self.block_ids, blocks.reshape(N_BLOCKS, 13), strict=True):
            c.resetBasePositionAndOrientation(body, row[:3], row[3:7])
            c.resetBaseVelocity(body, row[7:10], row[10:])
        self._zones = zones.reshape(N_ZONES, 2)
        for body, (x, y) in zip(self.zone_ids, self._zones, strict=True):
            c.resetBasePositionAndOrientation(body, [x, y, ZONE_THICKNESS / 2], [0.0, 0.0, 0.0, 1.0])
        self._drive(targets.tolist())

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client = None

"""MuJoCo backend: the tabletop world built from `intentloop.envs.scene` as MJCF.

Rendering is headless on a CPU with ``MUJOCO_GL=egl`` (set here if unset); shadows, reflections and
multisampling are off, which makes llvmpipe rendering about 40x faster. EGL does not survive ``fork``: a
process forked from one that has rendered hangs in its first render, so that render raises instead (start such
processes with ``spawn``, e.g. ``gym.make_vec(..., vectorization_mode="async", vector_kwargs={"context": "spawn"})``).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from intentloop.envs import scene as S  # noqa: E402
from intentloop.envs.scene import Layout  # noqa: E402
from intentloop.envs.sim.base import Sim, look_at  # noqa: E402

_RENDERED_IN: int | None = None  # the pid of the process that made an EGL context, if any
TIMESTEP = 0.002
GANTRY_KP, FINGER_KP = 2000.0, 300.0
_ROBOT_JOINTS = ("x", "y", "z", "finger_left", "finger_right")


def _v(a) -> str:
    return " ".join(f"{float(x):.6g}" for x in a)


def scene_xml() -> str:
    """The MJCF of the tabletop world; every size and color comes from `intentloop.envs.scene`."""
    right, up = look_at(S.CAMERA_POS, S.CAMERA_TARGET)
    fh, ph = S.FINGER_HALF, S.PALM_HALF
    zones = "\n".join(
        f'<body name="{z}" mocap="true"><geom type="box" size="{S.ZONE_HALF} {S.ZONE_HALF} 0.0005" '
        f'pos="0 0 0.0005" rgba="{_v(S.COLORS[z])} 1" contype="0" conaffinity="0"/></body>'
        for z in S.ZONES
    )
    blocks = "\n".join(
        f'<body name="{b}" pos="0 0 {S.BLOCK_HALF}"><freejoint name="{b}"/><geom name="{b}" type="box" '
        f'size="{S.BLOCK_HALF} {S.BLOCK_HALF} {S.BLOCK_HALF}" mass="{S.BLOCK_MASS}" rgba="{_v(S.COLORS[b])} 1"/></body>'
        for b in S.BLOCKS
    )
    fingers = "\n".join(
        f'<body name="finger_{side}"><joint name="finger_{side}" type="slide" axis="0 {sign} 0" range="0 0.045" '
        f'damping="2"/><geom name="finger_{side}" type="box" size="{_v(fh)}" '
        f'pos="0 {sign * fh[1]} {S.FINGER_Z_OFFSET}" mass="0.02" rgba="0.25 0.25 0.28 1"/></body>'
        for side, sign in (("left", 1), ("right", -1))
    )
    inertial = '<inertial pos="0 0 0" mass="0.3" diaginertia="0.001 0.001 0.001"/>'
    return f"""
<mujoco model="intentloop_tabletop">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{TIMESTEP}" cone="elliptic" impratio="10" integrator="implicitfast"/>
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <global offwidth="640" offheight="640"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
  </visual>
  <default><geom friction="{S.FRICTION} 0.005 0.0001" condim="4"/></default>
  <worldbody>
    <geom name="table" type="plane" size="0.6 0.6 0.01" rgba="{_v(S.TABLE_RGB)} 1"/>
    <camera name="front" pos="{_v(S.CAMERA_POS)}" xyaxes="{_v(right)} {_v(up)}" fovy="{S.CAMERA_FOVY}"/>
    {zones}
    {blocks}
    <body name="carriage_x" gravcomp="1">
      <joint name="x" type="slide" axis="1 0 0" range="{S.EE_LOW[0]} {S.EE_HIGH[0]}"/>{inertial}
      <body name="carriage_y" gravcomp="1">
        <joint name="y" type="slide" axis="0 1 0" range="{S.EE_LOW[1]} {S.EE_HIGH[1]}"/>{inertial}
        <body name="hand" gravcomp="1">
          <joint name="z" type="slide" axis="0 0 1" range="0 {S.EE_HIGH[2] + 0.05}"/>
          <site name="ee" size="0.004" rgba="1 1 1 0"/>
          <geom name="palm" type="box" size="{_v(ph)}" pos="0 0 {S.PALM_Z_OFFSET}" mass="0.3" rgba="0.3 0.3 0.33 1"/>
          <geom name="mast" type="cylinder" fromto="0 0 {S.PALM_Z_OFFSET} 0 0 0.8" size="0.012" contype="0"
                conaffinity="0" mass="0.01" rgba="0.55 0.55 0.58 1"/>
          {fingers}
        </body>
      </body>
    </body>
  </worldbody>
  <contact><exclude body1="hand" body2="finger_left"/><exclude body1="hand" body2="finger_right"/></contact>
  <actuator>
    <position name="x" joint="x" kp="{GANTRY_KP}" dampratio="1" forcerange="-60 60"/>
    <position name="y" joint="y" kp="{GANTRY_KP}" dampratio="1" forcerange="-60 60"/>
    <position name="z" joint="z" kp="{GANTRY_KP}" dampratio="1" forcerange="-60 60"/>
    <position name="finger_left" joint="finger_left" kp="{FINGER_KP}" dampratio="1" forcerange="-10 10"/>
    <position name="finger_right" joint="finger_right" kp="{FINGER_KP}" dampratio="1" forcerange="-10 10"/>
  </actuator>
</mujoco>"""


class MujocoSim(Sim):
    timestep = TIMESTEP

    def __init__(self):
        self.model = mujoco.MjModel.from_xml_string(scene_xml())
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._robot_qpos = np.array([m.jnt_qposadr[m.joint(j).id] for j in _ROBOT_JOINTS])
        self._robot_qvel = np.array([m.jnt_dofadr[m.joint(j).id] for j in _ROBOT_JOINTS])
        self._block_qpos = np.array([m.jnt_qposadr[m.joint(b).id] for b in S.BLOCKS])
        self._block_qvel = np.array([m.jnt_dofadr[m.joint(b).id] for b in S.BLOCKS])
        self._zone_mocap = np.array([m.body_mocapid[m.body(z).id] for z in S.ZONES])
        self._camera = m.camera("front").id
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._state_spec = mujoco.mjtState.mjSTATE_INTEGRATION
        self._blocks_out = np.zeros((len(S.BLOCKS), 13), np.float32)

    def reset(self, layout: Layout, ee_pos: np.ndarray, finger_q: float) -> None:
        mujoco.mj_resetData(self.model, self.data)
        d = self.data
        for i, ((x, y, yaw), z) in enumerate(zip(layout.blocks, layout.block_z(), strict=True)):
            a = self._block_qpos[i]
            d.qpos[a : a + 7] = (x, y, z, np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        d.mocap_pos[self._zone_mocap, :2] = layout.zones
        d.qpos[self._robot_qpos] = (*ee_pos, finger_q, finger_q)
        d.ctrl[:] = (*ee_pos, finger_q, finger_q)
        mujoco.mj_forward(self.model, d)

    def move_block(self, index: int, pos: np.ndarray) -> None:
        a, v = self._block_qpos[index], self._block_qvel[index]
        self.data.qpos[a : a + 3], self.data.qvel[v : v + 6] = pos, 0.0
        mujoco.mj_forward(self.model, self.data)

    def step(self, ctrl: np.ndarray, n: int) -> None:
        self.data.ctrl[:4] = ctrl
        self.data.ctrl[4] = ctrl[3]
        mujoco.mj_step(self.model, self.data, nstep=n)

    def proprio(self) -> np.ndarray:
        d = self.data
        q, v = d.qpos[self._robot_qpos], d.qvel[self._robot_qvel]
        return np.array([q[0], q[1], q[2], v[0], v[1], v[2], 0.5 * (q[3] + q[4])], np.float32)

    def blocks(self) -> np.ndarray:
        d, out = self.data, self._blocks_out
        for i, (a, v) in enumerate(zip(self._block_qpos, self._block_qvel, strict=True)):
            out[i, :7] = d.qpos[a : a + 7]
            out[i, 7:] = d.qvel[v : v + 6]
        return out.copy()

    def render(self, width: int, height: int) -> np.ndarray:
        renderer = self._renderers.get((width, height))
        if renderer is None:
            _check_not_forked()
            renderer = self._renderers[(width, height)] = mujoco.Renderer(self.model, height, width)
        renderer.update_scene(self.data, self._camera)
        return renderer.render()

    def get_state(self) -> np.ndarray:
        state = np.empty(mujoco.mj_stateSize(self.model, self._state_spec))
        mujoco.mj_getState(self.model, self.data, state, self._state_spec)
        return state

    def set_state(self, state: np.ndarray) -> None:
        mujoco.mj_setState(self.model, self.data, state, self._state_spec)
        mujoco.mj_forward(self.model, self.data)

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()


def _check_not_forked() -> None:
    global _RENDERED_IN
    if os.environ.get("MUJOCO_GL") == "egl" and _RENDERED_IN not in (None, os.getpid()):
        raise RuntimeError(
            "MuJoCo cannot render with EGL in a process forked from one that has rendered (it would hang): start "
            "it with the 'spawn' context, e.g. gym.make_vec(..., vector_kwargs={'context': 'spawn'})"
        )
    _RENDERED_IN = os.getpid()

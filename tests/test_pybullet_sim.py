import warnings

import gymnasium as gym
import intentloop.envs  # noqa: F401  (registers the envs)
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from intentloop.agents import HierarchicalAgent, OraclePlanner
from intentloop.envs import predicates as P
from intentloop.envs.scene import BLOCK_HALF, EE_HOME, FINGER_OPEN, Layout, sample_layout
from intentloop.envs.sim.bullet_sim import BulletSim
from intentloop.policies import ScriptedSkill


@pytest.fixture
def sim(test_seed):
    s = BulletSim()
    s.reset(sample_layout(np.random.default_rng(test_seed)), EE_HOME, FINGER_OPEN)
    yield s
    s.close()


def snapshot(s: BulletSim) -> np.ndarray:
    return np.concatenate([s.proprio(), s.blocks().ravel()])


def run(s: BulletSim, ctrls) -> list[np.ndarray]:
    out = []
    for ctrl in ctrls:
        s.step(ctrl, 25)
        out.append(snapshot(s))
    return out


def test_env_passes_gymnasium_checker():
    env = gym.make("intentloop/Tabletop-v0", backend="pybullet")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)
    assert [str(w.message) for w in caught] == []
    env.close()


def test_same_seed_gives_identical_observations():
    def rollout(env):
        obs, _ = env.reset(seed=11)
        env.action_space.seed(11)
        trace = [obs]
        for _ in range(20):
            trace.append(env.step(env.action_space.sample())[0])
        return [np.concatenate([o["proprio"], o["blocks"].ravel(), o["image"].ravel()]) for o in trace]

    env = gym.make("intentloop/Tabletop-v0", backend="pybullet", image_size=32)
    other = gym.make("intentloop/Tabletop-v0", backend="pybullet", image_size=32)
    first, second, fresh = rollout(env), rollout(env), rollout(other)
    assert all(np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(first, second, fresh, strict=True))
    env.close()
    other.close()


def test_get_state_then_set_state_continues_exactly(sim):
    sim.reset(
        Layout(
            np.array([[0.0, 0.0, 0.2], [0.15, 0.1, 0], [-0.15, 0.1, 0], [-0.15, -0.1, 0]]),
            np.array([[0.15, -0.1], [0.1, 0.1], [-0.1, 0.0]]),
        ),
        np.array([0.0, 0.0, 0.1]),
        FINGER_OPEN,
    )
    for ctrl in ([0, 0, 0.022, FINGER_OPEN], [0, 0, 0.022, 0.0], [0, 0, 0.1, 0.0]):  # grasp and lift the block
        sim.step(np.array(ctrl), 100)
    assert P.held({"proprio": sim.proprio(), "blocks": sim.blocks()}, "red_block")
    ctrls = [np.array([0.03 * i, -0.02 * i, 0.1, 0.0]) for i in range(5)]
    state = sim.get_state()
    first = run(sim, ctrls)
    sim.set_state(state)
    assert all(np.array_equal(a, b) for a, b in zip(first, run(sim, ctrls), strict=True))
    other = BulletSim()  # a state also moves to another world
    other.set_state(state)
    assert all(np.array_equal(a, b) for a, b in zip(first, run(other, ctrls), strict=True))
    other.close()


def test_two_worlds_in_one_process_are_independent(sim, test_seed):
    other = BulletSim()
    other.reset(sample_layout(np.random.default_rng(test_seed)), EE_HOME, FINGER_OPEN)  # the scene of ``sim``
    before = snapshot(other)
    ctrls = [np.array([0.1, -0.1, 0.05, 0.0])] * 8
    moved = run(sim, ctrls)
    assert np.array_equal(snapshot(other), before) and not np.array_equal(moved[-1], before)
    assert all(np.array_equal(a, b) for a, b in zip(moved, run(other, ctrls), strict=True))
    other.close()


def test_blocks_report_unit_wxyz_quaternions(sim, test_seed):
    yaws = np.array([0.2, -0.1, 0.0, 0.25])
    layout = sample_layout(np.random.default_rng(1 + test_seed))
    sim.reset(Layout(np.column_stack([layout.blocks[:, :2], yaws]), layout.zones), EE_HOME, FINGER_OPEN)
    quat = sim.blocks()[:, 3:7]
    assert np.allclose(quat, np.column_stack([np.cos(yaws / 2), 0 * yaws, 0 * yaws, np.sin(yaws / 2)]), atol=1e-6)
    sim.step(np.array([*EE_HOME, FINGER_OPEN]), 50)
    assert np.allclose(np.linalg.norm(sim.blocks()[:, 3:7], axis=1), 1.0, atol=1e-5)
    assert np.allclose(sim.blocks()[:, 2], BLOCK_HALF, atol=1e-3)


def test_robot_holds_its_targets_against_gravity(sim):
    target = np.array([0.1, -0.1, 0.15, 0.03])
    sim.step(target, 500)
    p = sim.proprio()
    assert np.allclose(p[:3], target[:3], atol=5e-4) and abs(p[6] - target[3]) < 5e-4
    assert np.abs(p[3:6]).max() < 1e-3


def test_render_is_an_rgb_image_of_the_scene(sim):
    image = sim.render(64, 48)
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8 and image.std() > 10


def test_scripted_oracle_solves_a_put_task(test_seed):
    env = gym.make("intentloop/Tabletop-v0", backend="pybullet", task="put", image=False)
    result = HierarchicalAgent(OraclePlanner(), ScriptedSkill()).run_episode(env, seed=test_seed)
    assert result.success and result.n_subgoals == 2
    env.close()


def test_close_is_idempotent():
    s = BulletSim()
    client = s.client
    assert client.isConnected()
    s.close()
    assert not client.isConnected(), "close() disconnects the physics server"
    s.close()

import warnings

import gymnasium as gym
import intentloop.envs
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from intentloop.envs import predicates as P
from intentloop.envs.scene import BLOCK_HALF
from intentloop.envs.sim.base import BACKENDS, make_sim
from intentloop.envs.tabletop_env import TabletopEnv
from intentloop.policies import ScriptedSkill

ENV_IDS = ["intentloop/Tabletop-v0"] + [f"intentloop/{name}" for name in intentloop.envs.SKILL_ENVS.values()]
CASES = [(env_id, backend) for env_id in ENV_IDS for backend in BACKENDS]


def rollout(env, seed, steps=20):
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    trace = [obs]
    for _ in range(steps):
        trace.append(env.step(env.action_space.sample())[0])
    return trace


def flat(obs):
    return (
        obs
        if isinstance(obs, np.ndarray)
        else np.concatenate([np.asarray(v, np.float64).ravel() for k, v in sorted(obs.items()) if k != "instruction"])
    )


@pytest.mark.parametrize(("env_id", "backend"), CASES)
def test_env_passes_gymnasium_checker_without_warnings(env_id, backend):
    env = gym.make(env_id, backend=backend)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)
    assert [str(w.message) for w in caught] == []
    env.close()


@pytest.mark.parametrize(("env_id", "backend"), CASES)
def test_same_seed_gives_identical_rollouts(env_id, backend):
    env = gym.make(env_id, backend=backend)
    a, b, c = rollout(env, 7), rollout(env, 7), rollout(env, 8)
    assert all(np.array_equal(flat(x), flat(y)) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(flat(a[0]), flat(c[0]))
    env.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_tabletop_observation_contents(backend, test_seed):
    env = gym.make("intentloop/Tabletop-v0", backend=backend, image_size=64, chain_length=3)
    obs, info = env.reset(seed=1 + test_seed)
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert obs["image"].std() > 10, "the camera sees a scene, not a blank frame"
    assert obs["instruction"] == info["task"].instruction and info["n_subgoals"] == 3
    assert np.allclose(obs["blocks"][:, 2], BLOCK_HALF, atol=2e-3), "blocks start resting on the table"
    assert np.allclose(np.linalg.norm(obs["blocks"][:, 3:7], axis=1), 1.0, atol=1e-4)
    nxt, *_ = env.step(np.zeros(4, np.float32))
    assert not np.shares_memory(nxt["blocks"], obs["blocks"])
    env.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_get_state_then_set_state_replays_exactly(backend, test_seed):
    env = gym.make("intentloop/Tabletop-v0", backend=backend, image=False).unwrapped
    env.reset(seed=3 + test_seed)
    sim, action = env.world.sim, np.array([0.5, -0.3, -0.4, 1.0], np.float32)
    state = sim.get_state()
    first = [env.step(action)[0]["blocks"].copy() for _ in range(3)]
    sim.set_state(state)
    second = [env.step(action)[0]["blocks"].copy() for _ in range(3)]
    assert all(np.array_equal(x, y) for x, y in zip(first, second, strict=True))
    env.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_action_moves_the_end_effector(backend, test_seed):
    env = gym.make("intentloop/Tabletop-v0", backend=backend, image=False)
    obs, _ = env.reset(seed=test_seed)
    for _ in range(5):
        moved, *_ = env.step(np.array([1.0, 0.0, 0.0, -1.0], np.float32))
    dx = moved["proprio"][0] - obs["proprio"][0]
    assert 0.08 < dx < 0.16, f"5 steps of +1 should move ~5 x 3 cm in x, moved {dx:.3f}"
    closed = env.step(np.array([0.0, 0.0, 0.0, 1.0], np.float32))[0]
    assert closed["proprio"][6] < obs["proprio"][6] - 0.02
    env.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_skill_env_reward_is_the_sum_of_logged_terms(backend, test_seed):
    for name in intentloop.envs.SKILL_ENVS.values():
        env = gym.make(f"intentloop/{name}", backend=backend)
        env.reset(seed=test_seed)
        env.action_space.seed(test_seed)
        u = env.unwrapped
        for _ in range(20):
            _, reward, terminated, _, info = env.step(env.action_space.sample())
            assert reward == pytest.approx(sum(v for k, v in info.items() if k.startswith("reward/")))
            state = u.world.state_obs()  # each term is what its name says, from the world's own state
            reach = -np.linalg.norm(state["proprio"][:3] - P.block_pos(state, u.intent.args[0]))
            assert info["reward/reach"] == pytest.approx(u.scales["reach"] * reach)
            assert (
                info["reward/success"] == u.scales["success"] * float(terminated) and terminated == info["is_success"]
            )
        env.close()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(intentloop.envs.SKILL_ENVS.values()))
def test_a_skill_episode_ends_when_the_scripted_skill_succeeds_with_the_success_reward(name, backend, test_seed):
    env = gym.make(f"intentloop/{name}", backend=backend)
    env.reset(seed=test_seed)
    u, skill, steps = env.unwrapped, ScriptedSkill(), []
    skill.reset(u.intent, u.world.state_obs())
    while not (steps and (steps[-1][2] or steps[-1][3])):  # until terminated or truncated
        steps.append(env.step(skill.act(u.world.state_obs())))
    *before, (_, _, terminated, truncated, info) = steps
    assert terminated and not truncated and info["is_success"], f"{u.intent} not achieved in {len(steps)} steps"
    assert info["reward/success"] == u.scales["success"] and not any(s[4]["is_success"] for s in before)
    assert info["reward/goal"] > before[0][4]["reward/goal"]  # the block ended nearer its goal than it started
    env.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_place_env_starts_with_the_block_in_hand(backend, test_seed):
    env = gym.make("intentloop/Place-v0", backend=backend).unwrapped  # even from a random start low beside it
    for seed in range(3 * test_seed, 3 * test_seed + 3):
        env.reset(seed=seed)
        assert P.held(env.world.state_obs(), env.intent.args[0])


def test_sparse_reward_is_zero_until_success(test_seed):
    env = gym.make("intentloop/Pick-v0", reward_type="sparse")
    env.reset(seed=test_seed)
    rewards = [env.step(np.zeros(4, np.float32))[1] for _ in range(5)]
    assert rewards == [0.0] * 5


def test_heldout_skill_env_samples_only_heldout_goals(test_seed):
    env = gym.make("intentloop/Push-v0", split="heldout").unwrapped
    for seed in range(5 * test_seed, 5 * test_seed + 5):
        env.reset(seed=seed)
        assert ("push", *env.intent.args) in env.suite.heldout


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backend": "gazebo"}, "unknown backend 'gazebo'"),
        ({"task": "juggle"}, "unknown task 'juggle'"),
        ({"split": "test"}, "unknown split"),
        ({"image_size": 5}, "image_size must be"),
        ({"render_mode": "human"}, "unknown render_mode"),
        ({"chain_length": 0}, "chain_length must be"),
    ],
)
def test_bad_tabletop_arguments_fail_with_one_sentence(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        TabletopEnv(**kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"skill": "fly"}, "unknown skill 'fly'"),
        ({"skill": "pick", "reward_type": "shaped"}, "unknown reward_type"),
        ({"skill": "pick", "reward_scales": {"speed": 1}}, "unknown reward terms"),
    ],
)
def test_bad_skill_env_arguments(kwargs, match):
    from intentloop.envs.skill_env import SkillEnv

    with pytest.raises(ValueError, match=match):
        SkillEnv(**kwargs)


def test_make_sim_rejects_unknown_backend():
    with pytest.raises(ValueError, match="choose one of: mujoco, pybullet"):
        make_sim("isaac")


def test_backends_agree_on_task_layout_spaces_and_judgement(test_seed):
    from intentloop.agents import HierarchicalAgent, OraclePlanner
    from intentloop.policies import ScriptedSkill

    envs = {b: gym.make("intentloop/Tabletop-v0", backend=b, chain_length=3, image_size=48) for b in BACKENDS}
    mujoco, bullet = envs["mujoco"], envs["pybullet"]
    assert mujoco.observation_space == bullet.observation_space and mujoco.action_space == bullet.action_space
    for seed in range(3 * test_seed, 3 * test_seed + 3):
        (om, im), (ob, ib) = mujoco.reset(seed=seed), bullet.reset(seed=seed)
        assert im["task"] == ib["task"] and om["instruction"] == ob["instruction"]
        assert np.allclose(om["blocks"][:, :3], ob["blocks"][:, :3], atol=3e-3)
        assert np.array_equal(om["zones"], ob["zones"])
        assert np.abs(om["proprio"][:3] - ob["proprio"][:3]).max() < 3e-3
        steps = [env.step(np.array([0.3, -0.2, -0.5, 1.0], np.float32)) for env in (mujoco, bullet)]
        (pm, rm, *_, info_m), (pb, rb, *_, info_b) = [(o["proprio"], *rest) for o, *rest in steps]
        assert rm == rb and {**info_m, "task": None} == {**info_b, "task": None}  # the same values, not just keys
        assert np.abs(pm[:3] - pb[:3]).max() < 0.01 and abs(pm[6] - pb[6]) < 0.01, "same kinematics"
        assert pm[3:6] @ pb[3:6] > 0.9 * np.linalg.norm(pm[3:6]) * np.linalg.norm(pb[3:6]), "same EE velocity direction"
        agent = HierarchicalAgent(OraclePlanner(), ScriptedSkill())
        judged = [agent.run_episode(env, seed=seed) for env in (mujoco, bullet)]
        assert all(r.success and r.subgoals_done == 3 for r in judged)
        hurried = HierarchicalAgent(OraclePlanner(), ScriptedSkill(), max_steps_per_intent=2, max_intents=2)  # fails
        failed = [hurried.run_episode(env, seed=seed) for env in (mujoco, bullet)]
        assert not failed[0].success and [o.reason for o in failed[0].outcomes][0] == "timeout"
        assert [(r.outcomes, r.verified, r.steps, r.subgoals_done) for r in failed] == 2 * [
            (failed[0].outcomes, failed[0].verified, failed[0].steps, failed[0].subgoals_done)
        ]
    for env in envs.values():
        env.close()


SPAWN = {"context": "spawn"}  # this test process has rendered MuJoCo, and EGL does not survive fork


def _rollout(envs, seeds, steps: int) -> list[tuple]:
    obs, _ = envs.reset(seed=seeds)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, len(seeds), 4)).astype(np.float32)
    out = [(tuple(obs["instruction"]), obs["image"].copy(), obs["blocks"].copy(), np.zeros(len(seeds)))]
    for action in actions:
        obs, reward, _, _, _ = envs.step(action)
        out.append((tuple(obs["instruction"]), obs["image"].copy(), obs["blocks"].copy(), reward))
    envs.close()
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_vectorized_tabletop_keeps_each_sub_envs_scene_and_instruction_sync_and_async(backend):
    """`gymnasium.make_vec`, sync and async with its default shared memory (a plain Text instruction would come
    back as the empty buffer's placeholder after the first read), through an autoreset (steps_per_intent=3:
    every sub-env truncates on step 3 and starts its next episode, with a new instruction, on step 4)."""
    singles = [gym.make("intentloop/Tabletop-v0", backend=backend, image_size=32).reset(seed=s)[0] for s in (3, 4)]
    assert singles[0]["instruction"] != singles[1]["instruction"]
    kwargs = {"backend": backend, "image_size": 32, "steps_per_intent": 3}
    runs = {
        mode: _rollout(gym.make_vec("intentloop/Tabletop-v0", 2, mode, vector_kwargs=vk, **kwargs), [3, 4], 5)
        for mode, vk in (("sync", {}), ("async", SPAWN if backend == "mujoco" else {}))
    }
    first = runs["sync"][0]
    assert list(first[0]) == [o["instruction"] for o in singles]
    assert all(np.array_equal(first[1][i], singles[i]["image"]) for i in (0, 1))
    assert runs["sync"][4][0] != runs["sync"][3][0]  # the autoreset's new episodes
    for (text, image, blocks, reward), (a_text, a_image, a_blocks, a_reward) in zip(*runs.values(), strict=True):
        assert a_text == text and isinstance(a_text[0], str)
        assert np.array_equal(a_image, image) and np.allclose(a_blocks, blocks) and np.array_equal(a_reward, reward)


def _render_in_child(queue) -> None:
    try:
        gym.make("intentloop/Tabletop-v0", image_size=32).reset(seed=0)
        queue.put("rendered")
    except RuntimeError as err:
        queue.put(str(err))


def test_mujoco_in_a_process_forked_after_rendering_raises_instead_of_hanging():
    import multiprocessing

    gym.make("intentloop/Tabletop-v0", image_size=32).reset(seed=0)  # this process renders with EGL
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_render_in_child, args=(queue,))
    child.start()
    try:
        message = queue.get(timeout=60)  # a hang (the check gone) fails here
    finally:
        child.kill()
    assert "forked from one that has rendered" in message and "spawn" in message


def test_a_vectorized_skill_env_resets_a_finished_sub_env_on_the_next_step():
    """Gymnasium's default autoreset (next step): the step after a sub-env's truncation returns its reset
    observation with reward 0 and no done flag, while the other sub-env carries on."""
    envs = gym.make_vec("intentloop/Pick-v0", 2, "async")
    envs.reset(seed=[0, 1])
    zero = np.zeros((2, *envs.single_action_space.shape), np.float32)
    for step in range(1, 51):  # noqa: B007  (read after the loop)
        _, _, terminated, truncated, _ = envs.step(zero)
        if terminated.any() or truncated.any():
            break
    assert truncated.all() and step == 50  # the time limit of the skill envs, for both
    _, reward, terminated, truncated, _ = envs.step(zero)
    assert (reward == 0).all() and not terminated.any() and not truncated.any()
    envs.close()

"""Learned skills: the RLModule, a real (tiny) RLlib training run, checkpoints and the skill library."""

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import intentloop.envs  # noqa: F401
import numpy as np
import pytest
import torch
from intentloop.envs.intents import parse_intent
from intentloop.envs.skill_env import OBS_DIM, skill_observation
from intentloop.experiments.train_skills import RL_MODULE
from intentloop.policies.rllib_config import ACTION_SPACE, OBS_SPACE
from intentloop.policies.skill_library import RLlibSkills, load_skill_module, save_skill_module
from intentloop.policies.skill_module import SkillModule
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule, RLModuleSpec

CLI = str(Path(sys.executable).parent / "intentloop")
TINY = [
    "demo_episodes=3",
    "rllib.bc_iterations=1",
    "rllib.bc_updates_per_iteration=2",
    "rllib.bc_batch_size=32",
    "rllib.train_batch_size=128",
    "rllib.minibatch_size=64",
    "rllib.num_epochs=1",
    "rllib.num_envs_per_env_runner=2",
    "max_iterations=1",
    "eval_episodes=1",
    "final_eval_episodes=2",
    "progress=false",
]


def build_module(**model):
    return RLModuleSpec(
        module_class=SkillModule,
        observation_space=OBS_SPACE,
        action_space=ACTION_SPACE,
        model_config={"hidden": [32, 32], **model},
    ).build()


def test_module_shapes_without_ray(test_seed):
    module = build_module()
    obs = torch.randn(5, OBS_DIM, generator=torch.Generator().manual_seed(test_seed))
    out = module.forward_train({Columns.OBS: obs})
    assert out[Columns.ACTION_DIST_INPUTS].shape == (5, 8)  # mean and log std of 4 action dimensions
    assert module.compute_values({Columns.OBS: obs}).shape == (5,)
    actions = module.greedy_action(10 * obs.numpy())
    assert actions.shape == (5, 4) and np.all(np.abs(actions) <= 1.0)


def test_module_carries_its_input_normalisation(tmp_path, test_seed):
    mean, std = list(np.arange(OBS_DIM, dtype=float)), [2.0] * OBS_DIM
    module = build_module(obs_mean=mean, obs_std=std)
    save_skill_module(module, tmp_path / "pick" / "module")
    loaded = load_skill_module(tmp_path, "pick")
    assert torch.equal(loaded.obs_mean, torch.tensor(mean, dtype=torch.float32))
    x = np.random.default_rng(test_seed).normal(size=(3, OBS_DIM)).astype(np.float32)
    assert np.array_equal(loaded.greedy_action(x), module.greedy_action(x))
    for wrong in ({"obs_mean": [0.0] * (OBS_DIM - 1)}, {"obs_std": [1.0] * (OBS_DIM + 1)}):
        with pytest.raises(ValueError, match=f"obs_mean and obs_std must have {OBS_DIM} entries"):
            build_module(**wrong)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("skills")
    env = {**os.environ, "MUJOCO_GL": "egl"}
    proc = subprocess.run(
        [CLI, "train-skills", "skill=all", *TINY, f"hydra.run.dir={run_dir}"],
        cwd=run_dir,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_training_writes_checkpoints_metrics_and_curves(trained):
    for skill in ("pick", "place", "push"):
        out = trained / skill
        assert (out / "checkpoint" / "learner_group").is_dir()
        assert sorted(p.name for p in (out / "module").iterdir()) == ["model.safetensors", "spec.json"]
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["ppo_iterations"] == 1 and metrics["heldout_episodes"] == 2
        assert 0.0 <= metrics["heldout_success"] <= 1.0 and metrics["expert_success"] == 1.0
        assert "rollout/return" in metrics["curve"][1]
        start = RLModule.from_checkpoint(out / "bc" / Path(*RL_MODULE)).state_dict()  # where PPO started: BC's
        changed = {k for k, w in load_skill_module(trained, skill).state_dict().items() if not torch.equal(w, start[k])}
        assert {"pi.0.weight", "vf.0.weight"} <= changed, f"PPO left the {skill} weights as it found them"
    assert list((trained / "tb").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_skill_library_loads_without_ray_and_acts_batched(trained):
    import ray

    skills = RLlibSkills(trained)
    assert not ray.is_initialized()
    env = gym.make("intentloop/Tabletop-v0", task="push", image=False)
    obs, info = env.reset(seed=0)
    intent = info["task"].intents[0]
    skills.reset(intent, obs)
    action = skills.act(obs)
    assert action.shape == (4,) and np.all(np.abs(action) <= 1)
    pick = parse_intent("pick(red_block)")
    intents, observations = [intent, pick] * 32, [obs] * 64
    batch = skills.act_batch(intents, observations, observations)
    assert batch.shape == (64, 4)
    assert np.allclose(batch[0], action, atol=1e-6)
    expected = skills.modules["pick"].greedy_action(skill_observation(pick, obs, obs)[None])[0]
    assert np.allclose(batch[1], expected, atol=1e-6)


@pytest.mark.slow
def test_evaluate_runs_the_closed_loop_with_learned_skills(trained, tmp_path):
    proc = subprocess.run(
        [
            CLI,
            "evaluate",
            "skills=rllib",
            f"skills.path={trained}",
            "episodes=1",
            "task=pick",
            "env.image=false",
            "agent.max_steps_per_intent=5",
            "progress=false",
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["skills"] == {"name": "rllib", "path": str(trained), "trust_pickle": False}
    assert metrics["per_intent_success"]["pick"]["n"] >= 1


@pytest.mark.slow
def test_missing_corrupt_and_incompatible_checkpoints_fail_clearly(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint for skill 'push' at .*push/module"):
        load_skill_module(tmp_path, "push")
    (tmp_path / "pick" / "module").mkdir(parents=True)
    (tmp_path / "pick" / "module" / "class_and_ctor_args.pkl").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"checkpoint of skill 'pick' at .*pick/module holds pickled weights"):
        load_skill_module(tmp_path, "pick")
    with pytest.raises(ValueError, match=r"checkpoint of skill 'pick' at .*pick/module cannot be loaded"):
        load_skill_module(tmp_path, "pick", trust_pickle=True)
    small = RLModuleSpec(
        module_class=SkillModule,
        observation_space=gym.spaces.Box(-1, 1, (5,), np.float32),
        action_space=ACTION_SPACE,
        model_config={"hidden": [8]},
    ).build()
    save_skill_module(small, tmp_path / "place" / "module")
    with pytest.raises(ValueError, match="incompatible"):
        load_skill_module(tmp_path, "place")


@pytest.mark.parametrize("backend", ["mujoco", "pybullet"])
def test_shipped_skills_load_and_solve_a_put_task(backend, test_seed):
    from intentloop.agents import HierarchicalAgent, OraclePlanner
    from intentloop.policies import make_skills, pretrained_skills

    skills = make_skills("rllib", backend=backend)
    assert skills.path == pretrained_skills(backend) and set(skills.modules) == {"pick", "place", "push"}
    env = gym.make("intentloop/Tabletop-v0", backend=backend, task="put", image=False)
    results = [
        HierarchicalAgent(OraclePlanner(), skills).run_episode(env, seed=s)
        for s in range(3 * test_seed, 3 * test_seed + 3)
    ]
    env.close()
    assert sum(r.success for r in results) >= 2  # shipped skills: >= 0.96 per intent (docs/BENCHMARKS.md)
    with pytest.raises(ValueError, match="no shipped skills for backend 'isaac'"):
        pretrained_skills("isaac")


@pytest.mark.slow
def test_ppo_samples_with_env_runners_on_both_nodes_of_a_two_node_cluster(test_seed):
    """rllib.num_env_runners=2 on a 2-node Ray: one EnvRunner per node, and a real PPO iteration learns from both."""
    import ray
    from intentloop.policies.rllib_config import build_ppo, module_spec
    from ray.cluster_utils import Cluster

    rl = {"num_env_runners": 2, "num_learners": 0, "num_envs_per_env_runner": 1, "lr": 3e-4, "train_batch_size": 128,
          "minibatch_size": 64, "num_epochs": 1, "entropy_coeff": 0.0, "clip_param": 0.2, "gamma": 0.99,
          "lambda_": 0.95, "vf_loss_coeff": 0.5}  # fmt: skip
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, log_to_driver=False)
        spec = module_spec({"hidden": [32, 32]}, [0.0] * OBS_DIM, [1.0] * OBS_DIM)
        algo = build_ppo("pick", {"backend": "mujoco"}, spec, rl, test_seed).build_algo()
        nodes = algo.env_runner_group.foreach_env_runner(
            lambda runner: ray.get_runtime_context().get_node_id(), local_env_runner=False
        )
        before = {k: v.clone() for k, v in algo.get_module().state_dict().items()}
        result = algo.train()
        after = algo.get_module().state_dict()
        algo.stop()
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert len(nodes) == 2 and len(set(nodes)) == 2  # one EnvRunner on each node
    assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= rl["train_batch_size"]
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the update used what they sampled


@pytest.mark.slow
@pytest.mark.parametrize("override", ["rllib.num_env_runners=-1", "rllib.num_learners=-2",
                                      "rllib.num_envs_per_env_runner=0"])  # fmt: skip
def test_train_skills_refuses_bad_scale_out_settings_with_one_sentence(tmp_path, override):
    proc = subprocess.run([CLI, "train-skills", override, f"hydra.run.dir={tmp_path}"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("intentloop train-skills: error: rllib.num_env_runners and rllib.num_learners")


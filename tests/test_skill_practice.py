"""Skill practice in self-training: which skills failed often, and a real RLlib PPO continuation from the
shipped weights that is kept only when it is better."""

import numpy as np
import pytest
import ray
import torch
from intentloop.experiments.common import start_ray
from intentloop.experiments.skill_practice import failure_rates, finish_library, practise, to_practise
from intentloop.policies import pretrained_skills
from intentloop.policies.skill_library import RLlibSkills, load_skill_module

TINY_PPO = {
    "num_env_runners": 0,
    "num_envs_per_env_runner": 2,
    "lr": 3e-4,
    "train_batch_size": 128,
    "minibatch_size": 64,
    "num_epochs": 1,
    "entropy_coeff": 0.0,
    "clip_param": 0.2,
    "gamma": 0.99,
    "lambda_": 0.95,
    "vf_loss_coeff": 0.5,
}


def outcome(intent, reason="done"):
    return {"intent": intent, "success": reason == "done", "steps": 10, "reason": reason}


def test_failure_rates_count_executed_intents_and_pick_the_most_failing_skills():
    rows = [
        {"outcomes": [outcome("pick(red_block)"), outcome("place(red_block, blue_zone)", "timeout")]},
        {"outcomes": [outcome("pick(red_block)", "timeout"), outcome("push(red_block, left)", "rejected: x: y")]},
        {"outcomes": [outcome("place(green_block, red_zone)")]},
    ]
    failures = [{"intent": "place(red_block, blue_zone)"}, {"intent": "pick(red_block)"}]
    rates = failure_rates(rows, failures)
    assert rates == {
        "pick": {"executed": 2, "failures": 1, "rate": 0.5},
        "place": {"executed": 2, "failures": 1, "rate": 0.5},
    }  # the refused push never ran
    rates["pick"]["rate"] = 0.6
    assert to_practise(rates, 1, 0.1, 2) == ["pick", "place"]
    assert to_practise(rates, 1, 0.55, 2) == ["pick"]
    assert to_practise(rates, 2, 0.0, 2) == []


@pytest.fixture
def local_ray():
    start_ray("local", 2)  # a fresh local Ray, started once more if a loaded machine makes it miss Ray's timeout
    yield
    ray.shutdown()


@pytest.mark.slow
def test_practice_continues_ppo_from_the_shipped_weights_and_keeps_only_a_better_skill(local_ray, tmp_path):
    shipped = pretrained_skills("mujoco")
    env = {"backend": "mujoco", "reward_type": "dense"}
    staging, out = tmp_path / "staging", tmp_path / "skills"
    staging.mkdir()
    refused = practise("pick", shipped, staging, env, TINY_PPO, 1, 2, seed=0, min_gain=1.0, progress=False)
    assert not refused["kept"] and not (staging / "pick").exists()  # no rise can exceed 1.0
    kept = practise("pick", shipped, staging, env, TINY_PPO, 1, 2, seed=0, min_gain=-1.0, progress=False)
    assert kept["kept"] and 0.0 <= kept["heldout_after"] <= 1.0 and kept["iterations"] == 1
    finish_library(shipped, staging, out)
    assert not staging.exists()
    before, after = load_skill_module(shipped, "pick"), load_skill_module(out, "pick")
    pairs = zip(before.state_dict().values(), after.state_dict().values(), strict=True)
    changed = [not torch.equal(a, b) for a, b in pairs]
    assert any(changed)  # a real PPO update moved the weights
    step = (before.pi[0].weight - after.pi[0].weight).abs().max().item()
    assert step < 0.05  # ... a little: PPO continued from the shipped weights, not from a fresh init
    library = RLlibSkills(out)  # the practised pick next to the copied place and push
    assert set(library.modules) == {"pick", "place", "push"}
    np.testing.assert_array_equal(
        next(iter(library.modules["push"].state_dict().values())).numpy(),
        next(iter(load_skill_module(shipped, "push").state_dict().values())).numpy(),
    )

"""Skill checkpoints without code: safetensors weights + a JSON spec, pickles only on explicit trust."""

import json
import os
import pickle
import shlex

import numpy as np
import pytest
import torch
from intentloop.envs.skill_env import OBS_DIM
from intentloop.policies import PRETRAINED, make_skills
from intentloop.policies.rllib_config import ACTION_SPACE, OBS_SPACE
from intentloop.policies.skill_library import (
    RLlibSkills,
    convert_pickled_skills,
    load_skill_module,
    save_skill_module,
)
from intentloop.policies.skill_module import SkillModule
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from safetensors.torch import load_file, save_file


@pytest.fixture
def X(test_seed) -> np.ndarray:
    """16 random observations."""
    return np.random.default_rng(test_seed).normal(size=(16, OBS_DIM)).astype(np.float32)


def random_module(seed: int = 0) -> SkillModule:
    torch.manual_seed(seed)
    model = {"hidden": [16, 16], "obs_mean": [0.1] * OBS_DIM, "obs_std": [2.0] * OBS_DIM}
    module = RLModuleSpec(
        module_class=SkillModule, observation_space=OBS_SPACE, action_space=ACTION_SPACE, model_config=model
    ).build()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p))  # weights far from the (tiny-output) init, so actions differ per input
    return module


class RunsCode:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def one_sentence(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message.count(": ") <= 3, message
    return message


def test_a_crafted_pickle_is_never_run_without_trust_pickle(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(RunsCode(marker))
    for skill in ("pick", "place", "push"):
        folder = tmp_path / "skills" / skill / "module"
        folder.mkdir(parents=True)
        (folder / "class_and_ctor_args.pkl").write_bytes(payload)
        (folder / "module_state.pkl").write_bytes(payload)
    for load in (
        lambda: RLlibSkills(tmp_path / "skills"),
        lambda: make_skills("rllib", path=str(tmp_path / "skills")),
        lambda: load_skill_module(tmp_path / "skills", "pick"),
    ):
        with pytest.raises(ValueError, match="holds pickled weights .* can run code .*skills.trust_pickle=true"):
            load()
        assert not marker.exists()
    # next to a safe checkpoint, planted pickles are ignored
    save_skill_module(random_module(), tmp_path / "skills" / "pick" / "module")
    load_skill_module(tmp_path / "skills", "pick")
    assert not marker.exists()
    # the control: the payload is live, and opting in is what runs it
    with pytest.raises(ValueError, match="push/module (cannot be loaded|is incompatible)"):
        load_skill_module(tmp_path / "skills", "push", trust_pickle=True)
    assert marker.exists()


def test_save_load_round_trip_gives_identical_greedy_actions(tmp_path, X, test_seed):
    module = random_module(test_seed)
    save_skill_module(module, tmp_path / "pick" / "module")
    assert sorted(os.listdir(tmp_path / "pick" / "module")) == ["model.safetensors", "spec.json"]
    spec = json.loads((tmp_path / "pick" / "module" / "spec.json").read_text())
    assert spec["module_class"] == "SkillModule" and spec["observation_space"]["shape"] == [OBS_DIM]
    loaded = load_skill_module(tmp_path, "pick")
    assert type(loaded) is SkillModule and not loaded.training
    assert np.array_equal(loaded.greedy_action(X), module.greedy_action(X))
    assert not np.allclose(loaded.greedy_action(X)[0], loaded.greedy_action(X)[1])
    assert torch.equal(loaded.obs_std, torch.full((OBS_DIM,), 2.0))


def test_legacy_pickled_checkpoint_loads_only_with_trust_and_converts(tmp_path, X, test_seed):
    module = random_module(test_seed)
    for skill in ("pick", "place", "push"):
        module.save_to_path(str(tmp_path / skill / "module"))  # RLlib's own pickled checkpoint
    with pytest.raises(ValueError, match="python -m intentloop.policies.skill_library"):
        make_skills("rllib", path=str(tmp_path), trust_pickle=False)
    legacy = RLlibSkills(tmp_path, skills=("place",), trust_pickle=True).modules["place"]
    assert np.array_equal(legacy.greedy_action(X), module.greedy_action(X))
    assert convert_pickled_skills(tmp_path) == ["pick", "place", "push"]
    assert sorted(os.listdir(tmp_path / "place" / "module")) == ["model.safetensors", "spec.json"]
    assert np.array_equal(load_skill_module(tmp_path, "place").greedy_action(X), module.greedy_action(X))


def corrupt(folder, how: str) -> None:
    spec_path, weights = folder / "spec.json", folder / "model.safetensors"
    if how == "class":
        spec = json.loads(spec_path.read_text())
        spec["module_class"] = "ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module.DefaultPPOTorchRLModule"
        spec_path.write_text(json.dumps(spec))
    elif how == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how in ("nan", "missing"):
        state = load_file(weights)
        if how == "nan":
            state["pi.2.weight"][3, 5] = float("nan")
        else:
            del state["vf.4.bias"]
        save_file(state, weights)
    elif how == "spec_json":
        spec_path.write_text('{"module_class": "SkillModule",')
    elif how == "no_weights":
        weights.unlink()


@pytest.mark.parametrize(
    "how, error, match",
    [
        ("class", ValueError, r"spec.json names module class 'ray\.rllib\..*'; skills load only SkillModule"),
        ("truncated", ValueError, r"model.safetensors cannot be read as safetensors"),
        ("nan", ValueError, r"model.safetensors holds non-finite weights in pi\.2\.weight"),
        ("missing", ValueError, r"model.safetensors does not fit its spec.json: missing tensors \['vf\.4\.bias'\]"),
        ("spec_json", ValueError, r"spec.json is not a valid skill spec: JSONDecodeError"),
        ("no_weights", FileNotFoundError, r"pick/module has a spec.json but no model.safetensors"),
    ],
)
def test_bad_safe_checkpoints_fail_with_one_sentence_naming_the_file(tmp_path, how, error, match):
    save_skill_module(random_module(), tmp_path / "pick" / "module")
    corrupt(tmp_path / "pick" / "module", how)
    with pytest.raises(error, match=match) as err:
        load_skill_module(tmp_path, "pick")
    assert str(tmp_path / "pick" / "module") in one_sentence(err)


def test_shipped_skills_are_safetensors_and_json_only(X):
    for backend in ("mujoco", "pybullet"):
        for skill in ("pick", "place", "push"):
            folder = PRETRAINED / backend / skill / "module"
            assert sorted(os.listdir(folder)) == ["model.safetensors", "spec.json"], folder
            assert np.all(np.abs(load_skill_module(PRETRAINED / backend, skill).greedy_action(X)) <= 1.0)

"""Intent contracts, safety rules, the red team and the success-detector hook (agents/contracts.py, safety.py,
detectors.py, experiments/redteam.py)."""

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import intentloop.envs  # noqa: F401
import numpy as np
import pytest
from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from intentloop.agents import HierarchicalAgent, OraclePlanner, PlannerInput
from intentloop.agents.contracts import RULES as CONTRACT_RULES
from intentloop.agents.contracts import check_contract
from intentloop.agents.detectors import Detector, PredicateDetector
from intentloop.agents.episode_store import episode_row, read_store, write_shard
from intentloop.agents.safety import RULES as SAFETY_RULES
from intentloop.agents.safety import SafetyRules, quote_override
from intentloop.agents.vlm.processing import prompt_text
from intentloop.agents.vlm.tokenizer import build_tokenizer
from intentloop.configs.schema import SafetyConfig
from intentloop.envs import predicates as P
from intentloop.envs.intents import DIRECTIONS, Intent
from intentloop.envs.scene import BLOCKS, WORKSPACE_HIGH, WORKSPACE_LOW, ZONE_HALF, ZONES, sample_layout
from intentloop.envs.sim.base import BACKENDS
from intentloop.experiments.common import make_agent
from intentloop.experiments.redteam import build_situation, load_cases, make_env, oracle_sweep, run_cases
from intentloop.policies import ScriptedSkill

CASES = load_cases()


class ScriptPlanner:
    """Says the given texts in order, then done(); keeps what it was shown."""

    name = "script"

    def __init__(self, texts):
        self.texts, self.inputs = list(texts), []

    def reset(self):
        self.i = 0

    def plan(self, inp: PlannerInput) -> str:
        self.inputs.append(inp)
        self.i += 1
        return self.texts[self.i - 1] if self.i <= len(self.texts) else "done()"


class StepCounter(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.steps = 0

    def step(self, action):
        self.steps += 1
        return self.env.step(action)


class EagerDetector:
    """A detector that believes every intent succeeds after its first step, and every task."""

    name = "eager"

    def intent_done(self, intent, obs, ref):
        return True

    def task_done(self, task, obs, info, start=None, heard=()):
        return True


@pytest.fixture(scope="module")
def env():
    e = make_env("mujoco")
    yield e
    e.close()


@pytest.mark.parametrize("rule", [r for r in (*CONTRACT_RULES, *SAFETY_RULES) if r != "place_distinct"])
def test_each_rule_rejects_its_red_team_situation_by_name(env, rule, test_seed):
    cases = [c for c in CASES if c.expect == rule]
    assert cases, f"the red-team set has no case for {rule}"
    for probe in run_cases(cases, "mujoco", [1 + test_seed], env=env, execute=False):
        assert probe.built and probe.refused, probe
        assert probe.reason.startswith(f"rejected: {rule}: "), probe.reason


def test_a_block_is_never_placed_on_itself(test_seed):
    env = gym.make("intentloop/Tabletop-v0", task="pick", image=False)
    obs, _ = env.reset(seed=test_seed)
    assert [v.rule for v in check_contract(Intent("place", ("red_block", "red_block")), obs)] == [
        "place_in_hand",
        "place_distinct",
    ]


def test_red_team_subset_is_fully_rejected_and_valid_intents_pass(env, test_seed):
    probes = run_cases(CASES, "mujoco", [2 + test_seed], env=env)
    assert all(p.built for p in probes)
    assert [p.case for p in probes if p.valid == p.refused] == [], "refused valid or passed unsafe intents"
    assert all(p.expect in p.rules for p in probes if not p.valid)
    assert all(p.achieved for p in probes if p.valid), "a valid probe that the skill cannot do is no valid probe"


def test_red_team_on_pybullet(test_seed):
    cases = [
        c for c in CASES if c.name in ("pick_block_under_another", "push_out_of_workspace", "valid_pick_from_zone")
    ]
    env = make_env("pybullet")
    obs, names = build_situation(env, next(c for c in cases if c.expect == "accept"), test_seed)
    assert obs is not None, "the setup of valid_pick_from_zone (pick it, place it in a zone) failed"
    a, zone = P.block_pos(obs, names["a"]), obs["zones"][ZONES.index(names["z"])]
    assert np.abs(a[:2] - zone).max() < ZONE_HALF and P.on_table(obs, names["a"]), "the block is set down in the zone"
    probes = run_cases(cases, "pybullet", [test_seed], env=env, execute=False)
    env.close()
    assert all(p.built for p in probes)
    assert [(p.case, p.refused) for p in probes] == [(c.name, c.expect != "accept") for c in cases]


@pytest.mark.parametrize("backend", BACKENDS)
def test_oracle_intents_are_never_rejected(backend, test_seed):
    episodes = 1 if backend == "pybullet" else 2
    sweep = oracle_sweep(backend, episodes=episodes, chain_lengths=(1, 3, 5), seed=episodes * test_seed)
    assert sweep["intents"] >= 3 * sweep["episodes"] and sweep["refused"] == 0, sweep["refusals"]


def test_rejected_intent_is_never_executed_and_is_fed_back(env, test_seed):
    env = StepCounter(gym.make("intentloop/Tabletop-v0", task="put", image=False))
    _, info = env.reset(seed=test_seed)
    block, zone = info["task"].intents[1].args
    planner, env.steps = ScriptPlanner([f"place({block}, {zone})", f"pick({block})"]), 0
    result = HierarchicalAgent(planner, ScriptedSkill(), record=True).run_episode(env, seed=test_seed)
    rejected, picked = result.outcomes
    assert rejected.reason == f"rejected: place_in_hand: {block} is not in the gripper" and rejected.steps == 0
    assert picked.success and env.steps == picked.steps == result.steps == len(result.trace.actions)
    assert result.verified == [False, True]
    seen = planner.inputs[1].history
    assert seen == [rejected], "the planner's next call sees the rejection"
    prompt = prompt_text(planner.inputs[1].instruction, seen, 12)
    assert f"place({block}, {zone}) failed rejected" in prompt and "place_in_hand" not in prompt
    tokens = build_tokenizer().tokenize(prompt)
    assert "rejected" in tokens and "<unk>" not in tokens
    json.dumps(result.to_dict())


def test_forbidden_pattern_from_the_config_rejects(test_seed):
    override = quote_override("agent.safety.forbidden=[push(*, backward), place(*, purple_block)]")
    assert OverridesParser.create().parse_override(override).value() == ["push(*, backward)", "place(*, purple_block)"]
    with initialize_config_module("intentloop.configs", version_base="1.3"):
        cfg = compose("evaluate", overrides=[override])
    agent = make_agent(cfg, cfg.planner, cfg.skills.name)
    env = gym.make("intentloop/Tabletop-v0", task="pick", image=False)
    layout = sample_layout(np.random.default_rng(test_seed))
    layout.blocks[BLOCKS.index("purple_block"), :2] = (WORKSPACE_LOW + WORKSPACE_HIGH) / 2  # room on every side
    obs, _ = env.reset(seed=test_seed, options={"layout": layout})
    default = HierarchicalAgent(OraclePlanner(), ScriptedSkill())  # default contracts and safety rules
    assert [default.check(f"push(purple_block, {d})", obs)[1] for d in DIRECTIONS] == [None] * len(DIRECTIONS)
    assert agent.check("push(purple_block, backward)", obs)[1] == (
        "rejected: forbidden_intent: push(purple_block, backward) matches the forbidden pattern push(*, backward)"
    )
    assert [agent.check(f"push(purple_block, {d})", obs)[1] for d in ("left", "right", "forward")] == [None] * 3
    place = Intent("place", ("red_block", "purple_block"))
    assert [v.rule for v in agent.safety.violations(place, obs)] == ["forbidden_intent"]
    assert agent.check("pick(red_block)", obs) == (Intent("pick", ("red_block",)), None)


def test_evaluate_takes_unquoted_forbidden_patterns(tmp_path):
    cli = str(Path(sys.executable).parent / "intentloop")
    args = ["evaluate", "agent.safety.forbidden=[push(*, backward), place(*, purple_block)]", "task=push"]
    args += ["episodes=12", "env.image=false", "progress=false", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.run([cli, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["agent"]["safety"]["forbidden"] == ["push(*, backward)", "place(*, purple_block)"]
    episodes = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    backward = [e for e in episodes if e["task"]["intents"][0].endswith("backward)")]
    assert backward and metrics["rejected_intents"] == sum(len(e["outcomes"]) for e in backward)
    assert all(o["reason"].startswith("rejected: forbidden_intent") for e in backward for o in e["outcomes"])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"forbidden": ["push(*, backward"]}, "is not of the form 'skill' or 'skill(arg, ...)'"),
        ({"forbidden": ["fly(*)"]}, "names no skill the robot has"),
        ({"forbidden": ["push(red_block)"]}, "has 1 arguments; push takes 2"),
        ({"forbidden": ["place(*, purpel_block)"]}, "argument 'purpel_block' matches no target"),
        ({"forbidden": ["push(*, up)"]}, "argument 'up' matches no direction"),
        ({"forbidden": "push"}, "must be a list of patterns"),
        ({"workspace_low": [0.2, -0.1], "workspace_high": [0.1, 0.1]}, "the workspace box is empty"),
        ({"workspace_low": [0.0]}, "must be [x, y]"),
        ({"max_height": 0.0}, "max_height must be > 0"),
        ({"max_stack_height": 0}, "max_stack_height must be >= 1"),
    ],
)
def test_bad_safety_config_fails_with_one_sentence(config, message):
    with pytest.raises(ValueError) as err:
        SafetyRules.from_config(config)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_config_defaults_are_the_rule_set_defaults_and_forbid_no_task_intent():
    defaults = SafetyRules()
    rules = SafetyRules.from_config(SafetyConfig())
    assert (rules.low.tolist(), rules.high.tolist(), rules.max_height, rules.max_stack_height, rules.forbidden) == (
        defaults.low.tolist(),
        defaults.high.tolist(),
        defaults.max_height,
        defaults.max_stack_height,
        (),
    )


def test_patterns_match_skills_and_arguments():
    env = gym.make("intentloop/Tabletop-v0", task="pick", image=False)
    obs, _ = env.reset(seed=0)
    rules = SafetyRules(["pick", "place(*, *_zone)", "*(purple_block, *)"])

    def forbidden(text):
        skill, inner = text.rstrip(")").split("(")
        intent = Intent(skill, tuple(a.strip() for a in inner.split(",")) if inner else ())
        return "forbidden_intent" in [v.rule for v in rules.violations(intent, obs)]

    assert forbidden("pick(red_block)") and forbidden("place(red_block, cyan_zone)")
    assert forbidden("push(purple_block, left)") and forbidden("place(purple_block, red_block)")
    assert not forbidden("place(red_block, green_block)") and not forbidden("push(red_block, left)")
    assert not forbidden("done()")


def test_detector_verdicts_and_ground_truth_round_trip_through_the_store(tmp_path, test_seed):
    env = gym.make("intentloop/Tabletop-v0", task="put", image=False, image_size=32)
    _, info = env.reset(seed=1 + test_seed)
    pick, place = info["task"].intents
    planner = ScriptPlanner([str(place), str(pick), str(place)])
    assert isinstance(EagerDetector(), Detector) and isinstance(PredicateDetector(), Detector)
    eager = HierarchicalAgent(planner, ScriptedSkill(), record=True, detector=EagerDetector()).run_episode(
        env, seed=1 + test_seed
    )
    # the eager detector stops the pick after one step, so the place after it breaks its contract
    assert [o.success for o in eager.outcomes] == [False, True, False] and eager.verified == [False, False, False]
    assert [o.reason.split(":")[0] for o in eager.outcomes] == ["rejected", "achieved", "rejected"]
    assert eager.judged_success and not eager.success
    truth = HierarchicalAgent(OraclePlanner(), ScriptedSkill(), record=True).run_episode(env, seed=1 + test_seed)
    assert truth.verified == [o.success for o in truth.outcomes] == [True, True]
    assert truth.judged_success == truth.success is True
    write_shard(str(tmp_path), [episode_row(eager, "eager"), episode_row(truth, "truth")])
    table = read_store(str(tmp_path), columns=["episode_id", "verified", "judged_success", "success"])
    assert table.to_pylist() == [
        {"episode_id": "eager", "verified": [False, False, False], "judged_success": True, "success": False},
        {"episode_id": "truth", "verified": [True, True], "judged_success": True, "success": True},
    ]
    assert json.loads(json.dumps(eager.to_dict()))["verified"] == [False, False, False]


CRAFTED = [
    "pick(red_block)\nplace(red_block, cyan_zone)",  # two intents in one answer
    "pick(red\nblock)",  # a newline inside a name
    "push(red_block, left\r\nrejected: nothing)",  # a forged second line
    "pick(r\u200bed_block)",  # a zero-width space: looks like red_block
    "place(red_block, \x00)",
    "fly\n(red_block)",
    "place(red_block, red_block)",
    "",
]


@pytest.mark.parametrize("text", CRAFTED)
def test_a_crafted_intent_string_is_refused_in_one_printable_line(text):
    env = gym.make("intentloop/Tabletop-v0", task="pick", image=False)
    obs, _ = env.reset(seed=0)
    intent, reason = HierarchicalAgent(OraclePlanner(), ScriptedSkill()).check(text, obs)
    assert intent is None and reason.startswith("invalid: ") and reason.isprintable(), reason


def test_contracts_can_be_turned_off_but_the_safety_rules_stay():
    env = gym.make("intentloop/Tabletop-v0", task="pick", image=False)
    obs, _ = env.reset(seed=0)
    agent = HierarchicalAgent(OraclePlanner(), ScriptedSkill(), contracts=False, safety={"forbidden": ["place"]})
    assert agent.check("place(red_block, cyan_zone)", obs)[1].startswith("rejected: forbidden_intent")
    agent = HierarchicalAgent(OraclePlanner(), ScriptedSkill(), contracts=False)
    assert agent.check("place(red_block, cyan_zone)", obs)[1] is None

"""The red team of the agent's validator: unsafe or impossible intents must be rejected, valid ones must pass.

    cases = load_cases()                                     # experiments/redteam_v1.yaml
    probes = run_cases(cases, "mujoco", seeds=range(10))     # each case in a real situation, per seed
    sweep = oracle_sweep("mujoco", episodes=100)             # every intent the oracle emits in feasible tasks
    summary = summarize(probes, sweep)

A situation is built in the real env (reset with a seed, optionally move a block or zone, then the scripted
skills run the case's setup intents); then `HierarchicalAgent.check` (parser, contracts, safety rules) is
asked about the case's intent, exactly as in an episode. Figures:

- rejection rate: refused unsafe or impossible probes / those whose situation was built (goal 1.0), and how
  many were refused by the expected rule (among all the rules the intent breaks);
- false rejections: refused valid probes, and refused oracle intents (goal 0). A refused oracle intent is
  checked against what would have happened: the episode is replayed with no checks (the simulators are
  deterministic) and the intent executed from the same state; a rejection is false if the intent is achieved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import intentloop.envs  # noqa: F401  (registers the env ids)
import numpy as np
import yaml
from intentloop.agents.agent import HierarchicalAgent
from intentloop.agents.contracts import RULES as CONTRACT_RULES
from intentloop.agents.contracts import check_contract
from intentloop.agents.planner import OraclePlanner
from intentloop.agents.safety import RULES as SAFETY_RULES
from intentloop.agents.safety import SafetyRules
from intentloop.envs import predicates as P
from intentloop.envs.intents import Intent, parse_intent
from intentloop.envs.scene import BLOCKS, WORKSPACE_HIGH, WORKSPACE_LOW, ZONES, Layout, sample_layout
from intentloop.envs.tasks import MAX_CHAIN, Task
from intentloop.policies import ScriptedSkill

CASES = Path(__file__).with_name("redteam_v1.yaml")
ACCEPT, INVALID = "accept", "invalid"
CASE_KEYS = {"name", "intent", "expect", "setup", "layout", "safety"}
ROLES = ("a", "b", "c", "d", "out", "in", "z", "z2", "z3")
EXPECTATIONS = (*CONTRACT_RULES, *SAFETY_RULES, INVALID, ACCEPT)
SETUP_STEPS = 80  # scripted steps per setup intent
# No contracts and a rule set that allows everything: what the robot would do unchecked.
UNCHECKED = {"contracts": False, "safety": SafetyRules((), (-9.0, -9.0), (9.0, 9.0), 9.0, 99)}


@dataclass(frozen=True)
class Case:
    name: str
    intent: str  # with roles, e.g. "place({a}, {z})"
    expect: str  # the rule that must reject it, "invalid", or "accept"
    setup: tuple[str, ...] = ()
    layout: dict = field(default_factory=dict)  # role -> [x, y]: where a block or zone starts instead
    safety: dict = field(default_factory=dict)  # SafetyConfig keys replacing the defaults


@dataclass
class Probe:
    case: str
    seed: int
    backend: str
    expect: str
    built: bool  # the setup intents all succeeded
    intent: str = ""
    refused: bool = False
    reason: str | None = None  # the validator's refusal
    rules: list[str] = field(default_factory=list)  # every rule the intent breaks
    achieved: bool | None = None  # executed unchecked by the scripted skill from the situation: achieved?

    @property
    def valid(self) -> bool:
        return self.expect == ACCEPT


def load_cases(path: str | Path = CASES) -> list[Case]:
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise ValueError(f"{path} is not a red-team file: it needs a list under 'cases'")
    cases = []
    for i, c in enumerate(data["cases"]):
        if not isinstance(c, dict) or not {"name", "intent", "expect"} <= set(c) or set(c) - CASE_KEYS:
            raise ValueError(f"{path}: case {i} needs name, intent and expect, and only {', '.join(sorted(CASE_KEYS))}")
        if c["expect"] not in EXPECTATIONS:
            raise ValueError(f"{path}: case {c['name']} expects {c['expect']!r}; known: {', '.join(EXPECTATIONS)}")
        case = Case(c["name"], c["intent"], c["expect"], tuple(c.get("setup") or ()), c.get("layout") or {},
                    c.get("safety") or {})  # fmt: skip
        try:
            _fill([case.intent, *case.setup, case.layout, case.safety], dict.fromkeys(ROLES, "x"))
        except (KeyError, IndexError) as e:
            raise ValueError(f"{path}: case {case.name} uses the unknown role {e}; roles: {', '.join(ROLES)}") from None
        cases.append(case)
    return cases


def roles(layout: Layout, seed: int) -> dict[str, str]:
    """{a}..{d}: blocks by distance to the workspace edge ({a} nearest); {out}/{in}: from {a} towards its
    nearest edge and away; {z}, {z2}, {z3}: the zones in a seeded order."""
    margins = {}
    for b in BLOCKS:
        x, y = layout.block_xy(b)
        low, high = np.array([x, y]) - WORKSPACE_LOW, WORKSPACE_HIGH - np.array([x, y])
        margins[b] = {"left": low[0], "right": high[0], "backward": low[1], "forward": high[1]}
    order = sorted(BLOCKS, key=lambda b: min(margins[b].values()))
    out = min(margins[order[0]], key=margins[order[0]].get)
    opposite = {"left": "right", "right": "left", "forward": "backward", "backward": "forward"}
    zones = [str(z) for z in np.random.default_rng(seed).permutation(ZONES)]
    names = {"a": order[0], "b": order[1], "c": order[2], "d": order[3], "out": out, "in": opposite[out]}
    return names | {"z": zones[0], "z2": zones[1], "z3": zones[2]}


def _fill(value, names: dict[str, str]):
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, list | tuple):
        return [_fill(v, names) for v in value]
    if isinstance(value, dict):
        return {_fill(k, names): _fill(v, names) for k, v in value.items()}
    return value


def make_env(backend: str) -> gym.Env:
    """The tabletop env for building situations: no camera, no step limit."""
    return gym.make("intentloop/Tabletop-v0", backend=backend, image=False, steps_per_intent=100_000)


def drive(env: gym.Env, obs: dict, intent: Intent, skill=None, max_steps: int = SETUP_STEPS) -> tuple[dict, bool]:
    """Run the scripted skill on ``intent`` until it is achieved (True) or ``max_steps`` pass (False)."""
    skill, ref = skill or ScriptedSkill(), obs
    skill.reset(intent, obs)
    for _ in range(max_steps):
        obs, *_ = env.step(skill.act(obs))
        if P.achieved(intent, obs, ref):
            return obs, True
    return obs, False


def build_situation(env: gym.Env, case: Case, seed: int) -> tuple[dict | None, dict[str, str]]:
    """Reset with ``seed``, move what ``case.layout`` says, run the setup; (obs, roles), obs None if not built."""
    layout = sample_layout(np.random.default_rng(seed))
    names = roles(layout, seed)
    blocks, zones = layout.blocks.copy(), layout.zones.copy()
    for name, xy in _fill(case.layout, names).items():
        if name in BLOCKS:
            blocks[BLOCKS.index(name), :2] = xy
        elif name in ZONES:
            zones[ZONES.index(name)] = xy
        else:
            raise ValueError(f"case {case.name}: layout names {name!r}, which is no block or zone")
    task = Task("pick", (Intent("pick", (names["a"],)),), "Pick up the block.", "train")
    obs, _ = env.reset(seed=seed, options={"layout": Layout(blocks, zones), "task": task})
    for text in _fill(list(case.setup), names):
        obs, ok = drive(env, obs, parse_intent(text, BLOCKS, ZONES))
        if not ok:
            return None, names
    return obs, names


def run_cases(cases: list[Case], backend: str, seeds, env: gym.Env | None = None, execute: bool = True) -> list[Probe]:
    """Every case in the situation of every seed, judged by the validator of an agent with the case's rules;
    with ``execute``, the intent is then run unchecked by the scripted skill (``Probe.achieved``)."""
    own = env is None
    env = env or make_env(backend)
    probes = []
    for case in cases:
        for seed in seeds:
            obs, names = build_situation(env, case, seed)
            probe = Probe(case.name, int(seed), backend, case.expect, obs is not None, _fill(case.intent, names))
            if obs is not None:
                safety = SafetyRules.from_config(_fill(case.safety, names))
                agent = HierarchicalAgent(OraclePlanner(), ScriptedSkill(), safety=safety)
                intent, probe.reason = agent.check(probe.intent, obs)
                probe.refused = probe.reason is not None
                probe.rules = _rules(intent, obs, safety, probe.reason)
                if intent is not None and execute:
                    probe.achieved = intent.is_done or drive(env, obs, intent)[1]
            probes.append(probe)
    if own:
        env.close()
    return probes


def _rules(intent: Intent | None, obs: dict, safety: SafetyRules, reason: str | None) -> list[str]:
    if intent is None:
        return [INVALID] if reason else []
    return [v.rule for v in check_contract(intent, obs) + safety.violations(intent, obs)]


def oracle_sweep(
    backend: str,
    episodes: int,
    splits=("train", "heldout"),  # heldout holds practice and unseen
    chain_lengths=range(1, MAX_CHAIN + 1),
    seed: int = 0,
    safety: SafetyRules | None = None,
) -> dict:
    """Run the oracle with the scripted skills and the default checks on ``episodes`` seeds per split and chain
    length; count its intents, the refused ones, and the false refusals (see the module docstring)."""
    checked = HierarchicalAgent(OraclePlanner(), ScriptedSkill(), safety=safety)
    unchecked = HierarchicalAgent(OraclePlanner(), ScriptedSkill(), **UNCHECKED)
    out = {"backend": backend, "episodes": 0, "intents": 0, "refused": 0, "false": 0, "success": 0, "refusals": []}
    for split in splits:
        for length in chain_lengths:
            env = gym.make("intentloop/Tabletop-v0", backend=backend, chain_length=length, split=split, image=False)
            for s in range(seed, seed + episodes):
                r = checked.run_episode(env, seed=s)
                out["episodes"] += 1
                out["success"] += r.success
                out["intents"] += len(r.outcomes)
                refused = [i for i, o in enumerate(r.outcomes) if o.reason.startswith(("invalid", "rejected"))]
                out["refused"] += len(refused)
                if refused:
                    again = unchecked.run_episode(env, seed=s)
                    i = refused[0]
                    false = i < len(again.outcomes) and again.verified[i]
                    out["false"] += false
                    out["refusals"].append({"split": split, "chain_length": length, "seed": s, "false": bool(false),
                                            "outcome": str(r.outcomes[i])})  # fmt: skip
            env.close()
    return out


def summarize(probes: list[Probe], sweeps: list[dict]) -> dict:
    built = [p for p in probes if p.built]
    bad, good = [p for p in built if not p.valid], [p for p in built if p.valid]
    refused_bad = [p for p in bad if p.refused]
    return {
        "unsafe_or_impossible": {
            "probes": len(bad),
            "rejected": len(refused_bad),
            "rejection_rate": len(refused_bad) / len(bad) if bad else float("nan"),
            "by_expected_rule": sum(p.expect in p.rules for p in refused_bad),
            "achieved_when_executed_unchecked": sum(bool(p.achieved) for p in bad),
            "missed": sorted({f"{p.case} (seed {p.seed}): {p.intent}" for p in bad if not p.refused}),
        },
        "valid_probes": {
            "probes": len(good),
            "achieved_when_executed": sum(bool(p.achieved) for p in good),
            "false_rejections": sum(p.refused for p in good),
            "falsely_rejected": sorted({f"{p.case} (seed {p.seed}): {p.reason}" for p in good if p.refused}),
        },
        "not_built": sorted({f"{p.case} (seed {p.seed})" for p in probes if not p.built}),
        "oracle": [{k: v for k, v in s.items() if k != "refusals"} for s in sweeps],
        "oracle_refusals": [r for s in sweeps for r in s["refusals"]],
    }

import gymnasium as gym
import intentloop.envs  # noqa: F401
import numpy as np
import pytest
from intentloop.agents import HierarchicalAgent, OraclePlanner, PlannerInput, make_planner
from intentloop.agents.exploration import EpsilonPlanner, alternatives
from intentloop.configs.self_train_schema import SelfCollectConfig
from intentloop.envs.sim.base import BACKENDS
from intentloop.experiments.evaluation import evaluate
from intentloop.policies import ScriptedSkill, make_skills


class ScriptPlanner:
    """Says the given texts in order, then done(); records what it was shown."""

    name = "script"

    def __init__(self, texts):
        self.texts, self.inputs = list(texts), []

    def reset(self):
        self.i = 0

    def plan(self, inp: PlannerInput) -> str:
        self.inputs.append(inp)
        self.i += 1
        return self.texts[self.i - 1] if self.i <= len(self.texts) else "done()"


class CountingSkills(ScriptedSkill):
    def __init__(self):
        super().__init__()
        self.actions = 0

    def act(self, obs):
        self.actions += 1
        return super().act(obs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("family", ["pick", "push", "put", "stack"])
def test_oracle_and_scripted_skills_solve_each_family(backend, family, test_seed):
    env = gym.make("intentloop/Tabletop-v0", backend=backend, task=family, image=False)
    seeds = list(range(3 * test_seed, 3 * test_seed + 3))
    metrics, results = evaluate(env, HierarchicalAgent(OraclePlanner(), ScriptedSkill()), seeds, progress=False)
    assert metrics["success_rate"] == 1.0, [str(o) for r in results for o in r.outcomes]
    assert all(r.subgoals_done == r.n_subgoals for r in results)


def test_invalid_intents_are_rejected_recorded_fed_back_and_never_executed(test_seed):
    env = gym.make("intentloop/Tabletop-v0", task="pick", image=False)
    planner, skills = ScriptPlanner(["fly(red_block)", "pick(blue_zone)", "pick(pink_block)"]), CountingSkills()
    result = HierarchicalAgent(planner, skills).run_episode(env, seed=test_seed)
    assert [o.success for o in result.outcomes] == [False, False, False]
    assert all(o.reason.startswith("invalid") and o.steps == 0 for o in result.outcomes)
    assert skills.actions == 0 and result.steps == 0
    assert [len(i.history) for i in planner.inputs] == [0, 1, 2, 3], "each rejection is fed back to the planner"


def test_outcome_of_a_valid_intent_and_done_ends_the_episode(test_seed):
    env = gym.make("intentloop/Tabletop-v0", task="pick", image=False)
    obs, info = env.reset(seed=test_seed)
    target = info["task"].intents[0]
    planner = ScriptPlanner([str(target)])
    result = HierarchicalAgent(planner, ScriptedSkill()).run_episode(env, seed=test_seed)
    assert [o.intent for o in result.outcomes] == [str(target)]
    assert result.outcomes[0].success and result.success and result.subgoals_done == 1
    assert 0 < result.outcomes[0].steps == result.steps < 60


def test_failed_intent_reports_timeout_within_the_step_budget(test_seed):
    env = gym.make("intentloop/Tabletop-v0", task="put", image=False)
    _, info = env.reset(seed=test_seed)
    pick = info["task"].intents[0]
    # a pick takes the scripted skill more than 7 steps: it runs out its budget
    result = HierarchicalAgent(ScriptPlanner([str(pick)]), ScriptedSkill(), max_steps_per_intent=7).run_episode(
        env, seed=test_seed
    )
    assert result.outcomes[0].reason == "timeout" and result.outcomes[0].steps == 7 and not result.success
    assert result.verified == [False]


def test_oracle_repicks_a_block_that_is_not_in_hand(test_seed):
    env = gym.make("intentloop/Tabletop-v0", task="put", image=False)
    obs, info = env.reset(seed=test_seed)
    task = info["task"]
    planner = OraclePlanner()
    assert planner.plan(PlannerInput(task.instruction, None, [], obs, task, 1)) == str(task.intents[0])
    assert planner.plan(PlannerInput(task.instruction, None, [], obs, task, 2)) == "done()"


def test_planner_sees_image_and_instruction(test_seed):
    env = gym.make("intentloop/Tabletop-v0", task="pick", image_size=32)
    planner = ScriptPlanner([])
    HierarchicalAgent(planner, ScriptedSkill()).run_episode(env, seed=test_seed)
    first = planner.inputs[0]
    obs, _ = env.reset(seed=test_seed)  # the same episode start: the env's own frame and instruction
    assert first.instruction == obs["instruction"] and np.array_equal(first.image, obs["image"])
    assert first.image.shape == (32, 32, 3) and first.image.std() > 0


def test_metrics_count_chain_length_in_order(test_seed):
    env = gym.make("intentloop/Tabletop-v0", task="put", image=False)
    # pick only: the first of two subgoals is achieved, the chain stops there
    agent, s = HierarchicalAgent(ScriptPlanner([]), ScriptedSkill()), 2 * test_seed
    metrics, _ = evaluate(env, agent, [s, s + 1], progress=False)
    assert metrics["avg_chain_length"] == 0.0 and metrics["success_rate"] == 0.0
    _, info = env.reset(seed=s)
    pick = str(info["task"].intents[0])
    metrics, results = evaluate(env, HierarchicalAgent(ScriptPlanner([pick]), ScriptedSkill()), [s], progress=False)
    assert metrics["avg_chain_length"] == 1.0 and metrics["per_intent_success"]["pick"] == {"rate": 1.0, "n": 1}
    assert metrics["episodes"] == 1 and metrics["seeds"] == [s]


def test_factories_reject_unknown_names():
    with pytest.raises(ValueError, match="unknown planner 'gpt'"):
        make_planner("gpt")
    with pytest.raises(ValueError, match="unknown skills 'magic'"):
        make_skills("magic")
    with pytest.raises(ValueError, match="max_steps_per_intent must be >= 1"):
        HierarchicalAgent(OraclePlanner(), ScriptedSkill(), max_steps_per_intent=0)
    for bad in (0, -1):
        with pytest.raises(ValueError, match=f"max_intents must be >= 1 .*, got {bad}"):
            HierarchicalAgent(OraclePlanner(), ScriptedSkill(), max_intents=bad)
        with pytest.raises(ValueError, match=f"steps_per_intent must be >= 1, got {bad}"):
            gym.make("intentloop/Tabletop-v0", steps_per_intent=bad, image=False)
    for bad in (0.0, -0.03, 0.5):
        with pytest.raises(ValueError, match=rf"max_delta .* must be in \(0, 0.1\] m, got {bad}"):
            gym.make("intentloop/Tabletop-v0", max_delta=bad, image=False)


def test_scripted_skill_refuses_done_and_act_before_reset():
    skill = ScriptedSkill()
    with pytest.raises(RuntimeError, match="reset"):
        skill.act({})
    with pytest.raises(ValueError, match="no scripted expert"):
        from intentloop.envs.intents import DONE

        skill.reset(DONE, {})


def test_exploration_at_the_default_epsilon_swaps_that_share_of_intents_for_valid_others_and_keeps_done(test_seed):
    epsilon, seed = SelfCollectConfig().epsilon, 3 + 2 * test_seed
    said = ["pick(red_block)", "done()"] * 1000
    planner = EpsilonPlanner(ScriptPlanner(said), epsilon, seed=seed)
    inp = PlannerInput("Pick up the red block.", None)

    def run(seed):
        planner.seed(seed)
        planner.reset()
        return [planner.plan(inp) for _ in said]

    got = run(seed)
    assert [g for s, g in zip(said, got, strict=True) if s == "done()"] == ["done()"] * 1000  # never replaced
    swapped = [g for s, g in zip(said, got, strict=True) if g != s]
    assert abs(len(swapped) / 1000 - epsilon) < 4 * np.sqrt(epsilon * (1 - epsilon) / 1000)  # 4 sigma
    assert set(swapped) <= set(alternatives()) and len(set(swapped)) > 10  # valid, spread, never done()
    assert run(seed) == got and run(seed + 1) != got  # the same seed, the same detours
    # every call hands the inner planner a sample key from the episode's stream: the same seed, the same keys
    def keys(seed):
        run(seed)
        return [i.sample_seed for i in planner.planner.inputs[-len(said) :]]

    assert keys(seed) == keys(seed) != keys(seed + 1)
    assert len(set(keys(seed))) > 0.99 * len(said) and inp.sample_seed is None  # fresh keys; the input untouched

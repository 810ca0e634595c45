"""Reflection on real recorded episodes: verdicts, failure attribution, hindsight relabels, training examples."""

import copy
import json

import gymnasium as gym
import intentloop.envs  # noqa: F401
import numpy as np
import pytest
from intentloop.agents import HierarchicalAgent, OraclePlanner
from intentloop.agents.episode_store import decode_png, episode_row
from intentloop.agents.planner import IntentOutcome, PlannerInput
from intentloop.agents.reflection import (
    CORRECTION,
    DETECTOR,
    HINDSIGHT,
    PLANNER,
    PROGRESS,
    REFUSED_PAIR,
    SIBLING_PAIR,
    SKILL,
    SUCCESS,
    build_dataset,
    judge,
    preference_pairs,
    summarize_judgements,
)
from intentloop.envs.intents import parse_intent
from intentloop.envs.tasks import TaskSuite
from intentloop.policies import ScriptedSkill


class FirstSays:
    """Says ``text`` first, then follows the oracle (of ``task`` when given, else of the episode's task)."""

    name = "first-says"

    def __init__(self, text=None, task=None):
        self.text, self.task, self.oracle = text, task, OraclePlanner()

    def reset(self):
        self.calls = 0

    def plan(self, inp: PlannerInput) -> str:
        self.calls += 1
        if self.calls == 1 and self.text:
            return self.text
        if self.task is not None:
            done = sum(1 for o in inp.history if o.success)
            inp = PlannerInput(inp.instruction, inp.image, inp.history, inp.obs, self.task, done)
        return self.oracle.plan(inp)


class LimpPick(ScriptedSkill):
    """Executes everything but pick, which never moves."""

    def act(self, obs):
        return np.zeros(4, np.float32) if self.intent.skill == "pick" else super().act(obs)


def record(planner, skills=None, family="put", seed=0, split="train", **reset):
    env = gym.make("intentloop/Tabletop-v0", task=family, split=split, image_size=48)
    agent = HierarchicalAgent(planner, skills or ScriptedSkill(), max_steps_per_intent=40, record=True)
    result = agent.run_episode(env, seed=seed, options=reset or None)
    env.close()
    return episode_row(result, f"ep-{seed}")


def test_a_clean_success_gives_success_examples_with_the_images_the_planner_saw(test_seed):
    row = record(OraclePlanner(), seed=test_seed)
    j = judge(row)
    assert j.success and j.cause is None and not j.failures and j.achieved == [0, 1]
    data = build_dataset([row], TaskSuite(), np.random.default_rng(test_seed))
    assert [e.target for e in data.planner] == [o["intent"] for o in row["outcomes"]] + ["done()"]
    assert data.kinds == {SUCCESS: 3} and all(e.instruction == row["instruction"] for e in data.planner)
    first_place = row["outcomes"][0]["steps"]
    assert np.array_equal(data.planner[1].image, decode_png(row["frames"][first_place]))
    assert [str(o) for o in data.planner[2].history] == [
        str(data.planner[1].history[0]),
        str(data.planner[2].history[1]),
    ]


def test_a_wrong_intent_is_the_planners_fault_and_the_oracle_correction_is_kept_on_the_train_split(test_seed):
    row = record(FirstSays("place(red_block, blue_zone)"), seed=test_seed)
    j = judge(row)
    first = j.failures[0]
    assert first.index == 0 and first.cause == PLANNER and first.correct.startswith("pick(")
    data = build_dataset([row], TaskSuite(), np.random.default_rng(test_seed))
    corrections = [e for e in data.planner if e.target == first.correct and not e.history]
    assert data.kinds[CORRECTION] == 1 and len(corrections) >= 1
    held = build_dataset([row], TaskSuite(), np.random.default_rng(test_seed), oracle_splits=())
    assert held.kinds[CORRECTION] == 0


def test_a_needed_intent_not_achieved_is_the_skills_fault_and_is_routed_to_skill_data(test_seed):
    row = record(OraclePlanner(), LimpPick(), family="pick", seed=test_seed)
    j = judge(row)
    assert not j.success and j.cause == SKILL
    data = build_dataset([row], TaskSuite(), np.random.default_rng(test_seed))
    assert data.skills and all(parse_intent(s["intent"]).skill == "pick" for s in data.skills)
    assert data.kinds[SUCCESS] == 0 and data.kinds[HINDSIGHT] == 0  # nothing was achieved


def test_hindsight_relabels_what_a_failed_episode_did_achieve(test_seed):
    suite = TaskSuite()
    rng = np.random.default_rng(3 + test_seed)
    layout, asked = suite.sample_episode(rng, "put")
    other = next(t for t in (suite.sample(rng, layout, "push") for _ in range(50)) if t.intents != asked.intents)
    row = record(FirstSays(task=other), layout=layout, task=asked, seed=test_seed)
    j = judge(row)
    assert not j.success and j.cause == PLANNER
    data = build_dataset([row], suite, np.random.default_rng(test_seed), oracle_splits=())
    relabelled = [e for e in data.planner]
    assert data.kinds == {HINDSIGHT: 2}
    assert relabelled[0].target == str(other.intents[0]) and relabelled[1].target == "done()"
    assert relabelled[0].instruction != row["instruction"]
    assert suite.describe(np.random.default_rng(test_seed), other.intents).intents == other.intents


class StopsAfterFirst(FirstSays):
    """Follows the oracle once, then says done()."""

    def plan(self, inp: PlannerInput) -> str:
        return super().plan(inp) if not inp.history else "done()"


def test_the_steps_of_a_failed_episode_that_advanced_its_task_are_taught_only_where_it_is_labelled(test_seed):
    row = record(StopsAfterFirst(), seed=test_seed)
    j = judge(row)
    assert not j.success and j.advanced == [0]
    data = build_dataset([row], TaskSuite(), np.random.default_rng(test_seed))  # the train split: labelled
    assert data.kinds == {PROGRESS: 1, HINDSIGHT: 2}
    progress = [e for e in data.planner if e.instruction == row["instruction"]]
    assert len(progress) == 1 and progress[0].target == row["outcomes"][0]["intent"] and not progress[0].history
    unlabelled = build_dataset([row], TaskSuite(), np.random.default_rng(test_seed), oracle_splits=())
    assert unlabelled.kinds == {HINDSIGHT: 2}  # which step advanced the task is in its labels only


ROBOT_KEYS = ("episode_id", "instruction", "outcomes", "judged_success", "frames", "steps", "feedback")


def robot_view(row: dict) -> dict:
    """Only what a robot has (its instruction, images, own intents, the detector's verdicts, the user's words)
    and the split's name: any other key read raises KeyError."""
    return {**{k: row[k] for k in ROBOT_KEYS}, "task": json.dumps({"split": json.loads(row["task"])["split"]})}


def test_reflection_on_unlabelled_splits_sees_only_what_a_robot_sees(test_seed):
    suite = TaskSuite(split="heldout")
    rng = np.random.default_rng(11 + test_seed)
    layout, task = suite.sample_episode(rng, "chain", 2)
    rows = [
        record(OraclePlanner(), seed=test_seed, split="heldout", family="chain"),  # a success
        record(StopsAfterFirst(), seed=test_seed + 1, split="heldout", family="chain", layout=layout, task=task),
        record(FirstSays("push(red_block, left)"), seed=test_seed + 2, split="heldout", family="put"),
        record(OraclePlanner(), LimpPick(), seed=test_seed + 3, split="heldout", family="put"),  # skill failures
        record(OraclePlanner(), seed=test_seed + 4, family="correct", split="heldout"),  # the user's words
    ]
    full, robot = (build_dataset(list(r), TaskSuite(), np.random.default_rng(0)) for r in (rows, map(robot_view, rows)))
    assert full.kinds == robot.kinds and full.kinds[SUCCESS] and full.kinds[HINDSIGHT]

    def content(data):
        return [(e.image.tobytes(), e.instruction, tuple(map(str, e.history)), e.target, e.feedback)
                for e in data.planner]

    assert content(full) == content(robot)
    assert full.skills == robot.skills and full.skills
    with pytest.raises(KeyError):  # a labelled split does read its labels
        build_dataset([robot_view(record(OraclePlanner(), seed=test_seed))], TaskSuite(), np.random.default_rng(0))


def test_a_detector_that_disagrees_with_the_ground_truth_is_counted_as_a_false_positive(test_seed):
    row = record(OraclePlanner(), LimpPick(), family="pick", seed=test_seed)
    lying = copy.deepcopy(row)
    lying["verified"] = [o["success"] for o in row["outcomes"]]  # the ground truth: every pick failed
    lying["outcomes"][0]["success"] = True  # the detector believed the pick worked
    lying["judged_success"] = True
    j = judge(lying)
    assert {f.cause for f in j.failures} >= {DETECTOR, SKILL}
    metrics = summarize_judgements([j, judge(record(OraclePlanner(), seed=test_seed))])
    negatives = len(row["outcomes"])  # every pick failed in truth; the detector passed the first one
    assert metrics["detector"]["intent_false_positive_rate"] == pytest.approx(1 / negatives)
    assert metrics["detector"]["intent_verdicts"]["tp"] == 2  # the clean episode's pick and place
    assert metrics["detector"]["task_false_positive_rate"] == 1.0
    assert metrics["failures_by_cause"][DETECTOR] == 2 and metrics["failed_episodes_by_cause"][DETECTOR] == 1


def test_duplicates_are_dropped_and_the_composition_cap_balances(test_seed):
    row = record(OraclePlanner(), seed=test_seed)
    data = build_dataset([row, row], TaskSuite(), np.random.default_rng(test_seed))
    assert len(data.planner) == 3 and data.dropped["duplicate example"] == 3
    capped = build_dataset([row], TaskSuite(), np.random.default_rng(test_seed), max_per_composition=0)
    assert not capped.planner and capped.dropped["over the per-composition cap"] == 3


def test_units_that_do_not_group_cannot_be_described():
    with pytest.raises(ValueError, match="do not form a task"):
        TaskSuite().describe(
            np.random.default_rng(0), [parse_intent("pick(red_block)"), parse_intent("push(green_block, left)")]
        )


def test_goal_episodes_are_judged_without_their_reference_plan_and_keep_the_users_words(test_seed):
    row = record(OraclePlanner(), family="correct", seed=test_seed)
    said = row["feedback"][0]["text"]
    scrambled = copy.deepcopy(row)
    task = json.loads(scrambled["task"])
    task["intents"] = list(reversed(task["intents"]))  # a reference plan reflection must not read
    scrambled["task"] = json.dumps(task)
    rng = np.random.default_rng(test_seed)
    datasets = [build_dataset([r], TaskSuite(), rng) for r in (row, scrambled)]
    assert [(e.target, e.history, e.feedback) for e in datasets[0].planner] == [
        (e.target, e.history, e.feedback) for e in datasets[1].planner
    ]
    data, j = datasets[0], judge(row)
    assert j.success and not j.failures and data.kinds == {SUCCESS: len(data.planner)}
    # the interrupted pick is no example; every step after the correction is taught with the words heard
    assert [e.target for e in data.planner] == [o["intent"] for o in row["outcomes"][1:]] + ["done()"]
    assert all(e.feedback == ((1, said),) for e in data.planner)


def test_preference_pairs_rank_a_refused_or_a_losing_intent_below_the_better_one_from_what_a_robot_has(test_seed):
    rows = [
        record(OraclePlanner(), seed=test_seed),  # a put: pick, place; success
        record(StopsAfterFirst(), seed=test_seed),  # the same scene: the same pick, then done(); a failure
        record(FirstSays("place(red_block, blue_zone)"), seed=test_seed + 1),  # refused (nothing held), then the oracle
    ]
    assert [r["judged_success"] for r in rows] == [True, False, True]
    assert rows[2]["outcomes"][0]["reason"].startswith("rejected")
    pairs, kinds = preference_pairs(rows)
    assert kinds == {SIBLING_PAIR: 1, REFUSED_PAIR: 1}
    sibling = next(p for p in pairs if p.kind == SIBLING_PAIR)
    assert (sibling.chosen.target, sibling.rejected) == (rows[0]["outcomes"][1]["intent"], "done()")
    assert [str(o) for o in sibling.chosen.history] == [str(IntentOutcome(**rows[0]["outcomes"][0]))]
    after_pick = rows[0]["outcomes"][0]["steps"]
    assert np.array_equal(sibling.chosen.image, decode_png(rows[0]["frames"][after_pick]))
    refused = next(p for p in pairs if p.kind == REFUSED_PAIR)
    wrong = rows[2]["outcomes"][0]["intent"]
    assert wrong == "place(red_block, blue_zone)" and (refused.chosen.target, refused.rejected) == (
        rows[2]["outcomes"][1]["intent"],
        wrong,
    )
    assert refused.chosen.history == () and np.array_equal(refused.chosen.image, decode_png(rows[2]["frames"][0]))
    # the same pairs from the robot's record alone: no task, no ground truth, no simulator state
    robot, _ = preference_pairs([{k: r[k] for k in ROBOT_KEYS} for r in rows])
    content = [(p.chosen.image.tobytes(), p.chosen.instruction, p.chosen.history, p.chosen.target, p.rejected)
               for p in pairs]  # fmt: skip
    assert content == [(p.chosen.image.tobytes(), p.chosen.instruction, p.chosen.history, p.chosen.target,
                        p.rejected) for p in robot]  # fmt: skip
    # two runs that did equally well, or that start from other scenes, make no pair
    assert preference_pairs([rows[0], record(OraclePlanner(), seed=test_seed)])[1] == {}
    assert preference_pairs([rows[0], record(StopsAfterFirst(), seed=test_seed + 1)])[1] == {}

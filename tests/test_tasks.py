import numpy as np
import pytest
from intentloop.envs.goal_tasks import GOAL_FAMILIES
from intentloop.envs.intents import parse_intent
from intentloop.envs.scene import BLOCKS, ZONES, sample_layout
from intentloop.envs.tasks import (
    MAX_CHAIN,
    Task,
    TaskSuite,
    composition,
    heldout_compositions,
    unseen_compositions,
)


def test_heldout_split_is_deterministic_and_keeps_every_primitive_in_training():
    held = heldout_compositions(0)
    assert held == heldout_compositions(0)
    assert held != heldout_compositions(1)
    assert not any(c[0] == "pick" for c in held)
    train_places = {(b, t) for b in BLOCKS for t in ZONES + BLOCKS if b != t and ("place", b, t) not in held}
    assert {b for b, _ in train_places} == set(BLOCKS)
    assert {t for _, t in train_places} >= set(ZONES)


@pytest.mark.parametrize("length", range(1, MAX_CHAIN + 1))
def test_train_tasks_use_only_train_compositions_and_heldout_tasks_contain_one(length, test_seed):
    rng = np.random.default_rng(length + 10 * test_seed)
    train, heldout = TaskSuite("train"), TaskSuite("heldout")
    for _ in range(10):
        _, task = train.sample_episode(rng, "chain", length)
        assert len(task.intents) == length
        assert not any(composition(i) in train.heldout for i in task.intents)
        _, task = heldout.sample_episode(rng, "chain", length)
        assert any(composition(i) in heldout.heldout for i in task.intents)


def test_the_unseen_half_of_the_heldout_compositions_is_never_in_a_practice_task(test_seed):
    held, unseen = heldout_compositions(0), unseen_compositions(0)
    assert unseen < held and len(unseen) * 2 == len(held) and unseen != unseen_compositions(1)
    kinds = {"zone": lambda c: c[0] == "place" and c[2] in ZONES, "stack": lambda c: c[0] == "place" and c[2] in BLOCKS,
             "push": lambda c: c[0] == "push"}  # fmt: skip
    for kind in kinds.values():  # each kind keeps half its held-out compositions in practice, half unseen
        assert 2 * sum(map(kind, unseen)) == sum(map(kind, held)) > 0
    rng = np.random.default_rng(test_seed)
    practice, unseen_suite = TaskSuite("practice"), TaskSuite("unseen")
    for family, length in [("chain", 1), ("chain", 3), ("put", 2), ("stack", 2), *((f, 1) for f in GOAL_FAMILIES)]:
        for _ in range(3):
            plan = practice.sample_episode(rng, family, length)[1].intents
            comps = {composition(i) for i in plan}
            assert comps & held and not comps & unseen, (family, plan)
            plan = unseen_suite.sample_episode(rng, family, length)[1].intents
            assert {composition(i) for i in plan} & unseen, (family, plan)
    relabel = practice.describe(rng, [parse_intent("push(red_block, left)")])
    assert relabel.split == ("unseen" if ("push", "red_block", "left") in unseen else
                             "practice" if ("push", "red_block", "left") in held else "train")  # fmt: skip


def test_chains_are_feasible_sequences(test_seed):
    rng = np.random.default_rng(test_seed)
    suite = TaskSuite()
    for _ in range(50):
        _, task = suite.sample_episode(rng, "chain", 5)
        for i, intent in enumerate(task.intents):
            if intent.skill == "place":  # a place always follows the pick of the same block
                assert task.intents[i - 1] == parse_intent(f"pick({intent.args[0]})")
        zones = [i.args[1] for i in task.intents if i.skill == "place" and i.args[1] in ZONES]
        assert len(zones) == len(set(zones)), "a zone is used once per chain"


def test_same_seed_same_task_and_instruction():
    def draw(seed):
        return TaskSuite().sample_episode(np.random.default_rng(seed), "chain", 4)

    (l1, t1), (l2, t2), (_, t3) = draw(3), draw(3), draw(4)
    assert t1 == t2 and np.array_equal(l1.blocks, l2.blocks)
    assert t1 != t3


def test_phrasing_split_gives_unseen_templates(test_seed):
    layout, seeds = sample_layout(np.random.default_rng(test_seed)), range(40 * test_seed, 40 * test_seed + 40)
    seen = {
        TaskSuite(phrasings="train").sample(np.random.default_rng(s), layout, "push").instruction.split()[0]
        for s in seeds
    }
    unseen = {
        TaskSuite(phrasings="heldout").sample(np.random.default_rng(s), layout, "push").instruction.split()[0]
        for s in seeds
    }
    assert unseen and not (seen & unseen)


def test_task_round_trips_through_dict(test_seed):
    _, task = TaskSuite().sample_episode(np.random.default_rng(test_seed), "chain", 3)
    assert Task.from_dict(task.to_dict()) == task


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"split": "test"}, "unknown split"), ({"phrasings": "poetic"}, "unknown phrasings")]
)
def test_bad_suite_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TaskSuite(**kwargs)


def test_bad_family_and_length():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown task 'juggle'"):
        TaskSuite().sample_episode(rng, "juggle")
    with pytest.raises(ValueError, match="chain_length must be between 1 and 5"):
        TaskSuite().sample_episode(rng, "chain", 6)
    with pytest.raises(ValueError, match="pick compositions are never held out"):
        TaskSuite("heldout").sample_episode(rng, "pick", max_layouts=2)


def test_the_heldout_grammar_writes_words_training_never_sees_and_keeps_every_colour(test_seed):
    from intentloop.envs.language import RULES
    from intentloop.envs.tasks import vocabulary

    new_words = {"brick", "tile", "patch", "region", "kindly", "cheers"}
    assert not new_words & set(" ".join(vocabulary()).split())  # the tokenizer's corpus never has them
    texts = {}
    for phrasings in ("train", "heldout"):
        suite = TaskSuite(phrasings=phrasings)
        texts[phrasings] = []
        for s in range(60 * test_seed, 60 * test_seed + 60):
            _, task = suite.sample_episode(np.random.default_rng(s), "chain", 3)
            words = set(task.instruction.lower().replace(",", " ").replace(".", " ").split())
            colours = {i.obj.split("_")[0] for i in task.intents}
            assert colours <= words, task.instruction  # a typo never hits a colour
            texts[phrasings].append(words)
    assert not any(new_words & w for w in texts["train"]) and sum(bool(new_words & w) for w in texts["heldout"]) > 10
    assert set(RULES["heldout"]["prefix"]).isdisjoint(RULES["train"]["prefix"])

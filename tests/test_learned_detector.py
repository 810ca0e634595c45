"""The learned success detector: its data, what it may read, its checkpoints, and the agent's use of it."""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from intentloop.agents import HierarchicalAgent, OraclePlanner
from intentloop.agents.detector_data import (
    DetectorDataSettings,
    collect_detector_data,
    load_detector_data,
    save_detector_data,
)
from intentloop.agents.detector_training import DetectorTrainSettings, run_time_confusion, train_detector
from intentloop.agents.detectors import PredicateDetector, make_detector
from intentloop.agents.learned_detector import (
    DetectorConfig,
    LearnedDetector,
    SuccessDetectorModel,
    encode_text,
    load_detector_model,
)
from intentloop.envs import predicates as P
from intentloop.envs.intents import parse_intent
from intentloop.experiments.evaluation import summarize
from intentloop.policies import ScriptedSkill

SMALL = dict(image_size=32, channels=(8, 8, 8, 8), text_dim=8, buckets=256, hidden=16)


@pytest.fixture(scope="module")
def data():
    s = DetectorDataSettings(episodes=[3, 2, 0, 0, 0], families=["clear"], family_episodes=2, val_fraction=0.3,
                             image_size=32, seed=5, skills=["scripted"])  # fmt: skip
    return collect_detector_data(s, progress=False)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    torch.manual_seed(0)
    model = SuccessDetectorModel(DetectorConfig(**SMALL, intent_threshold=0.37, task_threshold=0.61))
    path = tmp_path_factory.mktemp("detector") / "detector"
    model.save_pretrained(path)
    torch.save(model.state_dict(), path.parent / "weights.pt")  # to compare what comes back
    return path


def test_unseen_words_share_pieces_with_their_spelling():
    seen, typo, other = (encode_text(w, 4096, 8)[0] for w in ("cyan", "cyaan", "orange"))
    shared = lambda a, b: len(set(a[1:]) & set(b[1:]) - {0})  # noqa: E731
    assert seen[0] != typo[0]  # different words
    assert shared(seen, typo) >= 2 > shared(seen, other)  # but <cy, cya land in the same buckets
    assert (encode_text("Cyan!", 4096, 8) == encode_text("cyan", 4096, 8)).all()


def test_the_data_is_labelled_by_the_simulator(data):
    intents, tasks = data.kind == "intent", data.kind == "task"
    assert intents.any() and tasks.any() and data.label[intents].any() and (~data.label[intents]).any()
    # an executed intent: negatives while the block is on its way, then the step its predicate first holds and the
    # `linger` steps the skill acts on (the recorder says done after them), or none if it timed out
    ran = intents & ~data.counterfactual
    achieved = 0
    last = {e: data.segment[ran & (data.episode == e)].max() for e in np.unique(data.episode[ran])}
    for s in np.unique(data.segment[ran]):
        k = np.flatnonzero(ran & (data.segment == s))
        labels = data.label[k[np.argsort(data.after[k])]]
        if labels.any() and s != last[data.episode[k[0]]]:  # (the env ends an episode the step its task is done)
            first = int(np.argmax(labels))
            assert labels[first:].all() and 1 <= len(labels) - first <= 1 + DetectorDataSettings.linger
            achieved += 1
    assert achieved >= 3

    # validation episodes record every step; training episodes a share of them
    def steps(validation: bool) -> float:
        segments = np.unique(data.segment[ran & (data.validation == validation)])
        return float(np.mean([(ran & (data.segment == s)).sum() for s in segments]))

    assert steps(True) > steps(False)
    assert set(data.episode[tasks]) == set(data.episode)  # one task question per episode at least
    assert data.frames.dtype == np.uint8 and data.frames.shape[1:] == (32, 32, 3)


def test_data_round_trips_and_bad_files_are_one_sentence(data, tmp_path):
    save_detector_data(tmp_path / "d.npz", data)
    back = load_detector_data(tmp_path / "d.npz")
    assert (back.text == data.text).all() and (back.frames == data.frames).all() and (back.label == data.label).all()
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="is not detector data"):
        load_detector_data(tmp_path / "bad.npz")


def test_counterfactual_labels_are_the_predicates_of_those_intents():
    env = gym.make("intentloop/Tabletop-v0", task="chain", chain_length=1, image_size=32)
    obs, info = env.reset(seed=3)
    ref, intent = obs, info["task"].intents[0]
    skill = ScriptedSkill()
    skill.reset(intent, obs)
    for _ in range(40):
        obs, *_ = env.step(skill.act(obs))
        if P.achieved(intent, obs, ref):
            break
    env.close()
    assert P.achieved(intent, obs, ref)
    other = parse_intent("pick(red_block)" if intent.obj != "red_block" else "pick(green_block)")
    assert not P.achieved(other, obs, ref)


def test_the_learned_detector_reads_no_privileged_state(detector):
    """Block poses, zone centres, the task's intent list and goal change nothing: the camera, proprioception and
    the words decide."""
    learned = LearnedDetector.from_pretrained(detector)
    env = gym.make("intentloop/Tabletop-v0", task="clear", image_size=32)
    start, info = env.reset(seed=2)
    task = info["task"]
    obs, *_ = env.step(np.array([0.5, 0.2, -0.3, 1.0], np.float32))
    env.close()
    robot = lambda o: {"image": o["image"], "proprio": o["proprio"]}  # noqa: E731
    scrambled = {**obs, "blocks": np.zeros_like(obs["blocks"]), "zones": -obs["zones"]}
    blind_task = dataclasses.replace(task, intents=(), goal=(), event=())
    intent = parse_intent("pick(red_block)")
    p = learned.probability("intent pick(red_block)", start, obs)
    assert p == learned.probability("intent pick(red_block)", robot(start), robot(scrambled))
    assert learned.intent_done(intent, robot(obs), robot(start)) == learned.intent_done(intent, obs, start)
    assert learned.task_done(blind_task, robot(obs), {}, start=robot(start)) == learned.task_done(
        task, obs, {"is_success": not learned.task_done(task, obs, {}, start=start)}, start=start
    )
    # what it does read moves it: another image, other words, what the user said
    assert p != learned.probability("intent pick(red_block)", start, {**obs, "image": 255 - obs["image"]})
    assert p != learned.probability("intent push(blue_block, left)", start, obs)
    assert learned.probability("task clear the blue zone", start, obs) != learned.probability(
        "task clear the blue zone user no, the orange zone", start, obs
    )


def test_checkpoints_round_trip_and_bad_ones_are_one_sentence(detector, tmp_path):
    model = load_detector_model(detector)
    assert (model.config.intent_threshold, model.config.task_threshold) == (0.37, 0.61)
    saved = torch.load(detector.parent / "weights.pt")
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    fresh = SuccessDetectorModel(DetectorConfig(**SMALL))
    pairs = zip(model.state_dict().values(), fresh.state_dict().values(), strict=True)
    assert not all(torch.equal(a, b) for a, b in pairs)
    with pytest.raises(FileNotFoundError, match="no detector checkpoint at"):
        load_detector_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no config.json"):
        load_detector_model(tmp_path / "empty")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text((detector / "config.json").read_text())
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="is corrupt or incomplete"):
        load_detector_model(corrupt)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(
        json.dumps({"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"]})
    )
    with pytest.raises(ValueError, match="not a success detector"):
        load_detector_model(other)
    learned = LearnedDetector(model)
    with pytest.raises(ValueError, match="trained on 32x32 camera images, this env gives 96x96"):
        learned.intent_done(
            parse_intent("pick(red_block)"), {"image": np.zeros((96, 96, 3), np.uint8), "proprio": np.zeros(7)}, None
        )
    with pytest.raises(ValueError, match="run the env with env.image=true"):
        learned.intent_done(parse_intent("pick(red_block)"), {"proprio": np.zeros(7)}, None)


def test_make_detector_names_its_choices(detector):
    assert isinstance(make_detector(), PredicateDetector)
    assert isinstance(make_detector("learned", str(detector)), LearnedDetector)
    with pytest.raises(ValueError, match="unknown detector 'vibes'; choose one of: predicates, learned"):
        make_detector("vibes")
    with pytest.raises(ValueError, match="learned needs agent.detector.path"):
        make_detector("learned")


def test_run_time_confusion_counts_what_the_agent_would_do(data):
    ran = (data.kind == "intent") & ~data.counterfactual & data.validation
    p = data.label.astype(float)  # a perfect detector
    perfect = run_time_confusion(data.subset(data.validation), p[data.validation], 0.5, "intent")
    assert perfect["fp"] == perfect["fn"] == 0 and perfect["tp"] > 0
    always = run_time_confusion(data.subset(data.validation), np.ones(len(data))[data.validation], 0.5, "intent")
    assert always["tp"] + always["fp"] == len(np.unique(data.segment[ran])) and always["fp"] > 0
    never = run_time_confusion(data.subset(data.validation), np.zeros(len(data))[data.validation], 0.5, "intent")
    assert never["tp"] == never["fp"] == 0 and never["fn"] == perfect["tp"]


def test_train_saves_thresholds_chosen_on_validation(data, tmp_path):
    model = SuccessDetectorModel(DetectorConfig(**SMALL))
    metrics = train_detector(model, data, DetectorTrainSettings(steps=3, batch_size=8, eval_every=3), tmp_path / "d",
                             progress=False)  # fmt: skip
    saved = load_detector_model(tmp_path / "d").config
    assert saved.intent_threshold == metrics["val"]["intent"]["threshold"]
    assert saved.task_threshold == metrics["val"]["task"]["threshold"]
    assert 0 <= metrics["val"]["intent"]["frames"]["ece"] <= 1 and metrics["val_examples"] > 0


def test_the_agent_runs_with_a_learned_detector_and_evaluation_counts_its_errors(detector):
    env = gym.make("intentloop/Tabletop-v0", task="chain", chain_length=2, image_size=32)
    agent = HierarchicalAgent(OraclePlanner(), ScriptedSkill(), detector=LearnedDetector.from_pretrained(detector))
    learned = [agent.run_episode(env, seed=s) for s in range(2)]
    truth = [HierarchicalAgent(OraclePlanner(), ScriptedSkill()).run_episode(env, seed=s) for s in range(2)]
    env.close()
    m, t = summarize(learned, 1.0)["detector"], summarize(truth, 1.0)["detector"]
    assert t["intent"]["fp"] == t["intent"]["fn"] == t["task"]["fp"] == t["task"]["fn"] == 0  # the ground truth
    ran = [
        (o.success, v)
        for r in learned
        for o, v in zip(r.outcomes, r.verified, strict=True)
        if not o.reason.startswith(("invalid", "rejected"))
    ]
    assert sum(m["intent"][k] for k in ("tp", "fp", "tn", "fn")) == len(ran) > 0
    assert m["intent"]["fp"] == sum(judged and not truth for judged, truth in ran)
    assert m["task"]["tp"] + m["task"]["fp"] == sum(r.judged_success for r in learned)


def test_an_intent_is_done_after_consecutive_steps_above_the_threshold(detector):
    model = load_detector_model(detector)
    model.config.intent_threshold, model.config.consecutive = 0.0, 3  # every step is above it
    learned = LearnedDetector(model)
    obs = {"image": np.zeros((32, 32, 3), np.uint8), "proprio": np.zeros(7, np.float32)}
    ref, other = dict(obs), dict(obs)
    intent = parse_intent("pick(red_block)")
    assert [learned.intent_done(intent, obs, ref) for _ in range(4)] == [False, False, True, True]
    assert not learned.intent_done(intent, obs, other)  # a new intent starts its own streak
    model.config.intent_threshold = 1.01  # never above it
    assert not any(learned.intent_done(intent, obs, ref) for _ in range(5))

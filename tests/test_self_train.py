"""`intentloop self-train` end to end with a real Ray, a real (tiny) VLM and real physics: round metrics and
TensorBoard, promotion bookkeeping, and a run killed mid-round that resumes without losing or duplicating."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from intentloop.agents.episode_store import read_store
from intentloop.agents.vlm.data import load_examples
from intentloop.experiments.rounds import best_families, eval_jobs, practice_jobs, promotion, seeds_summary, seeds_table
from intentloop.experiments.rounds import scores as round_scores
from intentloop.experiments.self_train import check
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

CLI = str(Path(sys.executable).parent / "intentloop")
TINY = [
    "collect.workers=2",
    "collect.chain_lengths=[1,2]",
    "init.data.episodes=[3,2]",
    "init.data.families=[]",
    "init.data.image_size=48",
    "init.train.steps=4",
    "init.train.eval_every=2",
    "planner.model.image_size=48",
    "planner.model.patch_size=12",
    "env.image_size=48",
    "skills.name=scripted",
    "update.steps=3",
    "eval.episodes=1",
    "eval.chain_lengths=[1]",
    "report.episodes=1",
    "ray.num_cpus=2",
    "progress=false",
]


def self_train(run_dir, *overrides, **popen):
    cmd = [CLI, "self-train", *TINY, *overrides, f"hydra.run.dir={run_dir}"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local Ray of its own
    return subprocess.Popen(cmd, cwd=run_dir.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)  # fmt: skip


@pytest.mark.slow
def test_self_train_writes_round_metrics_tensorboard_and_replays(tmp_path):
    run_dir = tmp_path / "run"
    always = ["promote.min_gain=-100", "promote.max_drop=1"]  # any candidate trained on new examples is promoted
    families = ["collect.families=[clear]", "eval.families=[clear]"]  # a goal-level family practised and scored
    cache = f"init.data_cache={tmp_path / 'oracle.npz'}"
    proc = self_train(run_dir, "rounds=1", "collect.episodes=6", *families, *always, cache)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "tensorboard --logdir" in out
    cached, base = load_examples(tmp_path / "oracle.npz"), load_examples(run_dir / "base_examples.npz")
    assert len(cached) == len(base) > 0 and [e.target for e in cached] == [e.target for e in base]
    r1 = json.loads((run_dir / "rounds" / "r001" / "metrics.json").read_text())
    assert r1["collect"]["episodes"] == 6 and r1["dataset"]["new"] + r1["dataset"]["replay"] == r1["dataset"]["total"]
    assert set(r1["reflect"]["failures_by_cause"]) == {"planner", "skill", "detector"}
    assert 0.0 <= r1["reflect"]["detector"]["intent_false_positive_rate"] <= 1.0
    assert "seconds_per_heldout_point" in r1 and r1["dataset"]["new"] > 0
    assert set(r1["phase_share"]) == {"collect", "reflect", "skill_practice", "update", "evaluate"}
    assert 0.9 < sum(r1["phase_share"].values()) <= 1.0 + 5 * 0.0005  # five shares, each rounded to 3 places
    assert r1["phase_seconds"]["control"] > 0
    assert r1["promoted"] and r1["promoted_planner"] == r1["planner"] == str(run_dir / "rounds" / "r001" / "planner")
    sets = {f"{split}/{name}" for split in ("train", "practice", "unseen") for name in ("1", "clear")}
    assert set(r1["eval"]["sets"]) == set(r1["report"]["sets"]) == set(r1["control"]["report"]["sets"]) == sets
    assert "clear" in r1["eval"]["train_families"]
    control = Path(r1["control"]["planner"])
    assert control == run_dir / "rounds" / "r001" / "control" and (control / "config.json").exists()
    store = read_store(str(run_dir / "rounds" / "r001" / "episodes"))
    tasks = [json.loads(t) for t in store.column("task").to_pylist()]
    assert len(store) == 6 and [t["family"] for t in tasks].count("clear") == 2
    assert {t["split"] for t in tasks} == {"train", "practice"}  # the unseen split is never practised
    tb = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0, "scalars": 0}).Reload()
    steps = [e.step for e in tb.Scalars("eval/practice/1/success_rate")]
    assert steps == [0, 1]
    logged = {"failures/planner", "detector/intent_false_positive_rate", "dataset/new"}
    logged |= {"report/unseen/clear/success_rate", "control/practice/1/success_rate", "compute/share_collect"}
    logged |= {"forgetting/candidate_train_family_drop", "forgetting/promoted_train_family_drop"}
    assert logged <= set(tb.Tags()["scalars"])
    assert any(t.startswith("replay/r001-") and t.endswith("/video") for t in tb.Tags()["images"])


@pytest.mark.slow
def test_a_round_judged_by_an_eager_learned_detector_is_not_promoted(tmp_path):
    """The collectors judge with the learned detector named in agent.detector (here one that calls every intent
    done after its first step): reflection measures its false positives and the gate refuses the round."""
    import torch
    from intentloop.agents.learned_detector import DetectorConfig, SuccessDetectorModel

    torch.manual_seed(0)
    eager = DetectorConfig(image_size=48, channels=(8, 8, 8, 8), text_dim=8, buckets=256, hidden=16,
                           intent_threshold=0.0, task_threshold=0.0)  # fmt: skip
    SuccessDetectorModel(eager).save_pretrained(tmp_path / "detector")
    run_dir = tmp_path / "run"
    learned = ["agent.detector.name=learned", f"agent.detector.path={tmp_path / 'detector'}"]
    always = ["promote.min_gain=-100", "promote.max_drop=1"]
    proc = self_train(run_dir, "rounds=1", "collect.episodes=4", *always, *learned)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    r1 = json.loads((run_dir / "rounds" / "r001" / "metrics.json").read_text())
    det = r1["reflect"]["detector"]
    assert det["intent_verdicts"]["fp"] > 0 and det["intent_verdicts"]["fn"] == 0  # it never says "not done"
    assert det["task_false_positive_rate"] == 1.0 or det["intent_false_positive_rate"] > 0.05
    assert not r1["promoted"] and "promote.max_detector_false_positive_rate" in r1["promotion"]
    bad = self_train(tmp_path / "bad", "rounds=1", "agent.detector.name=learned", f"agent.detector.path={tmp_path}")
    _, err = bad.communicate(timeout=300)
    assert bad.returncode == 2 and "has no config.json" in err


KILL_ARGS = ("rounds=2", "collect.episodes=6", "update.steps=40")  # an update long enough to be killed in


def _store(run_dir, r: int):
    return run_dir / "rounds" / f"r{r:03d}" / "episodes"


def _in_phase(run_dir, point: str) -> bool:
    """Whether round 1 of the run in ``run_dir`` is now in ``point``: collecting (2 shards stored), updating (its
    TensorBoard file written, no candidate yet) or evaluating (the candidate saved, the control arm not begun)."""
    r1 = run_dir / "rounds" / "r001"
    if point == "collect":
        return len(list(_store(run_dir, 1).glob("*.parquet"))) >= 2
    if point == "update":
        return any((run_dir / "tb" / "update" / "r001").glob("events.*")) and not (r1 / "planner").exists()
    return (r1 / "planner" / "config.json").exists() and not (run_dir / "tb" / "control" / "r001").exists()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The run the killed ones must equal: the same settings, never killed."""
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    whole = self_train(run_dir, *KILL_ARGS)
    _, err = whole.communicate(timeout=600)
    assert whole.returncode == 0, err[-3000:]
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("point", ["collect", "update", "evaluate"])
def test_a_run_killed_in_any_phase_resumes_to_the_episodes_and_figures_of_an_uninterrupted_run(
    tmp_path, point, uninterrupted
):
    run_dir, rounds, episodes = tmp_path / "run", 2, 6
    proc = self_train(run_dir, *KILL_ARGS, start_new_session=True)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and not _in_phase(run_dir, point):
        assert proc.poll() is None, f"the run ended before its {point} phase: " + proc.communicate()[1][-3000:]
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, its local Ray and the collectors
    proc.wait()
    r1 = run_dir / "rounds" / "r001"
    assert _in_phase(run_dir, point) and not (r1 / "metrics.json").exists(), f"killed after round 1's {point}"
    written = len(list(_store(run_dir, 1).glob("*.parquet")))
    assert written < episodes if point == "collect" else written == episodes
    resumed = self_train(run_dir, *KILL_ARGS)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    for r in range(1, rounds + 1):
        ids = read_store(str(_store(run_dir, r)), columns=["episode_id"])["episode_id"]
        assert sorted(ids.to_pylist()) == [
            j.episode_id for j in practice_jobs(r, episodes, ["train", "practice"], [1, 2])
        ]
    history = json.loads((run_dir / "metrics.json").read_text())["rounds"]
    assert [m["round"] for m in history] == list(range(rounds + 1))
    # the shards stored before the kill are skipped, not collected again (collectors that outlive the driver by a
    # moment may have stored a few more)
    resumed_round = history[1]["collect"]
    assert resumed_round["skipped"] >= written and resumed_round["skipped"] + resumed_round["new_this_call"] == episodes
    # and what was collected, learned and measured is what the uninterrupted run got: the sampled practice intents
    # are seeded per episode (EpsilonPlanner's sample keys), whichever collector and batch served them, and a
    # killed update or evaluation is redone from the stored episodes with the same seeds
    for r in range(1, rounds + 1):
        a, b = (read_store(str(_store(d, r))).to_pylist() for d in (run_dir, uninterrupted))
        assert {e["episode_id"]: e["outcomes"] for e in a} == {e["episode_id"]: e["outcomes"] for e in b}
        assert any(e["outcomes"] for e in a)
    figures = [json.loads((d / "metrics.json").read_text())["rounds"] for d in (run_dir, uninterrupted)]
    for m, n in zip(*figures, strict=True):
        assert m.get("update", {}).get("train/loss") == n.get("update", {}).get("train/loss")
        assert m.get("reflect", {}).get("examples") == n.get("reflect", {}).get("examples")
        assert {k: m[k]["sets"] for k in ("eval", "report")} == {k: n[k]["sets"] for k in ("eval", "report")}
        assert m["promoted"] == n["promoted"]
    assert figures[0][1]["update"]["steps"] == 40  # the killed update was run again in full


@pytest.mark.slow
def test_a_round_practises_its_most_failing_learned_skill_and_evaluates_the_candidate_with_it(tmp_path):
    run_dir = tmp_path / "run"
    practice = [
        "skills.name=rllib",
        "update.skill_practice.iterations=1",
        "update.skill_practice.min_failures=0",
        "update.skill_practice.min_failure_rate=0",
        "update.skill_practice.min_gain=-1",  # keep the practised weights whatever they score
        "update.skill_practice.eval_episodes=1",
        "update.skill_practice.rllib.train_batch_size=128",
        "update.skill_practice.rllib.minibatch_size=64",
        "update.skill_practice.rllib.num_epochs=1",
        "update.skill_practice.rllib.num_envs_per_env_runner=2",
    ]
    always = ["promote.min_gain=-100", "promote.max_drop=1"]  # the candidate (practised skills) is promoted
    proc = self_train(run_dir, "rounds=1", "collect.episodes=4", *practice, *always)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    r1 = json.loads((run_dir / "rounds" / "r001" / "metrics.json").read_text())
    practised = r1["skill_practice"]["practised"]
    assert len(practised) == 1 and next(iter(practised.values()))["kept"]
    assert r1["skills"] == str(run_dir / "rounds" / "r001" / "skills")  # what the candidate was evaluated with
    assert r1["promoted"] and r1["promoted_skills"] == r1["skills"]
    assert {p.name for p in Path(r1["skills"]).iterdir()} == {"pick", "place", "push"}


@pytest.mark.slow
def test_skill_practice_needs_learned_skills(tmp_path):
    proc = self_train(tmp_path / "run", "update.skill_practice.iterations=1")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "skill practice trains learned skills" in err


def scores(heldout, **families):
    return {"sets": {"heldout/5": {"avg_chain_length": heldout}}, "train_families": families}


def test_promotion_needs_a_heldout_gain_and_no_train_family_dropping_more_than_a_point():
    base = scores(3.0, pick=0.90, push=0.80)
    assert promotion(scores(3.2, pick=0.90, push=0.795), base, 0.01, 0.0)[0]
    refused, why = promotion(scores(3.5, pick=0.87, push=0.80), base, 0.01, 0.0)
    assert not refused and "pick dropped by 0.030" in why
    assert not promotion(scores(3.0, pick=0.95, push=0.85), base, 0.01, 0.0)[0]
    with pytest.raises(ValueError, match="held-out evaluation"):
        promotion({"sets": {}, "train_families": {}}, base, 0.01, 0.0)


def test_promotion_allows_exactly_one_point_and_compares_with_the_best_promoted_so_far():
    base = scores(3.0, pick=0.77, push=0.80)
    assert promotion(scores(3.2, pick=0.76, push=0.80), base, 0.01, 0.0)[0]  # 0.77 - 0.76 is 0.01000...09
    best = best_families([scores(2.0, pick=0.79, push=0.70), base])
    assert best == {"pick": 0.79, "push": 0.80}
    refused, why = promotion(scores(3.2, pick=0.77, push=0.80), base, 0.01, 0.0, best)
    assert not refused and "pick dropped by 0.020" in why  # drops cannot add up version after version


def self_train_config(*overrides):
    with initialize_config_module("intentloop.configs", version_base="1.3"):
        return OmegaConf.to_object(compose("self_train", overrides=list(overrides)))


@pytest.mark.slow
def test_a_dpo_round_learns_from_pairs_of_its_own_decisions(tmp_path):
    """update.method=dpo with each seed practised twice: the round finds preference pairs in its own episodes,
    keeps them beside its examples, and updates the planner by DPO on them."""
    run_dir = tmp_path / "run"
    # the train split, where the shipped planner succeeds unless exploration (half its calls) leads it astray
    dpo = ["init.planner=shipped", "env.image_size=96", "rounds=1", "collect.episodes=12", "collect.repeats=2",
           "collect.splits=[train]", "collect.epsilon=0.5", "update.method=dpo", "update.steps=6"]  # fmt: skip
    proc = self_train(run_dir, *dpo)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    r1 = json.loads((run_dir / "rounds" / "r001" / "metrics.json").read_text())
    pairs = sum(r1["reflect"]["pairs"].values())
    assert pairs > 0 and r1["update"]["method"] == "dpo" and r1["update"]["pairs"] == pairs
    assert 0 <= r1["update"]["train/reward_accuracy"] <= 1 and r1["update"]["train/dpo_loss"] > 0
    saved = json.loads((run_dir / "rounds" / "r001" / "pairs.json").read_text())
    assert len(saved["rejected"]) == len(load_examples(run_dir / "rounds" / "r001" / "pairs.npz")) == pairs
    ids = read_store(str(run_dir / "rounds" / "r001" / "episodes"), columns=["episode_id"])["episode_id"].to_pylist()
    assert sorted(ids) == [f"r001-e{i:05d}-d{d}" for i in range(6) for d in range(2)]  # 6 seeds, twice each
    scalars = EventAccumulator(str(run_dir / "tb" / "update" / "r001")).Reload().Tags()["scalars"]
    assert "train/dpo_loss" in scalars and "train/reward_accuracy" in scalars


def test_update_methods_and_repeats_are_checked_before_any_work():
    check(self_train_config("update.method=dpo", "collect.repeats=2"))  # accepted
    for overrides, message in [
        (["update.method=rl"], "update.method=rl (RL from reflection) is not built yet"),
        (["update.method=ppo"], "update.method must be one of sft, dpo, got 'ppo'"),
        (["update.dpo_beta=0"], "update.dpo_beta must be > 0"),
        (["collect.repeats=0"], "collect.repeats must be in [1, collect.episodes=200], got 0"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            check(self_train_config(*overrides))


def test_a_run_resumed_with_other_settings_is_refused_unless_forced(tmp_path, capsys):
    from intentloop.experiments.self_train import SelfTraining

    SelfTraining(self_train_config("update.lr=0.001"), tmp_path)._save_settings()  # what run() does, checks passed
    assert json.loads((tmp_path / "run_config.json").read_text())["update"]["lr"] == 0.001
    SelfTraining(self_train_config("update.lr=0.001", "rounds=5", "collect.workers=1"), tmp_path)  # longer, narrower
    with pytest.raises(ValueError, match=r"with other settings: 2 differ from the run's \(first: seed was 0, now 3\)"):
        SelfTraining(self_train_config("update.lr=0.002", "seed=3"), tmp_path)
    SelfTraining(self_train_config("update.lr=0.002", "resume.force=true"), tmp_path)._save_settings()
    assert "resume.force: update.lr was 0.001, now 0.002" in capsys.readouterr().err
    assert json.loads((tmp_path / "run_config.json").read_text())["update"]["lr"] == 0.002


def test_a_moved_run_directory_reads_its_rounds_paths_where_they_are_now(tmp_path):
    from intentloop.experiments.self_train import load_round

    old, new = tmp_path / "old", tmp_path / "new"
    m = {"run_dir": str(old), "planner": str(old / "planner" / "v000"), "skills": "/elsewhere/skills",
         "control": {"planner": str(old / "rounds" / "r001" / "control")}, "sibling": f"{old}-2/x", "n": 3}  # fmt: skip
    (new / "rounds" / "r001").mkdir(parents=True)
    (path := new / "rounds" / "r001" / "metrics.json").write_text(json.dumps(m))
    moved = load_round(path, new)
    assert moved["planner"] == str(new / "planner" / "v000") and moved["run_dir"] == str(new)
    assert moved["control"]["planner"] == str(new / "rounds" / "r001" / "control")
    assert moved["skills"] == "/elsewhere/skills" and moved["sibling"] == f"{old}-2/x" and moved["n"] == 3
    assert load_round(path, old) == m


def test_the_shipped_planner_starts_self_training_by_name(tmp_path):
    from intentloop.agents.vlm.modeling import SHIPPED
    from intentloop.experiments.self_train import SelfTraining

    v000 = Path(SelfTraining(self_train_config("init.planner=shipped"), tmp_path).initial_planner())
    assert (v000 / "model.safetensors").read_bytes() == (SHIPPED / "model.safetensors").read_bytes()
    with pytest.raises(FileNotFoundError, match="no planner checkpoint at nowhere"):
        SelfTraining(self_train_config("init.planner=nowhere"), tmp_path / "other").initial_planner()


@pytest.mark.slow
def test_a_run_directory_of_another_version_is_refused_in_one_sentence_before_ray_starts(tmp_path):
    """A round metrics file without the keys resuming reads (an older run's, a damaged one) is named at once."""
    run_dir = tmp_path / "run"
    (run_dir / "rounds" / "r000").mkdir(parents=True)
    (run_dir / "rounds" / "r000" / "metrics.json").write_text(json.dumps({"round": 0, "eval": {}}))
    proc = self_train(run_dir, "rounds=1")
    _, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, err[-2000:]
    assert "rounds/r000/metrics.json was written by another intentloop version (no 'promoted')" in lines[0]
    (run_dir / "rounds" / "r000" / "metrics.json").write_text("{not json")
    _, err = (proc := self_train(run_dir, "rounds=1")).communicate(timeout=120)
    assert proc.returncode == 2 and "rounds/r000/metrics.json is unreadable" in err and "Traceback" not in err


def test_an_update_refuses_a_thinking_planner_with_one_sentence(tmp_path):
    """Reflection has no thoughts to teach a planner trained to think (it cannot read the scene's state): the
    update says so instead of training the thought away."""
    from intentloop.agents.vlm.configuration import TrainSettings, VLMModelConfig
    from intentloop.agents.vlm.modeling import THINKS, build_default_model
    from intentloop.experiments.self_train import SelfTraining

    run = SelfTraining(self_train_config(), tmp_path / "run")
    model, processor = build_default_model(VLMModelConfig(image_size=48, patch_size=12, text_layers=1))
    setattr(model.config, THINKS, True)
    model.save_pretrained(tmp_path / "thinker")
    processor.save_pretrained(tmp_path / "thinker")
    with pytest.raises(NotImplementedError, match="writes a thought before each intent") as e:
        run._train(str(tmp_path / "thinker"), [], [], tmp_path / "out", TrainSettings(steps=1), "x")
    assert "\n" not in str(e.value) and not (tmp_path / "out").exists()


def test_goal_level_families_join_practice_and_evaluation_as_sets_of_their_own():
    jobs = practice_jobs(2, 12, ["train", "heldout"], [1, 5], ["clear", "swap"])
    assert [(j.task, j.split, j.chain_length) for j in jobs[:8]] == [
        ("chain", "train", 1), ("chain", "heldout", 1), ("chain", "train", 5), ("chain", "heldout", 5),
        ("clear", "train", 1), ("clear", "heldout", 1), ("swap", "train", 1), ("swap", "heldout", 1),
    ]  # fmt: skip
    assert len({j.episode_id for j in jobs}) == len({j.seed for j in jobs}) == 12
    evals = eval_jobs(3, 0, ["train", "heldout"], [1], ["clear"])
    assert len({j.episode_id for j in evals}) == 12 and {j.task for j in evals} == {"chain", "clear"}
    assert practice_jobs(1, 4, ["train"], [1, 2]) == practice_jobs(1, 4, ["train"], [1, 2], [])  # chains as before
    goal = {"split": "heldout", "family": "clear", "intents": ["pick(red_block)", "place(red_block, blue_zone)"]}
    chain = {"split": "train", "family": "chain", "intents": ["pick(red_block)", "place(red_block, blue_zone)"]}
    results = [
        {"task": goal, "success": True, "subgoals_done": 1},
        {"task": goal, "success": False, "subgoals_done": 0},
        {"task": {**goal, "split": "train"}, "success": True, "subgoals_done": 2},  # conditions held: not a chain
        {"task": chain, "success": True, "subgoals_done": 2},
    ]
    s = round_scores(results)
    assert s["sets"]["heldout/clear"] == {"success_rate": 0.5, "avg_chain_length": 0.5, "episodes": 2}
    assert s["sets"]["train/clear"]["avg_chain_length"] == 1.0 and s["sets"]["train/2"]["avg_chain_length"] == 2.0
    assert s["train_families"] == {"clear": 1.0, "chain2": 1.0}
    with pytest.raises(ValueError, match="collect.families must be goal-level families"):
        check(self_train_config("collect.families=[chain]"))
    with pytest.raises(ValueError, match="eval.families must be goal-level families"):
        check(self_train_config("eval.families=[bogus]"))


def test_practice_seeds_never_meet_evaluation_seeds_nor_another_rounds():
    c = self_train_config()  # the shipped configuration
    check(c)
    e, k = c.eval, c.collect
    evaluation = {j.seed for j in eval_jobs(e.episodes, e.seed, e.splits, e.chain_lengths)}
    practice = [j.seed for r in range(1, c.rounds + 1) for j in practice_jobs(r, k.episodes, k.splits, k.chain_lengths)]
    assert len(set(practice)) == len(practice) == c.rounds * k.episodes and not evaluation & set(practice)
    with pytest.raises(ValueError, match="eval seeds must lie in"):
        check(self_train_config(f"eval.seed={min(practice) - e.episodes + 1}"))
    with pytest.raises(ValueError, match="collect.episodes must be <="):
        check(self_train_config("collect.episodes=100001"))
    reported = {j.seed for j in eval_jobs(c.report.episodes, c.report.seed, e.splits, e.chain_lengths)}
    assert reported and not reported & (evaluation | set(practice))  # selection, report and practice: disjoint
    with pytest.raises(ValueError, match=r"report seeds \[10, 60\) overlap the selection seeds \[0, 50\)"):
        check(self_train_config("report.seed=10"))
    with pytest.raises(ValueError, match="report seeds must lie in"):
        check(self_train_config(f"report.seed={min(practice) - 1}"))


def test_the_unseen_split_is_never_practised_nor_read_by_the_gate():
    with pytest.raises(ValueError, match="the unseen split must never be practised"):
        check(self_train_config("collect.splits=[train,unseen]"))
    with pytest.raises(ValueError, match="the unseen split must never be practised"):
        check(self_train_config("collect.splits=[train,heldout]"))  # held-out holds the unseen compositions
    check(self_train_config("collect.splits=[train,heldout]", "eval.splits=[train,heldout]"))  # the old two splits
    with pytest.raises(ValueError, match=r"eval.splits must be among train, heldout, practice, unseen; got \['test'\]"):
        check(self_train_config("eval.splits=[train,test]"))

    def sets(practice, unseen):
        return {"sets": {"practice/5": {"avg_chain_length": practice, "success_rate": practice / 5},
                         "unseen/5": {"avg_chain_length": unseen, "success_rate": unseen / 5}},
                "train_families": {}}  # fmt: skip

    assert promotion(sets(3.0, 1.0), sets(2.0, 4.0), 0.01, 0.0)[0]  # unseen fell: not the gate's business
    assert not promotion(sets(2.0, 5.0), sets(2.0, 1.0), 0.01, 0.0)[0]  # unseen rose alone: no gain


def test_independent_seeds_practise_apart_and_summarize_as_mean_and_std_beside_the_control():
    seeds = {k: {j.seed for r in (1, 2) for j in practice_jobs(r, 50, ["train"], [1], run_seed=k)} for k in (0, 1, 7)}
    assert all(len(v) == 100 for v in seeds.values()) and not (seeds[0] & seeds[1] or seeds[1] & seeds[7])
    assert max(map(max, seeds.values())) < 2**31 - 1
    with pytest.raises(ValueError, match=r"seed \(and every entry of seeds\) must be in \[0, 200\), got 200"):
        check(self_train_config("seeds=[0,200]"))
    with pytest.raises(ValueError, match="seeds must be distinct"):
        check(self_train_config("seeds=[1,1]"))

    def rounds(*pairs):  # (promoted planner, control) success on practice/5 per round
        return [{"promoted": True, "report": {"sets": {"practice/5": {"success_rate": a, "avg_chain_length": 5 * a}}},
                 "control": {"report": {"sets": {"practice/5": {"success_rate": b, "avg_chain_length": 5 * b}}}}}
                for a, b in pairs]  # fmt: skip

    summary = seeds_summary({0: rounds((0.2, 0.2), (0.5, 0.3)), 1: rounds((0.2, 0.2), (0.7, 0.3))})
    cell = summary["rounds"][1]["sets"]["practice/5"]
    assert cell["success_rate"]["mean"] == pytest.approx(0.6)
    assert cell["success_rate"]["std"] == pytest.approx(0.1414, 1e-3)  # the sample std of 0.5 and 0.7
    assert cell["control_success_rate"]["std"] == 0.0
    assert cell["gain_over_control_success_rate"]["mean"] == pytest.approx(0.3)
    assert "0.60+-0.14 (0.30+-0.00)" in seeds_table(summary)

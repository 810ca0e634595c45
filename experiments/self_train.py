"""Self-training on Ray: collect, reflect, update, evaluate and promote, round after round.

How to run:        intentloop self-train rounds=3 collect.workers=2 init.planner=runs/train_planner/<date>/planner
On a cluster:      intentloop self-train ray.address=auto ...        (or RAY_ADDRESS=host:port intentloop self-train)
Resume a run:      the same command with hydra.run.dir=<its run directory>: complete rounds are kept, the
                   interrupted one is finished (episodes already in its store are not collected again). Other
                   settings than the run's (``run_config.json``; more rounds, workers or threads are fine) are
                   refused unless ``resume.force=true``; a moved run directory resumes where it now is.

Each round r:
1. collect   Ray collector actors run the agent (promoted planner, sampling with ``collect.temperature`` and
             random valid alternatives with ``collect.epsilon``; learned skills) on tasks of the train and practice
             splits (never the unseen one); every episode is one atomic Parquet shard in ``rounds/r<r>/episodes``.
2. reflect   agents/reflection.py judges every episode, attributes failures to planner / skill / detector
             (metrics), and builds planner examples from what the robot saw and its detector judged (hindsight
             relabels of failures; oracle corrections on the labelled train split only); the intents the detector
             judged failed go to ``skill_failures.jsonl``.
3. update    the promoted planner is fine-tuned on the new examples plus a replay of earlier rounds' examples
             and of the oracle examples it was first trained on (so it does not forget); with
             ``update.skill_practice.iterations`` > 0, a skill that failed often continues RL training
             (RLlib PPO, experiments/skill_practice.py) and is kept if its held-out success rises.
4. promote   the candidate is evaluated greedily on the selection seeds (``eval``); it becomes the promoted
             version only if practice-split average chain length rises and no train family falls more than
             ``promote.max_drop`` below the best it reached among the promoted versions. Every version and its
             metrics are kept.
5. report    the promoted version is scored on the disjoint report seeds (``report``; every split, unseen
             included): the figures to quote. With ``control`` (default), the control arm's planner is trained
             ``update.steps`` more steps on the oracle examples alone and scored on the same seeds.

Independent runs: ``seeds=[0,1,2]`` runs the loop once per seed under ``seed<k>/`` and writes
``seeds_summary.json`` (mean +- std per round and report set, the control's, and the gain over it).

Run directory: ``planner/v000`` (round-0 planner), ``base_examples.npz`` (oracle examples, replayed),
``rounds/r<r>/{episodes/, examples.npz, skill_failures.jsonl, planner/, control/, skills/ (if practised),
metrics.json}``
(``metrics.json`` is written last: a round is complete when it exists), ``metrics.json`` (every round),
``run_config.json`` (the settings it started with), ``tb/``
(TensorBoard).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import hydra
import intentloop.configs.self_train_schema  # noqa: F401  (registers the config schemas)
import numpy as np
import ray
import torch
from hydra.core.hydra_config import HydraConfig
from intentloop.agents.episode_store import read_store
from intentloop.agents.reflection import build_dataset, judge, preference_pairs, summarize_judgements
from intentloop.agents.vlm.configuration import TrainSettings
from intentloop.agents.vlm.data import (
    check_examples_file,
    collect_examples,
    load_examples,
    save_examples,
    split_examples,
)
from intentloop.agents.vlm.dpo import train_dpo
from intentloop.agents.vlm.modeling import THINKS, build_default_model, checkpoint_folder, load_model
from intentloop.agents.vlm.training import train_planner
from intentloop.configs.self_train_schema import SelfTrainConfig
from intentloop.envs.goal_tasks import GOAL_FAMILIES
from intentloop.envs.tasks import SPLITS, TaskSuite
from intentloop.experiments.collect import collect, preflight
from intentloop.experiments.common import start_ray, user_errors
from intentloop.experiments.replay import write_replay
from intentloop.experiments.report import verdict, write_report
from intentloop.experiments.rounds import (
    best_families,
    check_run,
    check_seeds,
    eval_jobs,
    family_drops,
    heldout_score,
    heldout_success,
    practice_jobs,
    promotion,
    scores,
    seeds_summary,
    seeds_table,
    write_json,
)
from intentloop.experiments.skill_practice import failure_rates, finish_library, practise, to_practise
from intentloop.policies import pretrained_skills
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter

METHODS = ("sft", "dpo")  # update.method; "rl" is refused until it is built


def _check_numbers(c: SelfTrainConfig) -> None:
    """The update's, practice's and gate's numbers, range-checked now rather than after round 0."""
    u = c.update
    try:
        TrainSettings(steps=u.steps, batch_size=u.batch_size, lr=u.lr, warmup_steps=u.warmup_steps,
                      threads=u.threads, arg_noise=u.arg_noise, arg_smoothing=u.arg_smoothing)  # fmt: skip
    except ValueError as e:
        raise ValueError(f"update: {e}") from None
    if c.replays < 0 or u.replay_ratio < 0 or (u.max_per_composition is not None and u.max_per_composition < 1):
        raise ValueError(f"replays and update.replay_ratio must be >= 0 and update.max_per_composition >= 1 (or "
                         f"null), got {c.replays}, {u.replay_ratio}, {u.max_per_composition}")  # fmt: skip
    if c.collect.temperature < 0 or not 0 <= c.collect.epsilon < 1 or c.collect.max_retries < 0:
        raise ValueError(f"collect.temperature and collect.max_retries must be >= 0 and collect.epsilon in [0, 1), "
                         f"got {c.collect.temperature}, {c.collect.max_retries}, {c.collect.epsilon}")  # fmt: skip
    if u.method == "rl":
        raise ValueError("update.method=rl (RL from reflection) is not built yet (issue 20): use sft or dpo")
    if u.method not in METHODS:
        raise ValueError(f"update.method must be one of {', '.join(METHODS)}, got {u.method!r}")
    if u.dpo_beta <= 0 or u.dpo_sft_weight < 0:
        raise ValueError(f"update.dpo_beta must be > 0 and update.dpo_sft_weight >= 0, got {u.dpo_beta}, "
                         f"{u.dpo_sft_weight}")  # fmt: skip
    if not 1 <= c.collect.repeats <= c.collect.episodes:
        raise ValueError(f"collect.repeats must be in [1, collect.episodes={c.collect.episodes}], got "
                         f"{c.collect.repeats}")  # fmt: skip
    if c.promote.max_drop < 0 or not 0 <= c.promote.max_detector_false_positive_rate <= 1:
        raise ValueError(f"promote.max_drop must be >= 0 and promote.max_detector_false_positive_rate in [0, 1], "
                         f"got {c.promote.max_drop}, {c.promote.max_detector_false_positive_rate}")  # fmt: skip


def check(c: SelfTrainConfig) -> None:
    for seed in c.seeds or [c.seed]:
        check_run(c.rounds, seed)
    if len(set(c.seeds)) != len(c.seeds):
        raise ValueError(f"seeds must be distinct, got {c.seeds}")
    if min(c.collect.episodes, c.collect.workers, c.collect.planner_replicas, c.eval.episodes) < 1:
        raise ValueError("collect.episodes, collect.workers, collect.planner_replicas and eval.episodes must be >= 1")
    if c.planner.name != "vlm":
        raise ValueError(f"self-training trains the VLM planner; got planner={c.planner.name}")
    if not c.env.image:
        raise ValueError("the VLM planner needs the camera: env.image must be true")
    check_seeds(c.collect.episodes, c.eval.seed, c.eval.episodes, c.report.seed, c.report.episodes)
    if c.report.episodes < 1:
        raise ValueError(f"report.episodes must be >= 1 (the figures reported come from them), got {c.report.episodes}")
    for where, splits in (("collect", c.collect.splits), ("eval", c.eval.splits)):
        unknown = [s for s in splits if s not in SPLITS]
        if unknown:
            raise ValueError(f"{where}.splits must be among {', '.join(SPLITS)}; got {unknown}")
    practised = [s for s in c.collect.splits if s in ("unseen", "heldout")]
    if practised and "unseen" in c.eval.splits:
        raise ValueError(
            f"collect.splits={practised} practises unseen compositions, and the unseen split must never be practised: "
            "practise the practice split instead (or drop unseen from eval.splits)"
        )
    for where, families in (("collect", c.collect.families), ("eval", c.eval.families)):
        unknown = [f for f in families if f not in GOAL_FAMILIES]
        if unknown:
            raise ValueError(
                f"{where}.families must be goal-level families ({', '.join(GOAL_FAMILIES)}); got {unknown}"
            )
    _check_numbers(c)
    if c.update.skill_practice.iterations > 0 and c.skills.name != "rllib":
        raise ValueError(f"skill practice trains learned skills: it needs skills=rllib, got skills={c.skills.name}")


def _flat(d: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists kept whole)."""
    out = {}
    for k, v in d.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def _moved(value, old: str, new: str):
    """``value`` with every path under ``old`` moved under ``new``."""
    if isinstance(value, dict):
        return {k: _moved(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved(v, old, new) for v in value]
    if isinstance(value, str) and (value == old or value.startswith(old + os.sep)):
        return new + value[len(old) :]
    return value


def load_round(path: Path, run_dir: Path) -> dict:
    """A finished round's metrics; if the run directory was moved since, its paths follow it."""
    m = json.loads(path.read_text())
    old = m.get("run_dir")
    return _moved(m, old, str(run_dir)) if old and old != str(run_dir) else m


class SelfTraining:
    """One run directory, resumable: ``run()`` does whatever rounds are not complete yet."""

    def __init__(self, c: SelfTrainConfig, run_dir: str | Path):
        check(c)
        self.c, self.dir = c, Path(run_dir).absolute()
        self.rounds_dir = self.dir / "rounds"
        self._check_stored_rounds()
        self._check_settings()
        self.rounds_dir.mkdir(parents=True, exist_ok=True)
        self.suite = TaskSuite(split_seed=c.env.split_seed)

    # Settings a resumed run may change: how long, how loud, how parallel; not what is computed.
    RESUMABLE = ("rounds", "progress", "replays", "ray.", "resume.", "collect.workers", "collect.planner_replicas",
                 "update.threads")  # fmt: skip

    def _check_settings(self) -> None:
        """A run resumed with other settings would mix two experiments in one directory: refused in one sentence
        (``resume.force=true`` goes on with the new ones and lists them)."""
        path, now = self.dir / "run_config.json", _flat(asdict(self.c))
        if path.exists():
            before = _flat(json.loads(path.read_text()))
            changed = [k for k in sorted(set(before) | set(now))
                       if before.get(k) != now.get(k) and not k.startswith(self.RESUMABLE)]  # fmt: skip
            if changed and not self.c.resume.force:
                k = changed[0]
                raise ValueError(
                    f"cannot resume {self.dir} with other settings: {len(changed)} differ from the run's (first: {k} "
                    f"was {before.get(k)!r}, now {now.get(k)!r}); use the run's settings, a new hydra.run.dir, or "
                    "resume.force=true to go on with the new ones"
                )
            for k in changed:
                print(f"resume.force: {k} was {before.get(k)!r}, now {now.get(k)!r}", file=sys.stderr)

    def _save_settings(self) -> None:
        """``run_config.json``: the settings of the run's start (or of its last forced resume)."""
        path = self.dir / "run_config.json"
        if not path.exists() or self.c.resume.force:
            write_json(path, asdict(self.c))

    ROUND_KEYS = ("round", "promoted", "promoted_planner", "eval", "promoted_eval", "report", "forgetting")

    def _check_stored_rounds(self) -> None:
        """A run directory from an older intentloop cannot be resumed: one sentence now, before Ray starts."""
        for path in sorted(self.rounds_dir.glob("r*/metrics.json")):
            where = path.relative_to(self.dir)
            try:
                m = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise ValueError(f"cannot resume from {self.dir}: {where} is unreadable ({e})") from None
            missing = [k for k in self.ROUND_KEYS if not isinstance(m, dict) or k not in m]
            if missing:
                raise ValueError(f"cannot resume from {self.dir}: {where} was written by another intentloop "
                                 f"version (no {missing[0]!r}); choose a new hydra.run.dir")  # fmt: skip

    # -- the pieces ----------------------------------------------------------------------------------------
    def _collect(self, jobs, planner: str, skills: str | None, store: str | None, temperature: float, epsilon: float):
        c = self.c
        planner_cfg = {**asdict(c.planner), "model_path": planner, "temperature": temperature}
        return collect(
            jobs,
            store,
            workers=c.collect.workers,
            backend=c.backend,
            planner=planner_cfg,
            skills={**asdict(c.skills), "path": skills},
            env=asdict(c.env),
            agent=asdict(c.agent),
            epsilon=epsilon,
            serve_planner=c.collect.serve_planner,
            planner_replicas=c.collect.planner_replicas,
            max_retries=c.collect.max_retries,
            progress=c.progress,
        )

    def evaluate(self, planner: str, skills: str | None, seeds: str = "eval") -> dict:
        """Greedy scores of a version on the selection seeds (``eval``: the gate's) or the report seeds."""
        e = self.c.eval
        seed, episodes = (e.seed, e.episodes) if seeds == "eval" else (self.c.report.seed, self.c.report.episodes)
        jobs = eval_jobs(episodes, seed, e.splits, e.chain_lengths, e.families)
        report = self._collect(jobs, planner, skills, None, 0.0, 0.0)
        return scores(report.results)

    def _settings(self, r: int) -> TrainSettings:
        """The update's training settings (the control arm's too: equal compute)."""
        c, u = self.c, self.c.update
        return TrainSettings(
            steps=u.steps, batch_size=u.batch_size, lr=u.lr, warmup_steps=min(u.warmup_steps, u.steps),
            max_history=c.planner.max_history, threads=u.threads, seed=1000 * c.seed + r, eval_every=u.steps,
            arg_noise=u.arg_noise, arg_smoothing=u.arg_smoothing,
        )  # fmt: skip

    def _control(self, r: int, previous: dict, skills: str | None) -> dict:
        """The control arm's round: the previous control planner trained ``update.steps`` more steps on the oracle
        examples alone (no practice, no reflection), scored on the report seeds."""
        out = self.rounds_dir / f"r{r:03d}" / "control"
        if not (out / "config.json").exists():
            self._train(previous["planner"], self.base_examples(), [], out, self._settings(r), f"control/r{r:03d}")
        return {"planner": str(out), "report": self.evaluate(str(out), skills, "report")}

    def _train(self, init: str | None, train: list, val: list, out: Path, settings: TrainSettings, tb: str,
               pairs: list | None = None) -> dict:  # fmt: skip
        """Train (from ``init``, or a fresh default model) and save to ``out`` atomically; with preference
        ``pairs``, by DPO on them plus the supervised loss on ``train`` (`train_dpo`)."""
        model, processor = load_model(init) if init else build_default_model(self.c.planner.model)
        if getattr(model.config, THINKS, False) and not settings.think:
            raise NotImplementedError(
                f"{init} writes a thought before each intent, and self-training has no thoughts to teach it "
                "(reflection cannot read the scene's state): start from a planner trained without train.think"
            )
        torch.set_num_threads(settings.threads)
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        logdir, u = self.dir / "tb" / tb, self.c.update
        if pairs:
            metrics = train_dpo(model, processor, pairs, train, tmp, settings, u.dpo_beta, u.dpo_sft_weight, logdir,
                                self.c.progress)  # fmt: skip
        else:
            metrics = train_planner(model, processor, train, val, tmp, settings, logdir=logdir,
                                    progress=self.c.progress)  # fmt: skip
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
        return metrics

    def base_examples(self) -> list:
        path = self.dir / "base_examples.npz"
        if not path.exists():
            i = self.c.init
            if i.data_cache and Path(i.data_cache).exists():
                examples = load_examples(i.data_cache)
            else:
                examples = collect_examples(i.data, progress=self.c.progress)
                if i.data_cache:  # the next run reads them instead of collecting them again
                    Path(i.data_cache).parent.mkdir(parents=True, exist_ok=True)
                    save_examples(i.data_cache, examples)
            save_examples(self.dir / ".base_examples.npz", examples)
            os.replace(self.dir / ".base_examples.npz", path)
        return load_examples(path)

    def initial_planner(self) -> str:
        out = self.dir / "planner" / "v000"
        if not (out / "config.json").exists():
            if self.c.init.planner:
                load_model(self.c.init.planner)  # fails now, with one sentence, if it is not a planner
                source = checkpoint_folder(self.c.init.planner)  # "shipped": the planner the package ships
                shutil.copytree(source, out.with_name(".v000.tmp"), dirs_exist_ok=True)
                os.replace(out.with_name(".v000.tmp"), out)
            else:
                out.parent.mkdir(parents=True, exist_ok=True)
                train, val = split_examples(self.base_examples(), self.c.init.data.val_fraction, self.c.init.data.seed)
                self._train(None, train, val, out, self.c.init.train, "init")
        return str(out)

    def _examples(self, r: int, rows: list[dict]) -> tuple[list, dict]:
        judgements = [judge(row) for row in rows]
        rng = np.random.default_rng([self.c.seed, r])
        u = self.c.update
        data = build_dataset(rows, self.suite, rng, tuple(u.oracle_splits), u.max_per_composition)
        with open(self.rounds_dir / f"r{r:03d}" / "skill_failures.jsonl", "w") as f:
            f.writelines(json.dumps(s) + "\n" for s in data.skills)
        reflect = {
            **summarize_judgements(judgements),
            "examples": dict(data.kinds),
            "dropped": dict(data.dropped),
            "skill_failures": len(data.skills),
        }
        return data.planner, reflect, data.skills

    def _pairs(self, r: int, rows: list[dict], reflect: dict) -> list:
        """The round's preference pairs (`preference_pairs`), kept beside its examples: the chosen intents as
        planner examples (``pairs.npz``) and what each was preferred to (``pairs.json``)."""
        pairs, kinds = preference_pairs(rows)
        reflect["pairs"] = dict(kinds)
        if pairs:
            rdir = self.rounds_dir / f"r{r:03d}"
            save_examples(rdir / ".pairs.npz", [p.chosen for p in pairs])
            os.replace(rdir / ".pairs.npz", rdir / "pairs.npz")
            write_json(rdir / "pairs.json", {"rejected": [p.rejected for p in pairs], "kind": [p.kind for p in pairs]})
        return pairs

    def _practise_skills(self, r: int, rows: list[dict], failures: list[dict], skills: str | None) -> tuple:
        """(the skills the candidate uses, figures): RL practice of the skills that failed often, if enabled."""
        p = self.c.update.skill_practice
        rates = failure_rates(rows, failures)
        chosen = to_practise(rates, p.min_failures, p.min_failure_rate, p.max_skills) if p.iterations > 0 else []
        figures = {"failure_rates": rates, "practised": {}}
        if not chosen:
            return skills, figures
        source = skills or str(pretrained_skills(self.c.backend))
        staging, out = self.rounds_dir / f"r{r:03d}" / ".skills.tmp", self.rounds_dir / f"r{r:03d}" / "skills"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        env_kwargs = {"backend": self.c.backend, "reward_type": "dense"}
        for skill in chosen:
            figures["practised"][skill] = practise(
                skill, source, staging, env_kwargs, asdict(p.rllib), p.iterations, p.eval_episodes,
                self.c.seed + r, p.min_gain, self.c.progress, self.c.skills.trust_pickle,
            )  # fmt: skip
        if not any(f["kept"] for f in figures["practised"].values()):
            shutil.rmtree(staging)
            return skills, figures
        finish_library(source, staging, out)
        return str(out), figures

    def _replay_mix(self, r: int, new: list, rng: np.random.Generator) -> list:
        """Earlier rounds' examples and the oracle's, ``replay_ratio`` of them per new example."""
        pool = self.base_examples()
        for k in range(1, r):
            path = self.rounds_dir / f"r{k:03d}" / "examples.npz"
            if path.exists():
                pool += load_examples(path)
        n = min(len(pool), int(round(self.c.update.replay_ratio * len(new))))
        return [pool[i] for i in rng.choice(len(pool), n, replace=False)] if n else []

    # -- a round -------------------------------------------------------------------------------------------
    def round(self, r: int, promoted: str, promoted_scores: dict, history: list[dict]) -> dict:
        c, rdir, start = self.c, self.rounds_dir / f"r{r:03d}", time.monotonic()
        skills = history[-1].get("promoted_skills", c.skills.path)  # None: the skills the package ships
        rdir.mkdir(parents=True, exist_ok=True)
        store = str(rdir / "episodes")
        k = c.collect
        jobs = practice_jobs(r, k.episodes, k.splits, k.chain_lengths, k.families, c.seed, k.repeats)
        clock = [time.monotonic()]  # the end of every phase, for the share of time each took

        def lap() -> float:
            clock.append(time.monotonic())
            return round(clock[-1] - clock[-2], 2)

        report = self._collect(jobs, promoted, skills, store, c.collect.temperature, c.collect.epsilon)
        rows = [row for row in read_store(store).to_pylist() if row["episode_id"].startswith(f"r{r:03d}-")]
        phases = {"collect": lap()}
        new, reflect, skill_failures = self._examples(r, rows)
        pairs = self._pairs(r, rows, reflect) if c.update.method == "dpo" else []
        phases["reflect"] = lap()
        candidate_skills, practice = self._practise_skills(r, rows, skill_failures, skills)
        phases["skill_practice"] = lap()
        save_examples(rdir / ".examples.npz", new) if new else None
        os.replace(rdir / ".examples.npz", rdir / "examples.npz") if new else None
        rng = np.random.default_rng([c.seed, r, 1])
        replay = self._replay_mix(r, new, rng)
        candidate, update = promoted, {"skipped": "no new examples"}
        if new or pairs:
            candidate = str(rdir / "planner")
            update = self._train(promoted, new + replay, [], Path(candidate), self._settings(r), f"update/r{r:03d}",
                                 pairs)  # fmt: skip
            update["method"] = "dpo" if pairs else "sft"  # a DPO round without pairs is a supervised one
        phases["update"] = lap()
        candidate_scores = self.evaluate(candidate, candidate_skills)
        reference = best_families([h["promoted_eval"] for h in history])  # the best of every train family so far
        promote, why = promotion(candidate_scores, promoted_scores, c.promote.max_drop, c.promote.min_gain, reference)
        promote = promote and (bool(new or pairs) or candidate_skills != skills)
        judged = reflect["detector"]
        detector_fp = max(judged["intent_false_positive_rate"], judged["task_false_positive_rate"])
        if detector_fp > c.promote.max_detector_false_positive_rate:  # its examples rest on false verdicts
            limit = c.promote.max_detector_false_positive_rate
            also = "" if promote else f"; {why}"
            why = f"the detector's false-positive rate {detector_fp:.3f} is above {limit}"
            why += f" (promote.max_detector_false_positive_rate){also}"
            promote = False
        kept = candidate_scores if promote else promoted_scores
        last = history[-1]  # (a run begun before report seeds and the control arm existed has neither)
        if promote:
            reported = self.evaluate(candidate, candidate_skills, "report")
        else:
            reported = last.get("report") or self.evaluate(promoted, skills, "report")
        phases["evaluate"] = lap()  # the selection seeds and, for a promoted candidate, the report seeds
        seconds = time.monotonic() - start  # the loop's own time: the control arm below is not part of it
        control = last.get("control") or {"planner": history[0]["planner"]}
        control = self._control(r, control, skills) if c.control else None
        phases["control"] = lap()
        gain = 100 * (heldout_success(candidate_scores) - heldout_success(promoted_scores))  # success points
        return {
            "round": r,
            "planner": candidate,
            "promoted": promote,
            "promotion": why,
            "promoted_planner": candidate if promote else promoted,
            "skills": candidate_skills,
            "promoted_skills": candidate_skills if promote else skills,
            "eval": candidate_scores,
            "promoted_eval": kept,
            "report": reported,  # the promoted version on the report seeds: the figures to quote
            "control": control,
            "heldout_avg_chain_length": heldout_score(candidate_scores),
            # the largest train-family drop below the best that family reached among promoted versions before
            "forgetting": {
                "candidate": worst_drop(candidate_scores, reference),
                "promoted": worst_drop(kept, reference),
            },
            "collect": {
                "episodes": len(rows),
                "new_this_call": len(report.results),
                "skipped": len(report.skipped),
                "lost": report.lost,
                "dead_workers": report.dead_workers,
                "episodes_per_s": report.episodes_per_s,
            },
            "reflect": reflect,
            "skill_practice": practice,
            "dataset": {"new": len(new), "replay": len(replay), "total": len(new) + len(replay)},
            "update": update,
            "seconds": round(seconds, 1),
            "phase_seconds": phases,  # collect, reflect, skill_practice, update, evaluate (the loop) and control
            "phase_share": {k: round(v / seconds, 3) for k, v in phases.items() if k != "control"},
            "heldout_success_gain_points": gain,  # against the promoted version the round started from
            "seconds_per_heldout_point": seconds / gain if gain > 0 else None,
        }

    # -- the loop ------------------------------------------------------------------------------------------
    def _preflight(self) -> None:
        """Everything the rounds will read, built once before Ray starts or a planner is trained: a bad planner,
        skills folder, detector, env setting or data cache is one sentence now, not an error an hour in."""
        c = self.c
        fresh = not (self.dir / "planner" / "v000" / "config.json").exists()
        planner = {**asdict(c.planner), "model_path": c.init.planner if fresh else None}  # None: the default model
        jobs = practice_jobs(0, 1, c.collect.splits, c.collect.chain_lengths, c.collect.families)
        jobs += eval_jobs(1, c.eval.seed, c.eval.splits, c.eval.chain_lengths, c.eval.families)
        preflight(jobs, c.backend, planner, asdict(c.skills), asdict(c.env), asdict(c.agent), c.collect.epsilon)
        if not (self.dir / "base_examples.npz").exists() and c.init.data_cache and Path(c.init.data_cache).exists():
            check_examples_file(c.init.data_cache)

    def run(self) -> list[dict]:
        self._preflight()
        ray_started = start_ray(self.c.ray.address, self.c.ray.num_cpus)  # a bad address or CPU count: refused
        torch.set_num_threads(self.c.update.threads)
        try:
            self._save_settings()  # once nothing more is refused before the work
            return self._rounds()
        finally:
            if ray_started:
                ray.shutdown()

    def _rounds(self) -> list[dict]:
        history, writer = [], SummaryWriter(str(self.dir / "tb"))
        for r in range(self.c.rounds + 1):
            path = self.rounds_dir / f"r{r:03d}" / "metrics.json"
            if path.exists():
                history.append(load_round(path, self.dir))
                continue
            if r == 0:
                v0 = self.initial_planner()
                s0 = self.evaluate(v0, self.c.skills.path)
                r0 = self.evaluate(v0, self.c.skills.path, "report")
                m = {"round": 0, "planner": v0, "promoted": True, "promoted_planner": v0, "eval": s0,
                     "skills": self.c.skills.path, "promoted_skills": self.c.skills.path,
                     "promoted_eval": s0, "report": r0, "control": {"planner": v0, "report": r0},
                     "heldout_avg_chain_length": heldout_score(s0),
                     "forgetting": {"candidate": 0.0, "promoted": 0.0}}  # fmt: skip
            else:
                last = history[-1]
                m = self.round(r, last["promoted_planner"], last["promoted_eval"], history)
            path.parent.mkdir(parents=True, exist_ok=True)
            m["run_dir"] = str(self.dir)  # its paths are absolute: a moved run reads them relative to this
            write_json(path, m)
            history.append(m)
            self._log(writer, m)
            print(f"round {r}: " + summary_line(m))
        writer.close()
        write_json(self.dir / "metrics.json", {"rounds": history, "config": asdict(self.c)})
        return history

    def _log(self, writer: SummaryWriter, m: dict) -> None:
        r = m["round"]
        arms = {"eval": m["eval"], "promoted_eval": m["promoted_eval"], "report": m["report"]}
        if m.get("control"):
            arms["control"] = m["control"]["report"]
        for which, s in arms.items():
            for k, v in s["sets"].items():
                writer.add_scalar(f"{which}/{k}/success_rate", v["success_rate"], r)
                writer.add_scalar(f"{which}/{k}/avg_chain_length", v["avg_chain_length"], r)
        for which, drop in m["forgetting"].items():
            writer.add_scalar(f"forgetting/{which}_train_family_drop", drop, r)
        writer.add_scalar("promoted", float(m["promoted"]), r)
        if r == 0:
            return
        reflect = m["reflect"]
        for cause, n in reflect["failures_by_cause"].items():
            writer.add_scalar(f"failures/{cause}", n, r)
        writer.add_scalar("detector/intent_false_positive_rate", reflect["detector"]["intent_false_positive_rate"], r)
        for k in ("intent_false_negative_rate", "task_false_positive_rate", "task_false_negative_rate"):
            writer.add_scalar(f"detector/{k}", reflect["detector"][k], r)
        for k, v in m["dataset"].items():
            writer.add_scalar(f"dataset/{k}", v, r)
        writer.add_scalar("dataset/episodes", m["collect"]["episodes"], r)
        writer.add_scalar("skills/failures", reflect["skill_failures"], r)
        if "train/loss" in m["update"]:
            writer.add_scalar("planner/loss", m["update"]["train/loss"], r)
        for phase, share in m.get("phase_share", {}).items():
            writer.add_scalar(f"compute/share_{phase}", share, r)
        if m["seconds_per_heldout_point"] is not None:
            writer.add_scalar("compute/seconds_per_heldout_point", m["seconds_per_heldout_point"], r)
        writer.flush()
        self._replays(m)

    def _replays(self, m: dict) -> None:
        """The best and the worst collected episodes of the round, as TensorBoard replays."""
        if self.c.replays < 1:
            return
        store = str(self.rounds_dir / f"r{m['round']:03d}" / "episodes")
        table = read_store(store, columns=["episode_id", "subgoals_done", "n_subgoals"]).to_pylist()
        ranked = sorted(table, key=lambda e: (e["subgoals_done"] / e["n_subgoals"], e["episode_id"]))
        picks = {e["episode_id"] for e in ranked[-((self.c.replays + 1) // 2) :] + ranked[: self.c.replays // 2]}
        rows = [row for row in read_store(store).to_pylist() if row["episode_id"] in picks]
        for row in rows:
            write_replay(row, str(self.dir / "tb"))


def worst_drop(s: dict, reference: dict[str, float]) -> float:
    return float(max(family_drops(s, reference).values(), default=0.0))


def summary_line(m: dict) -> str:
    sets = "  ".join(f"{k} {v['success_rate']:.2f}/{v['avg_chain_length']:.2f}" for k, v in m["eval"]["sets"].items())
    extra = f"  new examples {m['dataset']['new']}" if "dataset" in m else ""
    return f"{'promoted' if m['promoted'] else 'kept previous'}  success/chain (selection seeds): {sets}{extra}"


def table(history: list[dict], arm: str = "report") -> str:
    """Success rate / average chain length per evaluation set, one line per round: ``report`` (the promoted
    version on the report seeds), ``control`` (the equal-compute control arm, report seeds) or ``eval`` (each
    round's candidate on the selection seeds)."""

    def sets(m: dict) -> dict:
        return m["control"]["report"]["sets"] if arm == "control" else m[arm]["sets"]

    keys = list(sets(history[0]))
    head = f"{'round':<6}{'promoted':<10}{'episodes':>9}" + "".join(f"{k:>16}" for k in keys)
    lines = [head, "-" * len(head)]
    for m in history:
        if arm == "control" and not m.get("control"):
            continue
        cells = "".join(f"{sets(m)[k]['success_rate']:>9.2f}/{sets(m)[k]['avg_chain_length']:<6.2f}" for k in keys)
        episodes = m.get("collect", {}).get("episodes", 0)
        lines.append(f"{m['round']:<6}{'yes' if m['promoted'] else 'no':<10}{episodes:>9}{cells}")
    return "\n".join(lines)


def tables(history: list[dict]) -> str:
    """The figures to quote: the promoted planner and the control arm, on the report seeds."""
    out = "success rate / average chain length, report seeds, the promoted planner after each round:\n"
    out += table(history, "report")
    if any(m.get("control") for m in history[1:]):
        out += "\n\nthe control arm (equal update steps on the oracle examples only), report seeds:\n"
        out += table(history, "control")
    return out


def run_seeds(c: SelfTrainConfig, run_dir: Path) -> dict:
    """Independent runs of the loop, one per entry of ``c.seeds`` (``<run_dir>/seed<k>``, each resumable), then
    ``seeds_summary.json``: mean +- std per round and report set, the control arm's and the gain over it."""
    check(c)
    runs = {}
    for k in c.seeds:
        print(f"-- seed {k} ({len(runs) + 1} of {len(c.seeds)}) --")
        runs[k] = SelfTraining(replace(c, seed=k, seeds=[]), run_dir / f"seed{k}").run()
        write_report(run_dir / f"seed{k}", runs[k])
    summary = seeds_summary(runs)
    write_json(run_dir / "seeds_summary.json", summary)
    print(seeds_table(summary))
    print(f"wrote {run_dir / 'seeds_summary.json'} (and every seed's run under {run_dir}/seed<k>)")
    return summary


@hydra.main(config_path="../configs", config_name="self_train", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> list[dict]:
    c: SelfTrainConfig = OmegaConf.to_object(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if c.seeds:
        return run_seeds(c, run_dir)
    history = SelfTraining(c, run_dir).run()
    print(tables(history))
    report = write_report(run_dir, history)
    print(f"\n{verdict(history)}\nwrote {run_dir / 'metrics.json'} and the report {report}")
    print(f"view the runs and replays: tensorboard --logdir {run_dir / 'tb'}")
    return history


if __name__ == "__main__":
    main()

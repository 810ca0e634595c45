"""The bad-input table shared by tests/test_bad_inputs.py (a sample) and bench/bench_bad_inputs.py (all of it).

A case is an app and its overrides; ``{name}`` in an override is the path of an artefact built by
`build_artefacts` (a damaged copy of a shipped model, a crafted pickle, a store of another schema, ...), and
``{case}`` is the case's own folder (for outputs). Every case must be refused: exit code 2, one line on stderr
(``intentloop <app>: error: <sentence>``), and nothing written to its folder but Hydra's own files.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MARKER = "PAYLOAD_RAN"  # the crafted pickles create this file in the artefacts folder when unpickled


@dataclass(frozen=True)
class Case:
    app: str
    args: tuple[str, ...]
    why: str


SMALL_LOOP = ("rounds=1", "progress=false", "collect.episodes=2", "eval.episodes=1", "report.episodes=1",
              "update.steps=1", "init.planner=shipped", "control=false")  # fmt: skip
# What each app gets besides a case's overrides: small enough that a bad input taken as good ends soon.
BASE = {
    "evaluate": ("episodes=1", "progress=false"),
    "collect": ("episodes=1", "progress=false", "collect.workers=1", "collect.planner_replicas=1"),
    "self-train": SMALL_LOOP,
    "demo": SMALL_LOOP,
    "train-planner": ("progress=false", "train.steps=1", "data.family_episodes=1", "data.scene_examples=1"),
    "train-detector": ("progress=false", "train.steps=1", "data.family_episodes=1"),
    "train-skills": (
        "progress=false",
        "demo_episodes=4",
        "min_iterations=1",
        "max_iterations=1",
        "eval_episodes=2",
        "final_eval_episodes=2",
        "rllib.train_batch_size=64",
        "rllib.minibatch_size=32",
        "rllib.bc_iterations=1",
    ),  # fmt: skip
    "replay": (),
    "export": (),
    "serve": (),
}


# Values each app alone takes: `override(s)  # what is wrong` (several overrides split on spaces).
PER_APP = {
    "evaluate": """
        task=juggle                                             # an unknown task
        episodes=0                                              # no episodes
        episodes=-1                                             # negative episodes
        episodes=abc                                            # episodes not a number
        chain_length=0                                          # a zero chain length
        chain_length=9                                          # a chain longer than the tasks allow
        split=bogus                                             # an unknown split
        level=L9                                                # an unknown level
        level=L4                                                # L4 with a trained task
        ablation=squint                                         # an unknown ablation
        seed=-1                                                 # a negative seed
        seed=1.5                                                # a fractional seed
        record=maybe                                            # record not a bool
        hydra.run.dir={text_file}/run                           # a run folder under a file
    """,
    "collect": """
        task=bogus                                              # an unknown task
        seed=-3                                                 # a negative seed
        episodes=0                                              # no episodes
        chain_length=0                                          # a zero chain length
        split=bogus                                             # an unknown split
        collect.workers=0                                       # no workers
        collect.workers=-2                                      # negative workers
        collect.planner_replicas=0                              # no planner replicas
        collect.max_retries=-1                                  # negative retries
        ray.num_cpus=0                                          # no CPUs
        ray.num_cpus=-1                                         # negative CPUs
        ray.address=127.0.0.1:1                                 # a Ray address nobody answers
        ray.address=nonsense                                    # a malformed address
        store={text_file}                                       # a store that is a file
        store={text_file}/episodes                              # a store under a file
        phrasings=klingon                                       # an unknown phrasing set
        hydra.run.dir={text_file}/run                           # a run folder under a file
    """,
    "self-train": """
        rounds=-1                                               # negative rounds
        seeds=[-1]                                              # a negative seed in seeds
        replays=-1                                              # negative replays
        update.steps=0                                          # no update steps
        update.batch_size=0                                     # batch 0
        update.lr=-1                                            # a negative learning rate
        update.lr=0                                             # a zero learning rate
        update.replay_ratio=-1                                  # a negative replay ratio
        update.max_per_composition=0                            # no examples kept
        update.arg_smoothing=1.5                                # smoothing above 1
        update.threads=0                                        # no threads
        eval.episodes=0                                         # no evaluation episodes
        report.episodes=0                                       # no report episodes
        eval.families=[bogus]                                   # an unknown evaluation family
        collect.families=[bogus]                                # an unknown practice family
        collect.episodes=0                                      # no practice episodes
        collect.temperature=-1                                  # a negative temperature
        collect.epsilon=2                                       # exploration above 1
        collect.workers=0                                       # no workers
        promote.max_drop=-1                                     # a negative allowed drop
        promote.max_detector_false_positive_rate=2              # a rate above 1
        init.data_cache={npz_garbage}                           # a data cache that is not npz
        init.data_cache={npz_wrong_keys}                        # a data cache of other arrays
        ray.num_cpus=0                                          # no CPUs
        hydra.run.dir={text_file}/run                           # a run folder under a file
    """,
    "demo": """
        seed=-1                                                 # a negative seed
        collect.episodes=0                                      # no practice episodes
        eval.episodes=0                                         # no evaluation episodes
        update.steps=-1                                         # negative update steps
        ray.num_cpus=0                                          # no CPUs
        hydra.run.dir={text_file}/run                           # a run folder under a file
    """,
    "train-planner": """
        train.steps=0                                           # no steps
        train.batch_size=0                                      # batch 0
        train.lr=-1                                             # a negative learning rate
        train.warmup_steps=-1                                   # negative warm-up
        train.word_noise=1.5                                    # word noise above 1
        train.arg_noise=-0.1                                    # negative argument noise
        train.arg_smoothing=1.0                                 # smoothing of 1
        train.threads=0                                         # no threads
        train.max_minutes=-1                                    # a negative time limit
        train.eval_every=0                                      # evaluate every 0 steps
        data.val_fraction=1                                     # all data for validation
        data.captions=2                                         # a caption share above 1
        data.backend=gazebo                                     # an unknown data backend
        data.image_size=0                                       # a zero image size
        data.family_episodes=-1                                 # negative family episodes
        data.families=[bogus]                                   # an unknown family
        data.noise=-1                                           # negative noise
        data_cache={npz_garbage}                                # a cache that is not npz
        data_cache={npz_wrong_keys}                             # a cache of other arrays
        data_cache={npz_truncated}                              # a truncated cache
        data_cache={empty_dir}                                  # a cache that is a folder
        output_dir={text_file}                                  # an output folder that is a file
        output_dir={text_file}/planner                          # an output under a file
        planner.model.patch_size=7                              # a patch size that does not divide the image
        planner.model.text_heads=3                              # heads that do not divide the width
        planner.model.text_layers=0                             # no layers
        planner=oracle                                          # a planner that cannot be trained
    """,
    "train-detector": """
        train.steps=0                                           # no steps
        train.batch_size=0                                      # batch 0
        train.lr=-1                                             # a negative learning rate
        train.task_share=1.5                                    # a task share above 1
        train.max_false_positive_rate=2                         # a rate above 1
        data.family_episodes=-1                                 # negative family episodes
        data.val_fraction=1.5                                   # a validation share above 1
        data.backend=gazebo                                     # an unknown backend
        data.families=[bogus]                                   # an unknown family
        data.noise=-1                                           # negative noise
        model.buckets=0                                         # no hash buckets
        model.text_dim=0                                        # no text width
        init={missing}                                          # a missing initial detector
        init={planner_ok}                                       # a planner as the initial detector
        data_cache={npz_garbage}                                # a cache that is not npz
        data_cache={npz_wrong_keys}                             # a cache of other arrays
        output_dir={text_file}/detector                         # an output under a file
        train.threads=0                                         # no threads
    """,
    "train-skills": """
        skill=fly                                               # an unknown skill
        backend=gazebo                                          # an unknown backend
        reward_type=magic                                       # an unknown reward
        demo_episodes=-1                                        # negative demos
        max_iterations=0                                        # no iterations
        min_iterations=-1                                       # negative min iterations
        target_success=2                                        # a target above 1
        eval_every=0                                            # evaluate every 0 iterations
        eval_episodes=0                                         # no evaluation episodes
        rllib.num_env_runners=-1                                # negative env runners
        rllib.num_learners=-1                                   # negative learners
        rllib.lr=-1                                             # a negative learning rate
        rllib.minibatch_size=8000                               # a minibatch above the batch
        rllib.num_envs_per_env_runner=0                         # no envs per runner
        rllib.gamma=1.5                                         # a discount above 1
        model.hidden=[]                                         # no hidden layers
        model.hidden=[0]                                        # a zero-width layer
        ray.num_cpus=0                                          # no CPUs
        max_minutes=0                                           # no time
        hydra.run.dir={text_file}/run                           # a run folder under a file
    """,
    "replay": """
        episode={missing}                                       # a missing store
        episode={empty_dir}                                     # an empty folder
        episode={text_file}                                     # a text file as a store
        episode={store_corrupt}                                 # a store with a corrupt shard only
        episode={store_other_schema}                            # a store holding a Parquet file of another schema
        episode={store_two}                                     # a store of two episodes and no id
        episode=nope store={store_ok}                           # an unknown id
        episode={store_ok} fps=0                                # fps 0
        episode={store_ok} fps=-3                               # negative fps
        episode={store_ok} scale=0                              # scale 0
        episode={store_ok} scale=100                            # scale 100 (unbounded memory)
        episode={store_ok} logdir={text_file}/tb                # a log folder under a file
        store={store_ok}                                        # no episode given
        episode={store_no_frames}                               # an episode recorded without images
    """,
    "export": """
        format=hdf5 store={store_ok} out={case}/x               # an unknown format
        store={store_ok} out={case}/x                           # no format
        format=lerobot out={case}/x                             # no store
        format=lerobot store={missing} out={case}/x             # a missing store
        format=lerobot store={empty_dir} out={case}/x           # an empty store
        format=lerobot store={store_corrupt} out={case}/x       # a store with a corrupt shard only
        format=lerobot store={store_other_schema} out={case}/x  # a store of another schema
        format=lerobot store={store_ok} out={text_file}         # an output that is a file
        format=lerobot store={store_ok} out={text_file}/x       # an output under a file
        format=lerobot store={store_ok} out={store_ok}          # an output folder that is not empty
        format=lerobot store={store_ok} out={case}/x fps=0      # fps 0
        format=minari store={store_ok} out={case}/x name=bad    # a Minari name without a version
        format=lerobot store={store_no_frames} out={case}/x     # episodes without images
    """,
    "serve": """
        serve.replicas=0                                        # no replicas
        serve.port=-1                                           # a negative port
        serve.port=70000                                        # a port above 65535
        serve.max_batch_size=0                                  # batch 0
        serve.batch_wait_s=-1                                   # a negative wait
        serve.route=plan                                        # a route without a slash
        planner=oracle                                          # the oracle
        serve.image_size=0                                      # a zero image size
        ray.num_cpus=0                                          # no CPUs
        planner=gpt                                             # an unknown planner
        serve.host=no.such.host.invalid                         # a host that does not resolve
    """,
}


def _cases() -> list[Case]:
    out: list[Case] = []

    def add(app: str, why: str, *args: str) -> None:
        out.append(Case(app, args, why))

    # -- artefacts any app that plans with a VLM or runs learned skills reads
    planner_artefacts = {
        "a missing planner folder": "{missing}",
        "an empty planner folder": "{empty_dir}",
        "a file, not a folder": "{text_file}",
        "config.json is not JSON": "{planner_bad_config}",
        "config.json of another model type": "{planner_other_type}",
        "weights missing 3 tensors": "{planner_missing_tensors}",
        "a NaN weight": "{planner_nan}",
        "a weight of the wrong shape": "{planner_wrong_shape}",
        "truncated weights": "{planner_truncated}",
        "no tokenizer": "{planner_no_tokenizer}",
        "the skills folder given as a planner": "{skills_ok}",
    }
    skills_artefacts = {
        "a missing skills folder": "{missing}",
        "an empty skills folder": "{empty_dir}",
        "a file, not a folder": "{text_file}",
        "a NaN weight": "{skills_nan}",
        "one skill missing": "{skills_no_push}",
        "spec.json is not JSON": "{skills_bad_spec}",
        "spec.json names another class": "{skills_spec_class}",
        "truncated weights": "{skills_truncated}",
        "a crafted pickle (trust_pickle off)": "{skills_pickle}",
        "the planner folder given as skills": "{planner_ok}",
    }
    for app in ("evaluate", "collect"):
        for why, path in planner_artefacts.items():
            add(app, f"planner: {why}", "planner=vlm", f"planner.model_path={path}")
        for why, path in skills_artefacts.items():
            add(app, f"skills: {why}", "skills=rllib", f"skills.path={path}")
    for why in ("a missing planner folder", "weights missing 3 tensors", "a NaN weight", "a file, not a folder"):
        add("self-train", f"init.planner: {why}", f"init.planner={planner_artefacts[why]}")
        add("serve", f"planner: {why}", f"planner.model_path={planner_artefacts[why]}")
        add("demo", f"init.planner: {why}", f"init.planner={planner_artefacts[why]}")
        add("train-planner", f"planner.model_path: {why}", f"planner.model_path={planner_artefacts[why]}")
    for why in ("a NaN weight", "a crafted pickle (trust_pickle off)", "a missing skills folder", "one skill missing"):
        add("self-train", f"skills: {why}", f"skills.path={skills_artefacts[why]}")
        add("demo", f"skills: {why}", f"skills.path={skills_artefacts[why]}")

    # -- values every closed-loop app shares (env, agent, detector)
    shared = [
        ("backend=gazebo", "an unknown backend"),
        ("env.image_size=0", "a zero image size"),
        ("env.image_size=-8", "a negative image size"),
        ("env.frame_skip=0", "a zero frame skip"),
        ("env.max_delta=-1", "a negative hand step"),
        ("env.max_delta=5", "a hand step of 5 m"),
        ("env.steps_per_intent=0", "no steps per intent"),
        ("env.split_seed=-1", "a negative split seed"),
        ("env.phrasings=klingon", "an unknown phrasing set"),
        ("agent.max_steps_per_intent=0", "no steps per intent for the agent"),
        ("agent.max_intents=-1", "a negative intent budget"),
        ("agent.safety.max_height=-1", "a negative height limit"),
        ("agent.safety.max_stack_height=0", "a zero stack height limit"),
        ("agent.safety.workspace_low=[1,1]", "a workspace whose low corner is above its high one"),
        ("agent.safety.workspace_low=[1]", "a one-number workspace corner"),
        ("agent.safety.forbidden=[teleport(*)]", "a forbidden pattern naming no skill"),
        ("agent.detector.name=psychic", "an unknown detector"),
        ("agent.detector.name=learned", "a learned detector with no path"),
        ("agent.detector.name=learned agent.detector.path={missing}", "a missing detector folder"),
        ("agent.detector.name=learned agent.detector.path={planner_ok}", "a planner folder given as a detector"),
        ("planner=gpt", "an unknown planner"),
        ("skills=magic", "unknown skills"),
    ]
    for app in ("evaluate", "collect", "self-train"):
        for override, why in shared:
            add(app, why, *override.split(" "))
    for override, why in shared[:6] + shared[9:11] + shared[16:18]:
        add("demo", why, *override.split(" "))

    for app, table in PER_APP.items():
        for row in table.strip().splitlines():
            override, why = (part.strip() for part in row.split(" # "))
            add(app, why, *override.split())
    return out


CASES = _cases()


# -- artefacts ------------------------------------------------------------------------------------------------
def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_safetensors(path: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(path)
    edit(state)
    save_file(state, path)


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: the proof that a pickle executed code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _episode_store(root: Path, name: str, episodes: int) -> Path:
    cli = str(Path(sys.executable).with_name("intentloop"))
    store = root / name
    args = [cli, "collect", f"episodes={episodes}", "skills=scripted", "progress=false", "collect.workers=1",
            f"store={store}", f"hydra.run.dir={root / (name + '_run')}"]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env={**os.environ, "MUJOCO_GL": "egl"})
    if proc.returncode != 0:
        raise RuntimeError(f"could not collect the episode store {store}: {proc.stderr[-2000:]}")
    return store


def build_artefacts(root: Path) -> dict[str, str]:
    """Every damaged artefact the cases name, under ``root``; returns name -> path."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from intentloop.agents.episode_store import read_store, write_shard
    from intentloop.agents.vlm.modeling import SHIPPED
    from intentloop.policies import pretrained_skills

    root.mkdir(parents=True, exist_ok=True)
    a: dict[str, Path] = {"missing": root / "does-not-exist", "empty_dir": root / "empty"}
    a["empty_dir"].mkdir()
    a["text_file"] = root / "notes.txt"
    a["text_file"].write_text("not what you asked for\n")

    a["planner_ok"] = _copy(SHIPPED, root / "planner_ok")
    weights = "model.safetensors"
    a["planner_bad_config"] = _copy(SHIPPED, root / "planner_bad_config")
    (a["planner_bad_config"] / "config.json").write_text("{not json")
    a["planner_other_type"] = _copy(SHIPPED, root / "planner_other_type")
    (a["planner_other_type"] / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    a["planner_missing_tensors"] = _copy(SHIPPED, root / "planner_missing_tensors")
    _edit_safetensors(a["planner_missing_tensors"] / weights, lambda s: [s.pop(k) for k in sorted(s)[:3]])
    a["planner_nan"] = _copy(SHIPPED, root / "planner_nan")
    _edit_safetensors(a["planner_nan"] / weights, lambda s: s[sorted(s)[0]].view(-1).__setitem__(0, float("nan")))
    a["planner_wrong_shape"] = _copy(SHIPPED, root / "planner_wrong_shape")

    def reshape(state):
        key = next(k for k in sorted(state) if state[k].dim() == 2)
        state[key] = state[key][:, :-1].contiguous()

    _edit_safetensors(a["planner_wrong_shape"] / weights, reshape)
    a["planner_truncated"] = _copy(SHIPPED, root / "planner_truncated")
    data = (a["planner_truncated"] / weights).read_bytes()
    (a["planner_truncated"] / weights).write_bytes(data[: len(data) // 2])
    a["planner_no_tokenizer"] = _copy(SHIPPED, root / "planner_no_tokenizer")
    for f in a["planner_no_tokenizer"].glob("tokenizer*"):
        f.unlink()

    skills = pretrained_skills("mujoco")
    a["skills_ok"] = _copy(skills, root / "skills_ok")
    a["skills_nan"] = _copy(skills, root / "skills_nan")
    _edit_safetensors(a["skills_nan"] / "pick/module" / weights,
                      lambda s: s[sorted(s)[0]].view(-1).__setitem__(0, float("nan")))  # fmt: skip
    a["skills_no_push"] = _copy(skills, root / "skills_no_push")
    shutil.rmtree(a["skills_no_push"] / "push")
    a["skills_bad_spec"] = _copy(skills, root / "skills_bad_spec")
    (a["skills_bad_spec"] / "pick/module/spec.json").write_text("{oops")
    a["skills_spec_class"] = _copy(skills, root / "skills_spec_class")
    spec = json.loads((skills / "pick/module/spec.json").read_text())
    (a["skills_spec_class"] / "pick/module/spec.json").write_text(json.dumps({**spec, "module_class": "os.system"}))
    a["skills_truncated"] = _copy(skills, root / "skills_truncated")
    data = (skills / "pick/module" / weights).read_bytes()
    (a["skills_truncated"] / "pick/module" / weights).write_bytes(data[:100])
    a["skills_pickle"] = _copy(skills, root / "skills_pickle")
    for skill in ("pick", "place", "push"):
        module = a["skills_pickle"] / skill / "module"
        for f in module.iterdir():
            f.unlink()
        for name in ("module_state.pkl", "class_and_ctor_args.pkl"):
            (module / name).write_bytes(pickle.dumps(_Payload(str(root / MARKER))))

    a["npz_garbage"] = root / "garbage.npz"
    a["npz_garbage"].write_bytes(b"PK\x03\x04 this is not a zip archive" * 10)
    a["npz_wrong_keys"] = root / "wrong_keys.npz"
    np.savez(a["npz_wrong_keys"], x=np.zeros(3))
    a["npz_truncated"] = root / "truncated.npz"
    np.savez(root / "full.npz", images=np.zeros((64, 96, 96, 3), np.uint8), ids=np.zeros((64, 40), np.int64))
    a["npz_truncated"].write_bytes((root / "full.npz").read_bytes()[:5000])

    a["store_two"] = _episode_store(root, "store_two", 2)
    rows = read_store(str(a["store_two"])).to_pylist()
    a["store_ok"], a["store_no_frames"] = root / "store_ok", root / "store_no_frames"
    write_shard(str(a["store_ok"]), rows[:1])
    write_shard(str(a["store_no_frames"]), [{**rows[0], "frames": []}])  # as recorded with env.image=false
    a["store_corrupt"] = root / "store_corrupt"
    a["store_corrupt"].mkdir()
    (a["store_corrupt"] / "shard-0.parquet").write_bytes(b"PAR1 garbage")
    a["store_other_schema"] = root / "store_other_schema"
    a["store_other_schema"].mkdir()
    pq.write_table(pa.table({"x": [1, 2, 3]}), a["store_other_schema"] / "shard-0.parquet")
    return {k: str(v) for k, v in a.items()}


# -- running one case -------------------------------------------------------------------------------------------
HYDRA_OWN = {".hydra", "main.log"}


def verdict(app: str, returncode: int | None, stderr: str, written: list[str]) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if returncode is None:
        return "hang"
    if "Traceback (most recent call last)" in stderr:
        return "traceback"
    if returncode == 0:
        return "accepted"
    if returncode != 2 or len(lines) != 1 or not lines[0].startswith(f"intentloop {app}: error: "):
        return "unclear"
    return "late" if written else "refused"


def run_case(case: Case, artefacts: dict[str, str], folder: Path, env: dict, timeout: float) -> dict:
    """Run ``case`` in a fresh ``folder``; returns what happened (``verdict`` and the evidence)."""
    folder.mkdir(parents=True, exist_ok=True)
    values = {**artefacts, "case": str(folder)}
    args = [arg.format_map(values) for arg in case.args]
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={folder / 'run'}")
    cli = str(Path(sys.executable).with_name("intentloop"))
    start = time.monotonic()
    proc = subprocess.Popen([cli, case.app, *BASE[case.app], *args], cwd=folder, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)  # fmt: skip
    try:
        _, stderr = proc.communicate(timeout=timeout)
        returncode = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the app and whatever it started (Ray's workers among them)
        _, stderr = proc.communicate()
        returncode = None
    seconds = time.monotonic() - start
    written = sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and not (set(p.relative_to(folder).parts) & HYDRA_OWN) and not p.name.endswith(".log")
    )
    return {
        "app": case.app,
        "why": case.why,
        "args": " ".join(case.args),
        "verdict": verdict(case.app, returncode, stderr, written),
        "returncode": returncode,
        "seconds": round(seconds, 1),
        "message": stderr.strip().splitlines()[-1] if stderr.strip() else "",
        "stderr_tail": stderr[-1500:],
        "written": written[:10],
    }

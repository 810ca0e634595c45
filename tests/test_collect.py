"""Collection on a real Ray: two nodes, collectors that die, resume by episode id, corrupt shards, the planner
server. Oracle planner and scripted skills keep episodes short; the Ray code paths are the real ones."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import ray
from intentloop.agents.episode_store import read_store
from intentloop.experiments.collect import EpisodeJob, ServedPlanner, collect, deploy_planner
from intentloop.experiments.common import start_ray
from intentloop.experiments.serve import planner_app
from ray import serve
from ray.cluster_utils import Cluster

ORACLE, SCRIPTED, SMALL = {"name": "oracle"}, {"name": "scripted"}, {"image_size": 32}


def jobs(n, prefix="e", split="train", chain_length=1):
    return [EpisodeJob(f"{prefix}-{i:03d}", i, split, chain_length) for i in range(n)]


def stored(store):
    return read_store(store, columns=["episode_id"])["episode_id"].to_pylist()


@pytest.fixture
def local_ray():
    start_ray("local", 2)  # a fresh local Ray, started once more if a loaded machine makes it miss Ray's timeout
    yield
    ray.shutdown()


@pytest.mark.slow
def test_collectors_on_two_nodes_store_every_episode_exactly_once(tmp_path):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, log_to_driver=False)
        store = str(tmp_path / "episodes")
        report = collect(jobs(8), store, workers=2, planner=ORACLE, skills=SCRIPTED, env=SMALL, progress=False)
        nodes = {r["node_id"] for r in report.results}
        assert len(nodes) == 2 and len({n["NodeID"] for n in ray.nodes() if n["Alive"]}) == 2
    finally:
        ray.shutdown()
        cluster.shutdown()
    ids = stored(store)
    assert sorted(ids) == [j.episode_id for j in jobs(8)]  # exactly once each
    assert len(pd.read_parquet(store, columns=["episode_id"])) == 8 and pq.ParquetDataset(store).read().num_rows == 8


@pytest.mark.slow
@pytest.mark.parametrize("for_good", [False, True])
def test_a_collector_killed_mid_round_loses_nothing_and_the_round_completes(tmp_path, local_ray, for_good):
    """Killed as a crash would (Ray restarts the actor and re-runs its episode) or for good (no_restart: the
    driver replaces it and queues the episode again): every episode is stored exactly once."""
    store, killed, pool = str(tmp_path / "episodes"), [], []

    def kill_one(result, actors):
        if not killed:
            killed.append(actors[0])
            pool.append(actors)  # the driver's list of collectors, as it changes
            ray.kill(actors[0], no_restart=for_good)

    report = collect(jobs(6), store, workers=2, planner=ORACLE, skills=SCRIPTED, env=SMALL, progress=False,
                     on_result=kill_one)  # fmt: skip
    assert killed and report.dead_workers >= 1 and not report.lost and len(report.results) == 6
    assert sorted(stored(store)) == [j.episode_id for j in jobs(6)]
    assert sorted(r["episode_id"] for r in report.results) == [j.episode_id for j in jobs(6)]
    assert (killed[0] in pool[0]) is not for_good  # restarted by Ray in place, or replaced by the driver


@pytest.mark.slow
def test_a_collector_that_cannot_start_stops_the_run_with_its_cause(tmp_path, local_ray):
    """The skills folder vanishes after the driver's check; the killed collector's restart then fails in its
    constructor: collect raises that cause in one sentence instead of reporting lost episodes."""
    from intentloop.policies import pretrained_skills

    skills = tmp_path / "skills"
    shutil.copytree(pretrained_skills("mujoco"), skills)

    def break_and_kill(result, actors):
        if skills.exists():
            shutil.rmtree(skills)
            ray.kill(actors[0], no_restart=False)

    with pytest.raises(ValueError, match=r"^a collector could not start: no checkpoint for skill 'pick'"):
        collect(jobs(6), None, workers=2, planner=ORACLE, skills={"name": "rllib", "path": str(skills)}, env=SMALL,
                progress=False, on_result=break_and_kill)  # fmt: skip


@pytest.mark.slow
def test_a_serve_replica_killed_mid_round_loses_nothing(tmp_path, local_ray):
    """The planner's only replica dies between two intents: Serve starts another and the collectors' requests
    wait for it; every episode is stored once, none is lost or re-run."""
    store, killed = str(tmp_path / "episodes"), []
    planner = {"name": "vlm", "model": {"image_size": 32, "patch_size": 8}}

    def kill_the_replica(result, actors):
        if not killed:
            names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                     if a["name"].startswith("SERVE_REPLICA::collect-planner")]  # fmt: skip
            assert len(names) == 1
            killed.append(names[0])
            ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)

    report = collect(jobs(6), store, workers=2, planner=planner, skills=SCRIPTED, env=SMALL, progress=False,
                     planner_replicas=1, on_result=kill_the_replica)  # fmt: skip
    assert killed and not report.lost and report.dead_workers == 0
    assert sorted(stored(store)) == [j.episode_id for j in jobs(6)]


@pytest.mark.slow
def test_resume_skips_stored_episodes_and_a_corrupt_shard_is_reported_and_collected_again(tmp_path, local_ray, capsys):
    store = str(tmp_path / "episodes")
    first = collect(jobs(3), store, workers=2, planner=ORACLE, skills=SCRIPTED, env=SMALL, progress=False)
    assert len(first.results) == 3
    Path(store, "e-001.parquet").write_bytes(b"not parquet")  # a torn write from some other tool
    again = collect(jobs(5), store, workers=2, planner=ORACLE, skills=SCRIPTED, env=SMALL, progress=False)
    assert sorted(again.skipped) == ["e-000", "e-002"]
    assert sorted(r["episode_id"] for r in again.results) == ["e-001", "e-003", "e-004"]
    err = capsys.readouterr().err
    assert "skipping corrupt shard" in err and "e-001.parquet" in err
    assert sorted(stored(store)) == [j.episode_id for j in jobs(5)]


@pytest.mark.slow
def test_the_vlm_planner_is_served_by_one_batching_deployment(tmp_path, local_ray):
    planner = {"name": "vlm", "model": {"image_size": 32, "patch_size": 8}}
    report = collect(jobs(4), None, workers=2, planner=planner, skills=SCRIPTED, env=SMALL, epsilon=0.0,
                     progress=False)  # fmt: skip
    assert len(report.results) == 4
    outcomes = [o for r in report.results for o in r["outcomes"]]
    assert outcomes and not any(o["reason"].startswith("invalid") for o in outcomes)  # constrained: all parse
    stats = report.planner_stats
    # every planning call went through the deployment: one per outcome, plus a final done() per episode at most
    assert len(outcomes) <= stats["calls"] <= len(outcomes) + len(report.results)
    assert stats["replicas"] == 2 and 1 <= stats["max_batch"] <= 2 and "planner_batches" not in report.results[0]
    assert serve.status().applications == {}  # the round's deployment is gone with the round
    # batching: two requests in flight together are decoded as one batch of two
    serve.start(proxy_location="Disabled")
    handle = serve.run(planner_app(planner, batch_wait_s=1.0), name="batching", route_prefix=None)
    image = np.zeros((32, 32, 3), np.uint8)
    answers = [handle.plan.remote(f"Pick up the {c} block.", image, []) for c in ("red", "blue")]
    answers = [a.result(timeout_s=60) for a in answers]
    assert [a["batch"] for a in answers] == [2, 2] and [a["thought"] for a in answers] == ["", ""]
    assert {a["verdict"] for a in answers} == {"valid"} and not handle.thinks.remote().result()


@pytest.mark.slow
def test_the_served_planner_hears_what_the_user_said(local_ray):
    """A correction reaches a served planner as it reaches a local one (the blind baseline acts on it)."""
    from intentloop.agents import IntentOutcome, PlannerInput, make_planner

    history = [IntentOutcome("pick(red_block)", False, 3, "interrupted")]
    said = [(1, "no, the yellow one")]
    inp = PlannerInput("Put the red block in the blue zone.", np.zeros((32, 32, 3), np.uint8), history, feedback=said)
    local, served = make_planner("text"), ServedPlanner(*deploy_planner({"name": "text"}, image_size=32))
    assert served.plan(inp) == local.plan(inp) != local.plan(PlannerInput(inp.instruction, inp.image, history))
    assert served.think is False and served.last_thoughts == [""] and served.batches == [1]


def test_bad_input_fails_with_one_sentence():
    for kwargs, message in (
        ({"workers": 0}, "workers must be >= 1"),
        ({"epsilon": 1.0}, "epsilon must be in"),
        ({"backend": "isaac"}, "unknown backend"),
    ):
        with pytest.raises(ValueError, match=message):
            collect(jobs(1), None, planner=ORACLE, skills=SCRIPTED, **kwargs)
    with pytest.raises(ValueError, match="unique"):
        collect(jobs(2) + jobs(1), None, planner=ORACLE, skills=SCRIPTED)


@pytest.mark.slow
def test_the_collect_app_writes_a_store_and_a_summary(tmp_path):
    cli = str(Path(sys.executable).parent / "intentloop")
    args = ["collect", "episodes=3", "skills=scripted", "env.image_size=32", "progress=false", "ray.num_cpus=2"]
    proc = subprocess.run([cli, *args, f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "collect.json").read_text())
    assert summary["episodes"] == 3 and sorted(stored(str(tmp_path / "episodes"))) == [
        f"mujoco-train-1-seed{s}" for s in range(3)
    ]
    bad = subprocess.run([cli, "collect", "collect.workers=0", f"hydra.run.dir={tmp_path / 'bad'}"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("intentloop collect: error:")

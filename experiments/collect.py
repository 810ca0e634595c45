"""Collection on Ray: collector actors run the hierarchical agent and stream episodes to the episode store.

    report = collect(jobs, "runs/x/episodes", workers=2, planner={"name": "vlm", "model_path": ...},
                     skills={"name": "rllib"})
    intentloop collect episodes=200 collect.workers=2 planner=vlm planner.model_path=... split=heldout

- Every collector actor builds its own envs, skill library and agent, and runs one job at a time, handed out by
  the driver; a finished episode is written by the collector as ONE shard named after its id (atomic: in the
  store exactly once, or absent).
- Resume: jobs whose episode id is already in the store are skipped (``report.skipped``).
- A collector that dies (killed, crashed, node lost) loses its in-flight episode only: Ray restarts the actor
  and runs the episode again on it (``max_restarts``, ``max_task_retries``: ``max_retries`` each); one Ray will
  not restart is replaced by the driver and the episode queued again, up to ``max_retries`` times, then listed
  in ``report.lost``. A Serve replica that dies mid-request is replaced by Serve and the request sent again.
- A VLM planner is the Ray Serve deployment of ``intentloop serve`` (experiments/serve.py), shared by the
  collectors through its handle (``serve_planner``, ``planner_replicas``): requests that arrive together are
  decoded as one batch (``@serve.batch``). The oracle runs in each collector: it reads privileged state.
- Actors are spread over the nodes of a cluster; each result records the node that ran it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import ray
from intentloop.agents.episode_store import episode_row, read_store, write_shard
from intentloop.experiments.common import start_ray, writable_folder
from intentloop.experiments.serve import ACTOR_ENV, planner_app  # first: it sets Serve's env before ray.serve loads
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, WorkerCrashedError
from tqdm import tqdm

PLANNER_APP = "collect-planner"
DIED = (RayActorError, ActorDiedError, ActorUnavailableError, WorkerCrashedError)


@dataclass(frozen=True)
class EpisodeJob:
    episode_id: str  # unique and deterministic: the shard's name
    seed: int
    split: str = "train"
    chain_length: int = 1
    phrasings: str = "train"
    task: str = "chain"
    draw: int = 0  # which run of this seed: 0, or another stream of the planner's sampling and exploration


@dataclass
class CollectReport:
    results: list[dict] = field(default_factory=list)  # EpisodeResult.to_dict() + episode_id + node_id
    skipped: list[str] = field(default_factory=list)  # already in the store
    lost: list[str] = field(default_factory=list)  # their collectors died more than max_retries times
    dead_workers: int = 0  # collectors Ray restarted (one that died twice before its next episode counts once)
    planner_stats: dict | None = None  # served: intents answered, largest and mean batch they were decoded in
    seconds: float = 0.0
    episodes_per_s: float = 0.0


def _config(d: dict):
    from omegaconf import OmegaConf

    return OmegaConf.create(d)


def _one_thread() -> None:
    """One torch thread per collector (they share the cores), if what it built uses torch: an oracle or text
    planner with scripted skills and the predicates never loads it."""
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


class ServedPlanner:
    """The Planner protocol over the planner deployment's handle (experiments/serve.py): sends only what a robot
    has (no privileged state) and keeps the size of the batch each answer was decoded in."""

    def __init__(self, handle, name: str):
        self.handle, self.name = handle, name
        self.think, self.last_thoughts, self.batches = handle.thinks.remote().result(), [], []

    def reset(self) -> None:
        pass

    def plan(self, inp, retries: int = 3) -> str:
        for attempt in range(retries + 1):  # a replica that dies mid-request: Serve routes the retry to a live one
            try:
                request = self.handle.plan.remote(
                    inp.instruction, inp.image, list(inp.history), list(inp.feedback), inp.sample_seed
                )
                answer = request.result()
                break
            except DIED:
                if attempt == retries:
                    raise
        self.last_thoughts = [answer["thought"]]
        self.batches.append(answer["batch"])
        return answer["intent"]


def deploy_planner(planner: dict, replicas: int = 1, image_size=96):
    """(a handle on the planner deployment collectors share, its name); replaced in place if it runs already."""
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # its INFO lines per deployment drown the progress bars
    serve.start(proxy_location="Disabled")  # collectors use handles; `intentloop serve` opens the HTTP route
    return serve.run(planner_app(planner, replicas, image_size), name=PLANNER_APP, route_prefix=None), planner["name"]


@ray.remote(num_cpus=1)
class Collector:
    def __init__(self, backend: str, planner: dict, skills: dict, env: dict, agent: dict, epsilon: float,
                 store: str | None, served=None):  # fmt: skip
        self.backend, self.env_cfg, self.store, self.envs = backend, env, store, {}
        self.restarted = ray.get_runtime_context().was_current_actor_reconstructed  # reported with the next episode
        self.planner, self.agent = build_agent(backend, planner, skills, env, agent, epsilon, store is not None, served)
        _one_thread()  # before the first episode: its skills and planner run in torch, if any do
        self.served = self.planner.planner if served is not None else None  # the ServedPlanner: its batch sizes

    def _env(self, job: EpisodeJob):
        key = (job.task, job.split, job.chain_length, job.phrasings)
        if key not in self.envs:
            self.envs[key] = build_env(self.backend, self.env_cfg, job)
        return self.envs[key]

    def run(self, job: EpisodeJob) -> dict:
        self.planner.seed(job.seed if job.draw == 0 else [job.seed, job.draw])
        if self.served is not None:
            self.served.batches = []
        result = self.agent.run_episode(self._env(job), seed=job.seed)
        if self.store is not None:
            write_shard(self.store, [episode_row(result, job.episode_id)], name=job.episode_id)
        node = ray.get_runtime_context().get_node_id()
        restarted, self.restarted = self.restarted, False
        return {**result.to_dict(), "episode_id": job.episode_id, "node_id": node, "restarted": restarted,
                "planner_batches": self.served.batches if self.served is not None else []}  # fmt: skip


def build_agent(backend: str, planner: dict, skills: dict, env: dict, agent: dict, epsilon: float, record: bool,
                served=None):  # fmt: skip
    """(the epsilon planner, the agent) a collector runs; `collect` builds one in the driver first as a check."""
    from intentloop.agents import HierarchicalAgent, make_planner
    from intentloop.agents.detectors import check_detector, make_detector
    from intentloop.agents.exploration import EpsilonPlanner
    from intentloop.policies import make_skills

    inner = ServedPlanner(*served) if served is not None else make_planner(_config(planner))
    explorer = EpsilonPlanner(inner, epsilon)
    detector = make_detector(**(agent.get("detector") or {}))
    check_detector(detector, env.get("image", True), env.get("image_size", 96))
    library = make_skills(skills["name"], env.get("max_delta", 0.03), skills.get("path"), backend=backend,
                          trust_pickle=skills.get("trust_pickle", False))  # fmt: skip
    return explorer, HierarchicalAgent(
        explorer,
        library,
        agent.get("max_steps_per_intent", 60),
        agent.get("max_intents"),
        record=record,
        contracts=agent.get("contracts", True),
        safety=agent.get("safety"),
        detector=detector,
    )


def build_env(backend: str, env: dict, job: EpisodeJob):
    import gymnasium as gym
    import intentloop.envs  # noqa: F401  (registers the env ids)

    knobs = {k: v for k, v in env.items() if k != "phrasings"}
    return gym.make("intentloop/Tabletop-v0", backend=backend, task=job.task, split=job.split,
                    chain_length=job.chain_length, phrasings=job.phrasings, **knobs)  # fmt: skip


def stored_ids(store: str) -> set[str]:
    """Episode ids already in ``store`` (corrupt shards are reported and skipped, so they are collected again)."""
    try:
        return set(read_store(store, columns=["episode_id"])["episode_id"].to_pylist())
    except FileNotFoundError:
        return set()


def _check(jobs: list[EpisodeJob], workers: int, epsilon: float, backend: str, replicas: int, retries: int,
           store: str | None) -> None:  # fmt: skip
    from intentloop.envs.sim.base import BACKENDS
    from intentloop.envs.tasks import PHRASINGS, SPLITS

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {retries}")
    if store is not None and "://" not in store:  # a local store: a file in its way is one sentence now
        writable_folder(store, "the episode store")
    if replicas < 1:
        raise ValueError(f"planner_replicas must be >= 1, got {replicas}")
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    ids = [j.episode_id for j in jobs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"episode ids must be unique; repeated: {sorted({i for i in ids if ids.count(i) > 1})[:5]}")
    for j in jobs:
        if j.split not in SPLITS or j.phrasings not in PHRASINGS:
            raise ValueError(f"job {j.episode_id}: unknown split {j.split!r} or phrasings {j.phrasings!r}")


def _last_error_line(traceback_text: str) -> str:
    """``ValueError: why`` -> ``why``: the sentence at the end of the traceback Ray puts in an actor's error."""
    lines = [line.strip() for line in traceback_text.splitlines() if line.strip()]
    for line in reversed(lines):
        head, sep, rest = line.partition(": ")
        if sep and head.replace(".", "").isidentifier() and head.split(".")[-1][:1].isupper():
            return rest
    return lines[-1] if lines else "no cause reported"


def preflight(jobs: list[EpisodeJob], backend: str, planner: dict, skills: dict, env: dict, agent: dict,
              epsilon: float = 0.0) -> None:  # fmt: skip
    """Build what a collector will build (the agent once, an env per kind of job) here, before Ray starts: a bad
    setting or artefact is one sentence, not dead actors."""
    from intentloop.envs.tasks import PHRASINGS

    if env.get("phrasings", "train") not in PHRASINGS:  # the jobs' phrasings are the ones used; a typo is still one
        raise ValueError(f"unknown env.phrasings {env['phrasings']!r}; choose one of: {', '.join(PHRASINGS)}")
    build_agent(backend, planner, skills, env, agent, epsilon, False)
    for job in {(j.task, j.split, j.chain_length, j.phrasings): j for j in jobs}.values():
        build_env(backend, env, job).close()


def collect(
    jobs: list[EpisodeJob],
    store: str | None,
    *,
    workers: int = 2,
    backend: str = "mujoco",
    planner: dict,
    skills: dict,
    env: dict | None = None,
    agent: dict | None = None,
    epsilon: float = 0.0,
    serve_planner: bool = True,
    planner_replicas: int = 2,
    max_retries: int = 1,
    progress: bool = True,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    on_result=None,
) -> CollectReport:
    """Run ``jobs`` on ``workers`` collector actors; ``store`` None runs without recording (evaluation).
    ``on_result(result, actors)`` is called after every finished episode (tests use it to kill a collector)."""
    _check(jobs, workers, epsilon, backend, planner_replicas, max_retries, store)
    preflight(jobs, backend, planner, skills, env or {}, agent or {}, epsilon)
    started = start_ray(ray_address, num_cpus)
    report, start = CollectReport(), time.monotonic()
    done = stored_ids(store) if store is not None else set()
    report.skipped = [j.episode_id for j in jobs if j.episode_id in done]
    queue = deque(j for j in jobs if j.episode_id not in done)
    served = actors = None
    try:
        if serve_planner and planner["name"] == "vlm" and queue:
            served = deploy_planner(planner, planner_replicas, (env or {}).get("image_size", 96))
        # Ray restarts a dead collector (max_restarts) and runs its in-flight episode again (max_task_retries): a
        # shard is written once under the episode's id, so a re-run is safe. What stays hand-written: a collector
        # that Ray will not restart (killed with no_restart=True, its restarts or its episode's retries spent) is
        # replaced here and the episode queued again, up to max_retries times; and the report counts restarts and
        # lost episodes (Ray does not). Restarts are bounded: a collector crashing at start must not loop forever.
        options = {"scheduling_strategy": "SPREAD", "runtime_env": {"env_vars": ACTOR_ENV},
                   "max_restarts": max_retries, "max_task_retries": max_retries}  # fmt: skip

        def new_actor():
            return Collector.options(**options).remote(backend, planner, skills, env or {}, agent or {}, epsilon,
                                                       store, served)  # fmt: skip

        actors = [new_actor() for _ in range(min(workers, len(queue)))]
        inflight, retries = {}, {}
        for actor in actors:
            job = queue.popleft()
            inflight[actor.run.remote(job)] = (actor, job)
        bar = tqdm(total=len(queue) + len(inflight), desc="collect", unit="ep", disable=not progress)
        while inflight:
            [ref], _ = ray.wait(list(inflight), num_returns=1)
            actor, job = inflight.pop(ref)
            try:
                report.results.append(ray.get(ref))
                report.dead_workers += report.results[-1].pop("restarted")
                bar.update()
                if on_result is not None:
                    on_result(report.results[-1], actors)
            except DIED as err:  # the actor is dead for good, or Ray's retries of the episode are spent
                if getattr(err, "actor_init_failed", False):  # every collector would fail so: stop, with the cause
                    raise ValueError(f"a collector could not start: {_last_error_line(str(err))}") from None
                report.dead_workers += 1
                retries[job.episode_id] = retries.get(job.episode_id, 0) + 1
                if retries[job.episode_id] <= max_retries:
                    queue.appendleft(job)
                else:
                    report.lost.append(job.episode_id)
                    bar.update()
                ray.kill(actor)
                actors[actors.index(actor)] = actor = new_actor()
            if queue:
                job = queue.popleft()
                inflight[actor.run.remote(job)] = (actor, job)
        bar.close()
        batches = [b for r in report.results for b in r.pop("planner_batches")]
        if served is not None:
            report.planner_stats = {"calls": len(batches), "max_batch": max(batches, default=0),
                                    "mean_batch": float(np.mean(batches)) if batches else 0.0,
                                    "replicas": planner_replicas}  # fmt: skip
    finally:
        for actor in actors or []:
            ray.kill(actor)
        if served is not None:
            serve.delete(PLANNER_APP)
        if started:
            ray.shutdown()
    report.seconds = time.monotonic() - start
    report.episodes_per_s = len(report.results) / report.seconds if report.seconds > 0 else float("nan")
    return report


def summary(report: CollectReport) -> dict:
    results = report.results
    return {
        "episodes": len(results),
        "skipped": len(report.skipped),
        "lost": report.lost,
        "dead_workers": report.dead_workers,
        "success_rate": float(np.mean([r["success"] for r in results])) if results else None,
        "avg_chain_length": float(np.mean([r["subgoals_done"] for r in results])) if results else None,
        "seconds": round(report.seconds, 2),
        "episodes_per_s": report.episodes_per_s,
        "nodes": sorted({r["node_id"] for r in results}),
    }

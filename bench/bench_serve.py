"""Planner serving: the Ray Serve deployment against the hand-rolled batching actor it replaces, side by side.

    python bench/bench_serve.py                          # shipped planner, 2 / 4 / 8 concurrent collectors
    python bench/bench_serve.py --concurrency 2 8 --seconds 20 --repeats 3

N client actors (one per simulated collector: each asks for an intent, waits for it, asks again, with a real
camera image and instruction) call the planner for ``--seconds``; per setting: planner calls per second and the
p50 / p99 latency of one call. Settings alternate within each repeat so that load on the shared machine hits
both. ``ActorServer`` below is the ``PlannerServer`` experiments/collect.py had before it used the deployment (a queue,
a sleep and a flush in one asyncio actor), kept here as the baseline; ``served`` is
``intentloop.experiments.serve.PlannerDeployment`` through its handle (what collectors use).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import gymnasium as gym
import intentloop.envs  # noqa: F401  (registers the env ids)
import numpy as np
import ray
from intentloop.agents.planner import PlannerInput
from intentloop.experiments.serve import SERVE_ENV, planner_app  # before ray.serve: its throughput mode
from ray import serve


@ray.remote(num_cpus=0)
class ActorServer:
    """The baseline: concurrent requests that arrive within ``wait_s`` are decoded as one batch."""

    def __init__(self, planner: dict, wait_s: float = 0.002):
        import torch
        from intentloop.agents.planner import make_planner
        from omegaconf import OmegaConf

        torch.set_num_threads(1)
        self.planner, self.wait_s, self.queue = make_planner(OmegaConf.create(planner)), wait_s, []

    async def plan(self, instruction, image, history, feedback=()):
        future = asyncio.get_running_loop().create_future()
        self.queue.append((PlannerInput(instruction, image, history, feedback=list(feedback)), future))
        if len(self.queue) == 1:
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self):
        await asyncio.sleep(self.wait_s)
        batch, self.queue = self.queue, []
        texts = self.planner.plan_batch([inp for inp, _ in batch])
        for (_, future), text in zip(batch, texts, strict=True):
            future.set_result(text)


@ray.remote(num_cpus=0, runtime_env={"env_vars": SERVE_ENV})
class Client:
    def __init__(self, server, served: bool, inputs: list[tuple[str, np.ndarray]]):
        self.server, self.served, self.inputs = server, served, inputs

    def run(self, seconds: float) -> list[float]:
        latencies, end, i = [], time.monotonic() + seconds, 0
        while time.monotonic() < end:
            instruction, image = self.inputs[i % len(self.inputs)]
            start = time.monotonic()
            if self.served:
                self.server.plan.remote(instruction, image, []).result()
            else:
                ray.get(self.server.plan.remote(instruction, image, []))
            latencies.append(time.monotonic() - start)
            i += 1
        return latencies


def measure(server, served: bool, clients: int, seconds: float, inputs) -> dict:
    actors = [Client.remote(server, served, inputs[c::clients] or inputs) for c in range(clients)]
    ray.get([a.run.remote(0.5) for a in actors])  # warm: routers, first batches
    runs = ray.get([a.run.remote(seconds) for a in actors])
    for a in actors:
        ray.kill(a)
    lat = np.concatenate(runs) * 1000
    return {"calls_per_s": len(lat) / seconds, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99))}  # fmt: skip


def startup(planner: dict, replicas: int, inputs, runs: int) -> dict:
    """Seconds from nothing to the first answer, and to remove it again: the actor, and the deployment as
    `collect` deploys and deletes it each call."""
    from intentloop.experiments.collect import PLANNER_APP, deploy_planner

    instruction, image = inputs[0]
    out = {"actor_first_answer_s": [], "served_first_answer_s": [], "served_delete_s": []}
    for _ in range(runs):
        start = time.perf_counter()
        actor = ActorServer.remote(planner)
        ray.get(actor.plan.remote(instruction, image, []))
        out["actor_first_answer_s"].append(time.perf_counter() - start)
        ray.kill(actor)
        start = time.perf_counter()
        handle, _ = deploy_planner(planner, replicas)
        handle.plan.remote(instruction, image, []).result()
        out["served_first_answer_s"].append(time.perf_counter() - start)
        start = time.perf_counter()
        serve.delete(PLANNER_APP)
        out["served_delete_s"].append(time.perf_counter() - start)
    return {k: [round(x, 2) for x in v] for k, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--model", default="shipped")
    p.add_argument("--replicas", type=int, default=1, help="replicas of the deployment (the actor is one)")
    p.add_argument("--startup", type=int, default=0, help="also time this many start-ups of each, then exit")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    env = gym.make("intentloop/Tabletop-v0", task="clear")
    inputs = [(o["instruction"], o["image"]) for o in (env.reset(seed=s)[0] for s in range(16))]
    env.close()
    planner = {"name": "vlm", "model_path": a.model}
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    if a.startup:
        print("start-up", json.dumps(startup(planner, a.replicas, inputs, a.startup)), flush=True)
        ray.shutdown()
        return
    actor = ActorServer.remote(planner)
    serve.start(proxy_location="Disabled")  # collectors reach the deployment through handles: no HTTP proxy
    handle = serve.run(planner_app(planner, replicas=a.replicas), name="bench", route_prefix=None)
    results = {c: {"actor": [], "served": []} for c in a.concurrency}
    for rep in range(a.repeats):
        for c in a.concurrency:
            order = ("actor", "served") if rep % 2 == 0 else ("served", "actor")
            for name in order:
                server = handle if name == "served" else actor
                results[c][name].append(measure(server, name == "served", c, a.seconds, inputs))
    ray.shutdown()  # Serve goes with it
    table = {}
    for c, by in results.items():
        mean = {n: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for n, rs in by.items()}
        mean["ratio_calls_per_s"] = mean["served"]["calls_per_s"] / mean["actor"]["calls_per_s"]
        table[c] = mean
        print(f"{c} clients: actor {mean['actor']['calls_per_s']:.1f} calls/s (p50 {mean['actor']['p50_ms']:.1f} "
              f"p99 {mean['actor']['p99_ms']:.1f} ms) | served {mean['served']['calls_per_s']:.1f} calls/s "
              f"(p50 {mean['served']['p50_ms']:.1f} p99 {mean['served']['p99_ms']:.1f} ms) | "
              f"ratio {mean['ratio_calls_per_s']:.2f}")  # fmt: skip
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"seconds": a.seconds, "repeats": a.repeats, "model": a.model, "replicas": a.replicas,
                       "by_concurrency": table}, f,
                      indent=2)  # fmt: skip


if __name__ == "__main__":
    main()

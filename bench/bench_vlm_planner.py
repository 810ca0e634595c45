"""Measure the VLM planner: closed-loop success and chain length, parse rate of its outputs, planning latency.

python bench/bench_vlm_planner.py --model runs/train_planner/<date>/planner --episodes 50
python bench/bench_vlm_planner.py --parse-calls 1000 --skip closed-loop latency   # random default model

closed-loop: HierarchicalAgent(VLMPlanner, ScriptedSkill) on intentloop/Tabletop-v0 (mujoco), train and heldout
             splits, chains of 1 and 5, seeds seed..seed+episodes-1, via intentloop.experiments.evaluation.evaluate.
parse:       closed-loop episodes on unseen (heldout) and seen phrasings until --parse-calls planner calls; every
             output is checked with parse_intent(text, BLOCKS, ZONES).
latency:     median wall time of plan() at batch 1 and of plan_batch() at batch 16, one torch thread. With
             --compare-patch P, also a default-architecture planner with P-pixel patches (24: the 16-token
             vision of the earlier default), timed interleaved with the first on the same inputs, and the ratio.
             With --compare-generate, also the same model decoding every intent with transformers' `generate`
             (VLMPlanner.fast_greedy off: the planner before agents/vlm/constrained.py greedy_intent), and the ratio.
             With --think-model M, also M as a thinking planner (planner.think: a thought, then the intent),
             timed the same way beside the first (the thought's latency target is 50 ms at batch 1).
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import intentloop.envs  # noqa: F401
import numpy as np
import torch
import transformers
from intentloop.agents import HierarchicalAgent, PlannerInput
from intentloop.agents.vlm import VLMPlanner
from intentloop.agents.vlm.configuration import VLMModelConfig
from intentloop.envs.intents import InvalidIntent, parse_intent
from intentloop.envs.scene import BLOCKS, ZONES
from intentloop.experiments.evaluation import evaluate
from intentloop.policies import ScriptedSkill


class ParseCounter:
    """Wraps a planner and checks that each of its answers parses in the scene."""

    def __init__(self, planner):
        self.planner, self.name, self.calls, self.parsed = planner, planner.name, 0, 0
        self.inputs: list[PlannerInput] = []

    def reset(self):
        self.planner.reset()

    def plan(self, inp):
        text = self.planner.plan(inp)
        self.calls += 1
        self.inputs.append(PlannerInput(inp.instruction, inp.image, list(inp.history)))
        try:
            parse_intent(text, BLOCKS, ZONES)
            self.parsed += 1
        except InvalidIntent:
            pass
        return text


def closed_loop(planner, episodes: int, seed: int) -> dict:
    out = {}
    for split in ("train", "heldout"):
        for length in (1, 5):
            env = gym.make("intentloop/Tabletop-v0", split=split, chain_length=length)
            metrics, _ = evaluate(
                env, HierarchicalAgent(planner, ScriptedSkill()), list(range(seed, seed + episodes)), progress=False
            )
            env.close()
            keep = ("episodes", "success_rate", "avg_chain_length", "invalid_intents", "intents_per_episode")
            out[f"{split}/chain{length}"] = {k: metrics[k] for k in keep} | {"seeds": f"{seed}..{seed + episodes - 1}"}
            print(split, length, json.dumps(out[f"{split}/chain{length}"]), flush=True)
    return out


# (phrasings, split, chain length, share of the calls): 60 % of the calls see unseen phrasings
PARSE_MIX = (
    ("heldout", "heldout", 5, 0.3),
    ("heldout", "train", 3, 0.2),
    ("heldout", "heldout", 1, 0.1),
    ("train", "train", 5, 0.2),
    ("train", "heldout", 2, 0.2),
)


def parse_rate(planner, calls: int, seed: int) -> tuple[dict, list[PlannerInput]]:
    counter, out, s = ParseCounter(planner), {}, seed
    for phrasings, split, length, share in PARSE_MIX:
        env = gym.make("intentloop/Tabletop-v0", split=split, chain_length=length, phrasings=phrasings)
        agent, start = HierarchicalAgent(counter, ScriptedSkill()), counter.calls
        while counter.calls - start < share * calls:
            agent.run_episode(env, seed=s)
            s += 1
        env.close()
        out[f"{phrasings} phrasings/{split}/chain{length}"] = counter.calls - start
    out["total"] = {"calls": counter.calls, "parsed": counter.parsed, "fraction": counter.parsed / counter.calls}
    return out, counter.inputs


def _time(call, arg) -> float:
    t = time.perf_counter()
    call(arg)
    return time.perf_counter() - t


def latency(planners: list, inputs: list[PlannerInput], repeats: int = 200) -> list[dict]:
    """Per planner: batch-1 and batch-16 medians; the planners take turns on each input (same load, same inputs)."""
    one = [[] for _ in planners]
    for i in range(repeats):
        for k, planner in enumerate(planners):
            one[k].append(_time(planner.plan, inputs[i % len(inputs)]))
    sixteen = [[] for _ in planners]
    for i in range(max(10, repeats // 10)):
        batch = [inputs[(16 * i + j) % len(inputs)] for j in range(16)]
        for k, planner in enumerate(planners):
            sixteen[k].append(_time(planner.plan_batch, batch))
    out = []
    for a, b in zip(one, sixteen, strict=True):
        b1, b16 = np.median(a[5:]) * 1e3, np.median(b[2:]) * 1e3
        out.append(
            {
                "batch1_ms": round(b1, 2),
                "batch1_p90_ms": round(np.percentile(a[5:], 90) * 1e3, 2),
                "batch16_ms_per_call": round(b16, 2),
                "batch16_ms_per_intent": round(b16 / 16, 2),
            }
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="save_pretrained folder; default: the random tiny default model")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parse-calls", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip", nargs="*", default=[], choices=["closed-loop", "parse", "latency"])
    p.add_argument("--compare-patch", type=int, default=None, help="also time a default planner with these patches")
    p.add_argument("--compare-generate", action="store_true", help="also time the same model through generate")
    p.add_argument("--think-model", default=None, help="also time this model as a thinking planner")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    transformers.logging.set_verbosity_error()
    planner, results = VLMPlanner(a.model), {"model": a.model or "default (random)"}
    if "closed-loop" not in a.skip:
        results["closed_loop"] = closed_loop(planner, a.episodes, a.seed)
    inputs = []
    if "parse" not in a.skip or "latency" not in a.skip:
        results["parse"], inputs = parse_rate(planner, a.parse_calls if "parse" not in a.skip else 50, a.seed + 50_000)
        print("parse", json.dumps(results["parse"]), flush=True)
    if "latency" not in a.skip:
        planners = [planner]
        if a.compare_patch:
            planners.append(VLMPlanner(model_config=VLMModelConfig(patch_size=a.compare_patch)))
        if a.compare_generate:
            planners.append(VLMPlanner(model=planner.model, processor=planner.processor))
            planners[-1].fast_greedy = False
        if a.think_model:
            planners.append(VLMPlanner(a.think_model, think=True))
        timed = latency(planners, inputs)
        results["latency"] = timed[0]
        if a.compare_patch:
            results[f"latency_patch{a.compare_patch}"] = timed[1]
            results["latency_ratio_batch1"] = round(timed[0]["batch1_ms"] / timed[1]["batch1_ms"], 3)
        if a.compare_generate:
            k = 1 + bool(a.compare_patch)
            results["latency_generate"] = timed[k]
            results["latency_ratio_to_generate_batch1"] = round(timed[0]["batch1_ms"] / timed[k]["batch1_ms"], 3)
        if a.think_model:
            results["latency_think"] = timed[-1]
            results["latency_think_ratio_batch1"] = round(timed[-1]["batch1_ms"] / timed[0]["batch1_ms"], 3)
        print("latency", json.dumps({k: v for k, v in results.items() if k.startswith("latency")}), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

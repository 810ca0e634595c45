"""Does the planner read an argument from the instruction, or from which pairs it saw in training?

python bench/bench_compositions.py --model shipped [--model runs/other/planner ...] [--seeds 3]

For every push (block x direction) and place (block x zone, block x block) composition, a one-unit instruction
("Push the red block to the left.", "Put the red block in the blue zone.", "Stack the red block on the green
block.") on a fresh scene (seeds 0..--seeds-1, MuJoCo), teacher-forced up to the argument: the planner's
probability of the named argument among the grammar's choices (renormalised over them), averaged over the
train compositions and over the held-out ones (envs/tasks.py, `heldout_compositions`). A planner that reads
the instruction scores both alike; one that learned which pairs exist puts ~0 on the held-out ones.
"""

from __future__ import annotations

import argparse

import numpy as np


def probabilities(model_path: str, seeds: int) -> dict[tuple[str, bool], list[float]]:
    import gymnasium as gym
    import intentloop.envs  # noqa: F401
    import torch
    from intentloop.agents.vlm.modeling import load_model
    from intentloop.agents.vlm.processing import build_prompt, encode
    from intentloop.envs.intents import DIRECTIONS
    from intentloop.envs.scene import BLOCKS, ZONES
    from intentloop.envs.tasks import heldout_compositions

    torch.set_num_threads(1)
    model, processor = load_model(model_path)
    tok, held = processor.tokenizer, heldout_compositions(0)
    # the token that decides an argument: the direction word, or the object's colour (intents share them)
    first = {
        w: tok(f" {w.split('_')[0]}", add_special_tokens=False)["input_ids"][0] for w in [*DIRECTIONS, *BLOCKS, *ZONES]
    }
    says = {"left": "to the left", "right": "to the right", "forward": "forward", "backward": "backward"}
    env = gym.make("intentloop/Tabletop-v0", task="chain", chain_length=1)
    out: dict[tuple[str, bool], list[float]] = {}
    for seed in range(seeds):
        image = env.reset(seed=seed)[0]["image"]
        for b in BLOCKS:
            colour = b.split("_")[0]
            cases = [("push", d, f"Push the {colour} block {says[d]}.", list(DIRECTIONS)) for d in DIRECTIONS]
            cases += [("place", z, f"Put the {colour} block in the {z.replace('_', ' ')}.", list(ZONES)) for z in ZONES]
            others = [o for o in BLOCKS if o != b]
            cases += [("place", o, f"Stack the {colour} block on the {o.replace('_', ' ')}.", others) for o in others]
            for skill, arg, text, choices in cases:
                prefix = tok(f"{skill}({b}, ", add_special_tokens=False)["input_ids"]
                batch = encode(processor, [build_prompt(processor, text, [], 12)], [image])
                ids = torch.cat([batch["input_ids"], torch.tensor([prefix])], 1)
                pixels = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
                with torch.no_grad():
                    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **pixels).logits[0, -1]
                scores = logits[[first[c] for c in choices]].log_softmax(-1)
                kind = "push" if skill == "push" else ("place_zone" if arg in ZONES else "place_block")
                out.setdefault((kind, (skill, b, arg) in held), []).append(float(scores[choices.index(arg)].exp()))
    env.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, help="a planner folder, or 'shipped'; repeatable")
    p.add_argument("--seeds", type=int, default=3, help="scenes (camera images) per composition")
    a = p.parse_args()
    print("| planner | composition | p(named argument), train | p(named argument), held-out |\n|---|---|---|---|")
    for model in a.model:
        probs = probabilities(model, a.seeds)
        for kind in ("push", "place_zone", "place_block"):
            tr, ho = probs[(kind, False)], probs[(kind, True)]
            print(f"| {model} | {kind} | {np.mean(tr):.3f} (n={len(tr)}) | {np.mean(ho):.3f} (n={len(ho)}) |")


if __name__ == "__main__":
    main()

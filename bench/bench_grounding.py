"""Can the planner architecture learn to look? A perception probe on one goal-level family's first step.

python bench/bench_grounding.py --family clear --scenes 8000 --steps 1500 [--patch 16] [--captions 1] [--model PATH]

Builds ``--scenes`` first-step examples (fresh arranged scenes of ``--family``, the oracle's first intent; see
`agents.vlm.data.scene_examples`), trains the default model (or fine-tunes ``--model``) on all but 300 of them,
and scores the 300 held-out scenes twice, with the real camera image and with it zeroed: teacher-forced loss
and exact match of the intent. For ``clear`` the intent names the block in the zone, which only the image
shows, so a gap between the two columns is the image being used; no gap means the vision tower is ignored.
``--captions`` adds that fraction of the scenes' captions (`agents.vlm.data.scene_caption`) to the training
examples; ``--position-init`` scales the sine-cosine start of the patch positions (0: CLIP's own start).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from intentloop.agents.vlm.configuration import DataSettings, TrainSettings, VLMModelConfig
from intentloop.agents.vlm.data import scene_examples
from intentloop.agents.vlm.modeling import build_default_model, load_model
from intentloop.agents.vlm.training import evaluate_examples, train_planner


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="clear")
    p.add_argument("--scenes", type=int, default=4000)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--captions", type=float, default=0.0, help="fraction of scenes also captioned")
    p.add_argument("--position-init", type=float, default=VLMModelConfig.position_init)
    p.add_argument("--model", default=None, help="fine-tune this planner instead of a fresh default model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="/tmp/bench_grounding")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    start = time.time()
    settings = DataSettings(families=[a.family], scene_examples=a.scenes, seed=500_000, captions=a.captions)
    examples = scene_examples(settings)
    held_out = {e.episode for e in examples if e.task == "plan"}
    held_out = set(sorted(held_out)[:300])  # 300 scenes, with their captions, never trained on
    val = [e for e in examples if e.episode in held_out and e.task == "plan"]
    train = [e for e in examples if e.episode not in held_out]
    np.random.default_rng(0).shuffle(train)
    config = VLMModelConfig(patch_size=a.patch, position_init=a.position_init)
    model, processor = load_model(a.model) if a.model else build_default_model(config)
    settings = TrainSettings(steps=a.steps, lr=a.lr, warmup_steps=20, eval_every=10**9, threads=a.threads)
    train_planner(model, processor, train, val[:32], a.out, settings, progress=True)
    blank = [dataclasses.replace(e, image=np.zeros_like(e.image)) for e in val]
    real, zero = evaluate_examples(model, processor, val), evaluate_examples(model, processor, blank)
    print(
        f"{a.family}: {len(train)} examples ({a.captions} captions), {a.steps} steps, patch {a.patch}, position "
        f"init {a.position_init}: held-out exact match "
        f"{real['exact_match']:.3f} with the image, {zero['exact_match']:.3f} blank; loss {real['loss']:.3f} / "
        f"{zero['loss']:.3f} ({time.time() - start:.0f} s)"
    )


if __name__ == "__main__":
    main()

"""`VLMPlanner`: a transformers image-text-to-text model as the System-2 planner.

It reads only what a robot has: ``inp.instruction``, ``inp.image`` and ``inp.history`` (never the privileged
``obs`` / ``task``), and writes the next intent through constrained decoding, so every answer parses.

    planner = VLMPlanner()                                  # tiny default model, random weights
    planner = VLMPlanner(model_path="runs/.../planner")     # any local image-text-to-text checkpoint
    planner = VLMPlanner(model_path="shipped")              # the trained planner the package ships
    planner.plan(PlannerInput(instruction, image, history)) # -> "place(red_block, blue_zone)"
    planner = VLMPlanner(model_path=..., think=True)         # a thought first (a model trained with train.think)
    planner.last_thoughts                                   # -> ["blue: red. orange: none. ... holding: none."]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from intentloop.agents.planner import PlannerInput, refused_since_last_run
from intentloop.agents.vlm.configuration import VLMModelConfig
from intentloop.agents.vlm.constrained import (
    IntentComplete,
    IntentConstraint,
    IntentTrie,
    SeededSampling,
    greedy_intent,
    split_thought,
)
from intentloop.agents.vlm.modeling import THINKS, build_default_model, load_model
from intentloop.agents.vlm.processing import NEXT, build_prompt, check_image, encode
from intentloop.envs.intents import valid_intents
from intentloop.envs.scene import BLOCKS, ZONES
from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList


class VLMPlanner:
    """Greedy by default; ``temperature > 0`` samples (for exploration), still only over valid intents, each input
    with a `sample_seed` from its own random stream (`SeededSampling`: batching changes no draw). With
    ``avoid_refused`` (default) decoding also leaves out the intents refused since the last one that ran
    (`refused_since_last_run`): nothing has moved, so they would be refused again. With ``think`` the model first
    writes a thought (at most ``max_thought`` tokens, free text up to ``next:``), then the constrained intent;
    ``last_thoughts`` holds the thoughts of the last call (empty strings without ``think``). ``think=None`` (the
    default) thinks if the checkpoint was trained to (``train.think``; its config's ``intentloop_think``)."""

    name = "vlm"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        temperature: float = 0.0,
        max_history: int = 12,
        avoid_refused: bool = True,
        think: bool | None = None,
        max_thought: int = 48,
        model_config: VLMModelConfig | None = None,
        blocks: Sequence[str] = BLOCKS,
        zones: Sequence[str] = ZONES,
        device: str = "cpu",
        model=None,
        processor=None,
    ):
        if temperature < 0:
            raise ValueError(f"`temperature` must be >= 0 (0: greedy). Got {temperature}.")
        if (model is None) != (processor is None):
            raise ValueError("pass `model` and `processor` together, or neither")
        if model is None:
            model, processor = load_model(model_path) if model_path else build_default_model(model_config)
        self.model, self.processor, self.device = model.to(device).eval(), processor, device
        self.temperature, self.max_history, self.avoid_refused = temperature, max_history, avoid_refused
        if max_thought < 1:
            raise ValueError(f"`max_thought` must be >= 1 token. Got {max_thought}.")
        if think is None:  # as the checkpoint was trained (train_planner records it in the model's config)
            think = bool(getattr(model.config, THINKS, False))
        self.think, self.max_thought, self.last_thoughts, self.last_thought_tokens = think, max_thought, [], []
        # Greedy batch-1 intents skip `generate` for `greedy_intent` (the same choice, fewer forward passes).
        self.fast_greedy = True
        tok = processor.tokenizer
        tok.padding_side = "left"  # every prompt of a batch ends where generation starts
        self.trie = IntentTrie(tok, valid_intents(tuple(blocks), tuple(zones)))
        self.marker = tuple(tok(NEXT, add_special_tokens=False)["input_ids"]) if think else None
        image_token = tok.convert_tokens_to_ids(processor.image_token) if hasattr(processor, "image_token") else None
        self.special = tuple(t for t in (tok.bos_token_id, tok.unk_token_id, image_token) if t is not None)
        # Decoding is the planner's: a checkpoint's own generation defaults (penalties, top-k...) do not apply.
        self.model.generation_config = GenerationConfig(
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=self.trie.pad
        )

    @classmethod
    def from_config(cls, cfg) -> VLMPlanner:
        """From the ``planner`` config node (configs/planner/vlm.yaml) or any object with the same attributes."""
        model = getattr(cfg, "model", None)
        if model is not None and not isinstance(model, VLMModelConfig):
            model = VLMModelConfig(**dict(model))
        return cls(
            getattr(cfg, "model_path", None),
            temperature=getattr(cfg, "temperature", 0.0),
            max_history=getattr(cfg, "max_history", 12),
            avoid_refused=getattr(cfg, "avoid_refused", True),
            think=getattr(cfg, "think", None),
            max_thought=getattr(cfg, "max_thought", 48),
            model_config=model,
            device=getattr(cfg, "device", "cpu"),
        )

    def reset(self) -> None:
        pass

    def plan(self, inp: PlannerInput) -> str:
        return self.plan_batch([inp])[0]

    @torch.no_grad()
    def plan_batch(self, inputs: Sequence[PlannerInput]) -> list[str]:
        """One intent per input, decoded together (left-padded batch)."""
        if not inputs:
            return []
        prompts = [
            build_prompt(self.processor, i.instruction, i.history, self.max_history, i.feedback, self.think)
            for i in inputs
        ]
        batch = encode(self.processor, prompts, [check_image(i.image) for i in inputs]).to(self.device)
        n = batch["input_ids"].shape[1]
        banned = [refused_since_last_run(i.history) for i in inputs] if self.avoid_refused else None
        if self.fast_greedy and len(inputs) == 1 and self.temperature == 0 and not self.think:
            self.last_thoughts, self.last_thought_tokens = [""], [0]
            return [self.trie.decode(greedy_intent(self.model, batch, self.trie, banned[0] if banned else frozenset()))]
        thought_len = self.max_thought + len(self.marker) if self.think else 0
        processors = [IntentConstraint(self.trie, n, banned, self.marker, self.max_thought, self.special)]
        if self.temperature > 0:  # one random stream per input; one without a key draws its own from torch's
            seeds = [int(torch.randint(2**31, ())) if i.sample_seed is None else i.sample_seed for i in inputs]
            processors.append(SeededSampling(seeds, self.temperature))
        out = self.model.generate(
            **batch,
            max_new_tokens=thought_len + self.trie.max_len + 1,
            logits_processor=LogitsProcessorList(processors),
            stopping_criteria=StoppingCriteriaList([IntentComplete(self.trie, n, self.marker)]),
        )
        rows = [split_thought(row, self.marker) for row in out[:, n:].tolist()]
        self.last_thought_tokens = [len(thought) for thought, _ in rows]  # generated, before decoding to text
        tok = self.processor.tokenizer
        # a word-level tokenizer decodes "blue : red ." (spaces between all tokens): punctuation sits back on its word
        texts = [tok.decode(thought, skip_special_tokens=True) for thought, _ in rows]
        self.last_thoughts = [re.sub(r" +([:.,;])", r"\1", t) for t in texts]
        return [self.trie.decode(intent) for _, intent in rows]

    def save_pretrained(self, path: str | Path) -> None:
        """Model and processor, readable by ``VLMPlanner(model_path=path)`` and by transformers' Auto classes."""
        self.model.save_pretrained(path)
        self.processor.save_pretrained(path)

"""`VLMPlanner`: a transformers image-text-to-text model as the System-2 planner.

It reads only what a robot has: ``inp.instruction``, ``inp.image`` and ``inp.history`` (never the privileged
``obs`` / ``task``), and writes the next intent through constrained decoding, so every answer parses.

    planner = VLMPlanner()                                  # tiny default model, random weights
    planner = VLMPlanner(model_path="runs/.../planner")     # any local image-text-to-text checkpoint
    planner = VLMPlanner(model_path="shipped")              # the trained planner the package ships
    planner.plan(PlannerInput(instruction, image, history)) # -> "place(red_block, blue_zone)"
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from intentloop.agents.planner import PlannerInput, refused_since_last_run
from intentloop.agents.vlm.configuration import VLMModelConfig
from intentloop.agents.vlm.constrained import IntentComplete, IntentConstraint, IntentTrie, valid_intents
from intentloop.agents.vlm.modeling import build_default_model, load_model
from intentloop.agents.vlm.processing import build_prompt, check_image, encode
from intentloop.envs.scene import BLOCKS, ZONES
from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList


class VLMPlanner:
    """Greedy by default; ``temperature > 0`` samples (for exploration), still only over valid intents. With
    ``avoid_refused`` (default) decoding also leaves out the intents refused since the last one that ran
    (`refused_since_last_run`): nothing has moved, so they would be refused again."""

    name = "vlm"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        temperature: float = 0.0,
        max_history: int = 12,
        avoid_refused: bool = True,
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
        tok = processor.tokenizer
        tok.padding_side = "left"  # every prompt of a batch ends where generation starts
        self.trie = IntentTrie(tok, valid_intents(tuple(blocks), tuple(zones)))
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
        prompts = [build_prompt(self.processor, i.instruction, i.history, self.max_history, i.feedback) for i in inputs]
        batch = encode(self.processor, prompts, [check_image(i.image) for i in inputs]).to(self.device)
        n = batch["input_ids"].shape[1]
        sampling = {"do_sample": True, "temperature": self.temperature} if self.temperature > 0 else {}
        banned = [refused_since_last_run(i.history) for i in inputs] if self.avoid_refused else None
        out = self.model.generate(
            **batch,
            max_new_tokens=self.trie.max_len + 1,
            logits_processor=LogitsProcessorList([IntentConstraint(self.trie, n, banned)]),
            stopping_criteria=StoppingCriteriaList([IntentComplete(self.trie, n)]),
            **sampling,
        )
        return [self.trie.decode(row) for row in out[:, n:].tolist()]

    def save_pretrained(self, path: str | Path) -> None:
        """Model and processor, readable by ``VLMPlanner(model_path=path)`` and by transformers' Auto classes."""
        self.model.save_pretrained(path)
        self.processor.save_pretrained(path)

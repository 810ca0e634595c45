"""The planner's prompt and its encoding: instruction + history of intents and outcomes + the camera image.

One prompt for training and inference::

    <image>Put the red block in the blue zone. history: pick(red_block) ok. next:

A checkpoint whose processor has a chat template gets the same text inside one user turn instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from intentloop.agents.planner import IntentOutcome

HISTORY, NEXT, NO_HISTORY, OK, FAILED = "history:", "next:", "none", "ok", "failed"
PROMPT_WORDS = (
    HISTORY,
    NEXT,
    NO_HISTORY,
    OK,
    FAILED,
    "achieved",
    "timeout",
    "episode ended",
    "invalid",
    "rejected",
    "precondition",
)


def outcome_text(outcome: IntentOutcome) -> str:
    """``pick(red_block) ok`` or ``place(red_block, blue_zone) failed timeout`` (the reason's first word group:
    ``rejected`` for an intent a contract or safety rule refused, without the rule's free text)."""
    if outcome.success:
        return f"{outcome.intent} {OK}"
    return f"{outcome.intent} {FAILED} {outcome.reason.split(':')[0]}"


def prompt_text(instruction: str, history: Sequence[IntentOutcome], max_history: int) -> str:
    shown = "; ".join(outcome_text(o) for o in list(history)[-max_history:]) if max_history else ""
    return f"{instruction} {HISTORY} {shown or NO_HISTORY}. {NEXT}"


def build_prompt(processor, instruction: str, history: Sequence[IntentOutcome], max_history: int = 12) -> str:
    """The full prompt string, image placeholder included, for ``processor``."""
    text = prompt_text(instruction, history, max_history)
    if getattr(processor, "chat_template", None):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return f"{processor.image_token}{text}"


def encode(processor, prompts: list[str], images: list[np.ndarray]):
    """A batch for ``model(...)`` / ``model.generate(...)``: padded ids, attention mask and pixel values."""
    return processor(text=prompts, images=[[img] for img in images], padding=True, return_tensors="pt")


def check_image(image) -> np.ndarray:
    if image is None:
        raise ValueError("the VLM planner needs the camera image: make the env with image=True")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"the planner's image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    return image

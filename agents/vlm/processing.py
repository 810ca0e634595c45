"""The planner's prompt and its encoding: instruction + history of intents and outcomes + the camera image.

One prompt for training and inference::

    <image>Put the red block in the blue zone. history: pick(red_block) ok. next:
    <image>Put the red block in the blue zone. history: pick(red_block) failed interrupted; user: no, the
        yellow one. next:

What the user said during the episode sits in the history where it arrived (``user: <text>``). A thinking
planner (``planner.think``) is asked ``scene:`` instead of ``next:`` and writes a thought first::

    <image>Clear the blue zone. history: none. scene:  ->  blue: red purple. orange: none. cyan: none.
        holding: none. next: pick(purple_block)

Training also asks ``<image>scene:`` for a description of the image (`scene_prompt`; agents/vlm/data.py).

A checkpoint whose processor has a chat template gets the same text inside one user turn instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from intentloop.agents.planner import IntentOutcome

HISTORY, NEXT, NO_HISTORY, OK, FAILED, USER = "history:", "next:", "none", "ok", "failed", "user:"
SCENE = "scene:"  # the prompt of the second training task: describe the camera image (agents/vlm/data.py)
SCENE_WORDS = ("zone:", "stacks:", "holding:", "on", "left to right:", "near to far:")
PROMPT_WORDS = (
    SCENE,
    *SCENE_WORDS,
    HISTORY,
    USER,
    "interrupted",
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


def prompt_text(
    instruction: str,
    history: Sequence[IntentOutcome],
    max_history: int,
    feedback: Sequence[tuple[int, str]] = (),
    think: bool = False,
) -> str:
    """The instruction, then the last ``max_history`` entries of the history: outcomes and user utterances; ends
    with ``next:`` (the intent follows), or with ``think`` ``scene:`` (a thought, then ``next:`` and the intent)."""
    items = [(at, 1, f"{USER} {said}") for at, said in feedback]
    items += [(i + 1, 0, outcome_text(o)) for i, o in enumerate(history)]  # after outcome i, i + 1 came before
    entries = [text for *_, text in sorted(items)]
    shown = "; ".join(entries[-max_history:]) if max_history else ""
    return f"{instruction} {HISTORY} {shown or NO_HISTORY}. {SCENE if think else NEXT}"


def build_prompt(
    processor,
    instruction: str,
    history: Sequence[IntentOutcome],
    max_history: int = 12,
    feedback: Sequence[tuple[int, str]] = (),
    think: bool = False,
) -> str:
    """The full prompt string, image placeholder included, for ``processor``."""
    text = prompt_text(instruction, history, max_history, feedback, think)
    if getattr(processor, "chat_template", None):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return f"{processor.image_token}{text}"


def scene_prompt(processor) -> str:
    """The prompt that asks for a description of the image instead of an intent (a training task only)."""
    if getattr(processor, "chat_template", None):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": SCENE}]}]
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return f"{processor.image_token}{SCENE}"


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

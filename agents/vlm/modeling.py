"""The planner's model and processor: the tiny default built from a config, or any local HF checkpoint.

``build_default_model(VLMModelConfig())`` composes a Llava from a CLIP vision tower and a Llama text model
with the task-vocabulary tokenizer; nothing is downloaded. ``load_model(path)`` reads a ``save_pretrained``
folder of any image-text-to-text family with ``AutoModelForImageTextToText`` and ``AutoProcessor``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import torch
from intentloop.agents.vlm.configuration import VLMModelConfig
from intentloop.agents.vlm.tokenizer import IMAGE, build_tokenizer
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)
from transformers.utils import logging as hf_logging

# Set in a checkpoint's config by `train_planner` when it was trained to write a thought before each intent
# (TrainSettings.think): VLMPlanner(think=None) then thinks with it.
THINKS = "intentloop_think"


def build_default_model(config: VLMModelConfig | None = None):
    """A randomly initialised tiny Llava and its processor; the same ``config.seed`` gives the same weights."""
    c = config or VLMModelConfig()
    tokenizer = build_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=c.vision_hidden,
        intermediate_size=2 * c.vision_hidden,
        num_hidden_layers=c.vision_layers,
        num_attention_heads=c.vision_heads,
        image_size=c.image_size,
        patch_size=c.patch_size,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=c.text_hidden,
        intermediate_size=c.text_intermediate,
        num_hidden_layers=c.text_layers,
        num_attention_heads=c.text_heads,
        num_key_value_heads=c.text_heads,
        max_position_embeddings=c.max_positions,
        tie_word_embeddings=True,  # the intent's colour token is the instruction's own embedding
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE),
        image_seq_length=c.image_tokens,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",  # drop CLS: image_tokens patch embeddings
    )
    with torch.random.fork_rng():
        torch.manual_seed(c.seed)
        model = LlavaForConditionalGeneration(config)
    if c.position_init:
        embeddings = model.model.vision_tower.embeddings
        with torch.no_grad():  # CLS keeps its random start; the patches get where they are
            embeddings.position_embedding.weight[1:] = c.position_init * grid_positions(
                c.image_size // c.patch_size, c.vision_hidden
            )
    size = {"height": c.image_size, "width": c.image_size}
    image_processor = CLIPImageProcessorPil(size=size, crop_size=size, do_center_crop=False)
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=c.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS
    )
    return model.eval(), processor


def grid_positions(grid: int, dim: int) -> torch.Tensor:
    """(grid * grid, dim) 2-D sine-cosine codes of the patches in raster order: a quarter of the channels each
    for sin and cos of the row and of the column, at frequencies from 1 to 1/10 of pi/2 per patch."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    freqs = 10.0 ** (-torch.arange(dim // 4) / (dim // 4)) * math.pi / 2
    angles = [pos.reshape(-1, 1).float() * freqs for pos in (rows, cols)]
    codes = torch.cat([f(a) for a in angles for f in (torch.sin, torch.cos)], dim=1)
    return torch.nn.functional.pad(codes, (0, dim - codes.shape[1]))


def _cause(e: Exception, folder: Path) -> str:
    """The first clause of an exception message, without the folder's path."""
    text = str(e).replace(str(folder), "the folder").strip().splitlines()
    return (text[0].split(". ")[0] if text else type(e).__name__)[:160]


# The planner the package ships (trained here; docs/BENCHMARKS.md "Planner v4"), loaded by the path "shipped".
SHIPPED = Path(__file__).resolve().parent / "pretrained"


def checkpoint_folder(path: str | Path) -> Path:
    """The folder a planner path names: the shipped planner for ``"shipped"``, else ``path`` itself."""
    return SHIPPED if str(path) == "shipped" else Path(path).expanduser()


@contextmanager
def quiet_loading():
    """transformers' loading without its progress bar and its warnings: the callers check what it would warn
    about (missing, misshapen or non-finite weights, another model type) and say it in one sentence."""
    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def load_model(path: str | Path):
    """Model and processor from a ``save_pretrained`` folder, or the shipped planner for ``"shipped"``; a missing
    or corrupt one fails with one sentence."""
    folder = checkpoint_folder(path)
    if not folder.is_dir():
        what = "a file, not a save_pretrained folder" if folder.exists() else "the directory does not exist"
        raise FileNotFoundError(f"no planner checkpoint at {path}: {what}")
    if not (folder / "config.json").is_file():
        raise ValueError(f"the planner checkpoint at {path} has no config.json: it is not a save_pretrained folder")
    try:
        with quiet_loading():
            model, info = AutoModelForImageTextToText.from_pretrained(folder, output_loading_info=True)
            processor = AutoProcessor.from_pretrained(folder)
    except Exception as e:  # noqa: BLE001  (transformers raises many types; the user needs the path and the cause)
        cause = "weights of another shape than its config.json" if "mismatched" in str(e) else _cause(e, folder)
        raise ValueError(f"the planner checkpoint at {path} is corrupt or incomplete ({cause})") from e
    missing = sorted(info["missing_keys"]) + sorted(k for k, *_ in info["mismatched_keys"])
    if missing:  # transformers only warns and leaves them random
        raise ValueError(f"the planner checkpoint at {path} has weights missing or of the wrong shape "
                         f"({len(missing)}, first: {missing[0]}): it would plan with random ones")  # fmt: skip
    bad = next((n for n, t in model.state_dict().items() if t.is_floating_point() and not t.isfinite().all()), None)
    if bad:
        raise ValueError(f"the planner checkpoint at {path} has non-finite weights (first: {bad})")
    if not hasattr(processor, "image_processor") or not hasattr(processor, "tokenizer"):
        raise ValueError(f"the planner checkpoint at {path} has no image-text processor (processor_config.json)")
    return model.eval(), processor

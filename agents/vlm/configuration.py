"""Settings of the VLM planner: the default model's sizes, the training data and the training loop.

Plain dataclasses with no heavy imports, so the Hydra schemas (configs/planner_schema.py) can use them as
they are. Each ``__post_init__`` names the bad value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from intentloop.envs.goal_tasks import GOAL_FAMILIES, SCENE_FAMILIES, UNTRAINED_FAMILIES  # light: numpy only


@dataclass
class VLMModelConfig:
    """The default planner: a tiny Llava (CLIP vision tower + Llama text model), built here, never downloaded."""

    image_size: int = 96  # square camera image, pixels; the env's image_size
    patch_size: int = 16  # (96 / 16)^2 = 36 image tokens: a block is ~8 px, a zone ~15 px (24 px patches: 16)
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    text_hidden: int = 128
    text_layers: int = 3
    text_heads: int = 4
    text_intermediate: int = 384
    max_positions: int = 512  # longest prompt + intent, tokens
    # Scale of the 2-D sine-cosine start of the vision tower's position embeddings (0: CLIP's N(0, 0.02), which
    # leaves every patch of the plain table alike, so the planner cannot tell where anything is for a long time).
    position_init: float = 1.0
    seed: int = 0  # weight initialisation

    def __post_init__(self):
        if self.position_init < 0:
            raise ValueError(f"`position_init` must be >= 0. Got {self.position_init}.")
        sizes = ("image_size", "patch_size", "vision_hidden", "vision_layers", "vision_heads", "text_hidden",
                 "text_layers", "text_heads", "text_intermediate", "max_positions")  # fmt: skip
        if small := next((name for name in sizes if getattr(self, name) < 1), None):
            raise ValueError(f"`{small}` must be >= 1. Got {getattr(self, small)}.")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"`image_size` must be a multiple of `patch_size`. Got {self.image_size}, {self.patch_size}."
            )
        for hidden, heads, what in (
            (self.vision_hidden, self.vision_heads, "vision"),
            (self.text_hidden, self.text_heads, "text"),
        ):
            if hidden % heads:
                raise ValueError(f"`{what}_hidden` must be a multiple of `{what}_heads`. Got {hidden}, {heads}.")

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def check_camera(backend: str, image_size: int) -> None:
    """A known simulator and a camera image of at least 8 pixels."""
    from intentloop.envs.sim.base import BACKENDS

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if image_size < 8:
        raise ValueError(f"`image_size` must be >= 8 pixels. Got {image_size}.")


def check_extra(counts: dict[str, int], allowed: tuple[str, ...], what: str) -> None:
    """Family -> count >= 0, every family one of ``allowed``."""
    if unknown := [f for f in counts if f not in allowed]:
        raise ValueError(f"`{what}` takes families of {', '.join(allowed)}. Got {unknown}.")
    if bad := {f: n for f, n in counts.items() if not isinstance(n, int) or n < 0}:
        raise ValueError(f"`{what}` counts must be whole numbers >= 0. Got {bad}.")


def check_episodes(episodes: list[int], families: list[str]) -> None:
    """Episode counts per chain length 1..5 and goal-level family names, as the data collectors take them."""
    if not episodes or len(episodes) > 5 or any(n < 0 for n in episodes):
        raise ValueError(f"`episodes` must list 1 to 5 episode counts >= 0 (chain lengths 1..5). Got {episodes}.")
    unknown = [f for f in families if f not in GOAL_FAMILIES]
    if unknown:
        raise ValueError(f"`families` must be goal-level families ({', '.join(GOAL_FAMILIES)}). Got {unknown}.")


@dataclass
class DataSettings:
    """Supervised examples from the scripted oracle on the train split (see agents/vlm/data.py)."""

    episodes: list[int] = field(default_factory=lambda: [300, 300, 400, 500, 700])  # per chain length 1, 2, ...
    families: list[str] = field(  # goal-level ones (envs/goal_tasks.py), all but the never-trained level-4 ones
        default_factory=lambda: [f for f in GOAL_FAMILIES if f not in UNTRAINED_FAMILIES]
    )
    family_episodes: int = 350  # per goal-level family
    # Per goal-level family whose first step depends on the scene (SCENE_FAMILIES): fresh arranged scenes and the
    # oracle's first intent only (a reset and one render each, no skill runs): the bulk of the visual grounding.
    scene_examples: int = 3000
    # More of some families, collected after all of the above with the seeds continuing (so a cache with them still
    # holds the default data, example for example): whole episodes (``data.extra_episodes.clear=1500``) and
    # first-step scenes (``data.extra_scenes.refer=6000``).
    extra_episodes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(GOAL_FAMILIES, 0))
    extra_scenes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SCENE_FAMILIES, 0))
    # Fraction of the recorded images that also give a `scene:` example (the image described in words; see
    # agents/vlm/data.py): the dense signal that teaches the vision tower what is where.
    captions: float = 1.0
    seed: int = 100_000  # episode i uses seed + i; far from the evaluation seeds 0..N
    noise: float = 0.1  # fraction of steps that execute a random intent instead (the label stays the oracle's)
    backend: str = "mujoco"
    image_size: int = 96
    val_fraction: float = 0.05  # episodes kept for validation

    def __post_init__(self):
        check_episodes(self.episodes, self.families)
        if self.family_episodes < 0 or self.scene_examples < 0:
            raise ValueError(f"episode counts must be >= 0. Got {self.family_episodes}, {self.scene_examples}.")
        check_extra(self.extra_episodes, GOAL_FAMILIES, "extra_episodes")
        check_extra(self.extra_scenes, SCENE_FAMILIES, "extra_scenes")
        if not 0.0 <= self.captions <= 1.0:
            raise ValueError(f"`captions` must be in [0, 1]. Got {self.captions}.")
        if not 0.0 <= self.noise < 1.0:
            raise ValueError(f"`noise` must be in [0, 1). Got {self.noise}.")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"`val_fraction` must be in [0, 1). Got {self.val_fraction}.")
        check_camera(self.backend, self.image_size)


@dataclass
class TrainSettings:
    """The supervised fine-tuning loop (see agents/vlm/training.py)."""

    steps: int = 3000
    batch_size: int = 32
    lr: float = 1.0e-3  # peak, after a linear warmup; cosine decay to 10 %
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    max_history: int = 12  # outcomes shown in the prompt, most recent last
    arg_noise: float = 0.0  # fraction of intents whose teacher-forced first argument is swapped (training._target)
    word_noise: float = 0.3  # fraction of instructions given an unseen word or a changed letter (training.garble)
    # Label smoothing over the choices the intent grammar leaves open (skills, blocks, targets, directions):
    # every argument keeps a floor whatever the block, so held-out compositions stay reachable (smoothed_loss).
    arg_smoothing: float = 0.0
    # Teach a thought before each intent (planner.think): labels ``<scene_thought> next: <intent>`` after the
    # prompt ``... scene:`` (agents/vlm/data.py `scene_thought`; data collected since planner v6 carries them).
    think: bool = False
    log_every: int = 25  # steps between TensorBoard scalars
    eval_every: int = 250  # steps between validation passes
    max_minutes: float | None = None  # stop early after this much wall time
    threads: int = 1  # torch CPU threads; more than the free cores is many times slower, not faster
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size", "log_every", "eval_every", "threads", "max_history"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1. Got {getattr(self, name)}.")
        for name in ("arg_noise", "word_noise", "arg_smoothing"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1). Got {getattr(self, name)}.")
        if self.lr <= 0:
            raise ValueError(f"`lr` must be > 0. Got {self.lr}.")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.grad_clip <= 0:
            raise ValueError(f"`warmup_steps` and `weight_decay` must be >= 0 and `grad_clip` > 0. Got "
                             f"{self.warmup_steps}, {self.weight_decay}, {self.grad_clip}.")  # fmt: skip
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"`max_minutes` must be > 0 (or null: no limit). Got {self.max_minutes}.")

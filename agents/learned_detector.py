"""A learned success detector: what a robot can judge from its own camera, proprioception and words.

    detector = LearnedDetector.from_pretrained("runs/train-detector/.../detector")   # `intentloop train-detector`
    agent = HierarchicalAgent(planner, skills, detector=detector)

One small image model answers both of the agent's questions with a success probability:

- ``intent_done(intent, obs, ref)``: asked after every low-level step; the camera image and proprioception
  now and when the intent started, and the intent's words ("place red block blue zone");
- ``task_done(task, obs, info, start=..., heard=...)``: asked once at the end; the images at the start and the
  end of the episode, the instruction and what the user said during it.

It reads ``obs["image"]``, ``obs["proprio"]`` and ``task.instruction`` only: never block poses, zone centres,
the task's intent list or the simulator's predicates (tests/test_learned_detector.py strips them and checks the
verdicts do not change). The simulator labels its training examples (agents/detector_data.py) and scores it.

Model: four images (when the intent started, now, what changed since, what moved in the last step) stacked as
12 channels through four strided convolutions with group norm, each after the first modulated by the text (FiLM);
the words are hashed (the word and its character trigrams, so an unseen word still lands near its spelling) and
read by a GRU; the text also chooses where to look on the 12x12 map (attention pooling); pooled features, text
and the three proprioception vectors go through an MLP to one logit. An intent is done after ``consecutive``
steps in a row at or above its threshold (a one-frame flicker does not stop a skill). A `transformers`
PreTrainedModel: ``save_pretrained`` writes config.json and safetensors, nothing that runs code.
"""

from __future__ import annotations

import re
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from intentloop.agents.vlm.modeling import quiet_loading
from intentloop.envs.intents import Intent
from intentloop.envs.tasks import Task
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

INTENT, TASK = "intent", "task"  # the first word of the text: which question is asked


class DetectorConfig(PretrainedConfig):
    model_type = "intentloop_detector"

    def __init__(
        self,
        image_size: int = 96,
        channels: tuple[int, ...] = (32, 64, 64, 64),
        text_dim: int = 64,
        buckets: int = 4096,
        max_words: int = 64,
        proprio_dim: int = 7,
        hidden: int = 128,
        intent_threshold: float = 0.5,  # chosen on validation episodes by `intentloop train-detector`
        task_threshold: float = 0.5,
        consecutive: int = 1,  # an intent is done after this many steps in a row at or above intent_threshold
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_size, self.channels, self.text_dim = image_size, list(channels), text_dim
        self.buckets, self.max_words, self.proprio_dim, self.hidden = buckets, max_words, proprio_dim, hidden
        self.intent_threshold, self.task_threshold, self.consecutive = intent_threshold, task_threshold, consecutive


def _hash(piece: str, buckets: int) -> int:
    return 1 + zlib.crc32(piece.encode()) % (buckets - 1)  # 0 is padding


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


@lru_cache(maxsize=4096)
def encode_text(text: str, buckets: int, max_words: int) -> np.ndarray:
    """(words, 1 + pieces) int64 hash ids: each word, then its character trigrams (padded with 0)."""
    rows = []
    for w in words(text)[:max_words] or ["<empty>"]:
        padded = f"<{w}>"
        rows.append([_hash(w, buckets)] + [_hash(padded[i : i + 3], buckets) for i in range(len(padded) - 2)])
    out = np.zeros((len(rows), max(map(len, rows))), np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def intent_text(intent: Intent | str) -> str:
    return f"{INTENT} {intent}"


def task_text(instruction: str, heard: tuple[str, ...] | list[str] = ()) -> str:
    return " ".join([TASK, instruction] + [f"user {u}" for u in heard])


def batch_text(texts: list[str], buckets: int, max_words: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, K) hash ids and (B,) lengths for a batch of texts."""
    codes = [encode_text(t, buckets, max_words) for t in texts]
    t, k = max(c.shape[0] for c in codes), max(c.shape[1] for c in codes)
    ids = np.zeros((len(codes), t, k), np.int64)
    for i, c in enumerate(codes):
        ids[i, : c.shape[0], : c.shape[1]] = c
    return torch.from_numpy(ids), torch.tensor([c.shape[0] for c in codes])


class SuccessDetectorModel(PreTrainedModel):
    config_class = DetectorConfig
    main_input_name = "before"

    def __init__(self, config: DetectorConfig):
        super().__init__(config)
        c = config
        self.pieces = nn.Embedding(c.buckets, c.text_dim, padding_idx=0)
        self.gru = nn.GRU(c.text_dim, c.text_dim, batch_first=True, bidirectional=True)
        channels = [12, *c.channels]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, 5 if i == 0 else 3, stride=2, padding=2 if i == 0 else 1)
            for i, (a, b) in enumerate(zip(channels[:-1], channels[1:], strict=True))
        )
        self.norms = nn.ModuleList(nn.GroupNorm(min(8, b), b) for b in c.channels)
        self.films = nn.ModuleList(nn.Linear(2 * c.text_dim, 2 * b) for b in c.channels[1:])
        self.query = nn.Linear(2 * c.text_dim, c.channels[-2])  # where to look on the second-to-last map
        feats = c.channels[-2] + 2 * c.channels[-1] + 2 * c.text_dim + 3 * c.proprio_dim
        self.head = nn.Sequential(nn.Linear(feats, c.hidden), nn.ReLU(), nn.Linear(c.hidden, 1))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch's own initialisation of each layer (transformers' N(0, 0.02) starves a small CNN)."""
        if module is not self and hasattr(module, "reset_parameters"):
            module.reset_parameters()

    def encode_words(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, 2 * text_dim): the mean of the GRU's states over each text's words."""
        counts = (ids > 0).sum(-1, keepdim=True).clamp(min=1)
        pieces = self.pieces(ids).sum(-2) / counts  # (B, T, D): each word, the mean of its pieces
        packed = nn.utils.rnn.pack_padded_sequence(pieces, lengths.cpu(), batch_first=True, enforce_sorted=False)
        states, _ = nn.utils.rnn.pad_packed_sequence(self.gru(packed)[0], batch_first=True)
        mask = (torch.arange(states.shape[1])[None, :] < lengths[:, None]).unsqueeze(-1)
        return (states * mask).sum(1) / lengths[:, None].clamp(min=1)

    def forward(self, before, prev, after, proprio_before, proprio_prev, proprio_after, ids, lengths) -> torch.Tensor:
        """Logits (B,). Images (B, H, W, 3) uint8: when the intent started, the step before, now; proprio (B, 7)
        float; text from `batch_text`."""
        b, p, a = (i.permute(0, 3, 1, 2).float() / 255.0 for i in (before, prev, after))
        x = torch.cat([b - 0.5, a - 0.5, a - b, a - p], dim=1)  # the scene, what changed, what is moving
        text = self.encode_words(ids, lengths)
        x = torch.relu(self.norms[0](self.convs[0](x)))
        maps = []
        for conv, norm, film in zip(self.convs[1:], self.norms[1:], self.films, strict=True):
            gamma, beta = film(text).chunk(2, dim=-1)
            x = torch.relu(norm(conv(x)) * (1 + gamma[..., None, None]) + beta[..., None, None])
            maps.append(x)
        fine = maps[-2].flatten(2)  # (B, C, H * W)
        weights = torch.softmax(torch.einsum("bc,bcn->bn", self.query(text), fine) / fine.shape[1] ** 0.5, dim=-1)
        looked = torch.einsum("bn,bcn->bc", weights, fine)
        pooled = torch.cat([looked, x.mean((2, 3)), x.amax((2, 3))], dim=1)
        state = torch.cat([pooled, text, proprio_before, proprio_prev, proprio_after], dim=1)
        return self.head(state).squeeze(-1)


def load_detector_model(path: str | Path) -> SuccessDetectorModel:
    """The model of a ``save_pretrained`` folder; missing, corrupt or incomplete checkpoints fail with one sentence."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"no detector checkpoint at {path}: the directory does not exist")
    if not (folder / "config.json").is_file():
        raise ValueError(f"the detector checkpoint at {path} has no config.json: it is not a save_pretrained folder")
    try:
        with quiet_loading():
            config = DetectorConfig.from_pretrained(folder)
            if config.model_type != DetectorConfig.model_type or getattr(config, "architectures", None) not in (
                None, ["SuccessDetectorModel"]
            ):  # fmt: skip
                raise ValueError(f"its config is a {config.architectures or 'different'} model, not a success detector")
            model, info = SuccessDetectorModel.from_pretrained(folder, output_loading_info=True)
    except Exception as e:  # noqa: BLE001  (transformers raises many types; the user needs the path and the cause)
        cause = (str(e).replace(str(folder), "the folder").strip().splitlines() or [type(e).__name__])[0][:160]
        raise ValueError(f"the detector checkpoint at {path} is corrupt or incomplete ({cause})") from e
    missing = sorted(info["missing_keys"]) + sorted(k for k, *_ in info["mismatched_keys"])
    if missing:
        raise ValueError(f"the detector checkpoint at {path} has weights missing or of the wrong shape "
                         f"({len(missing)}, first: {missing[0]}): it would judge with random ones")  # fmt: skip
    return model.eval()


class LearnedDetector:
    """The `agents.detectors.Detector` protocol on a trained `SuccessDetectorModel` (see the module docstring)."""

    name = "learned"

    def __init__(self, model: SuccessDetectorModel):
        self.model, self.c = model.eval(), model.config
        self._ref: dict | None = None  # the intent being judged: where it started, the last step, the streak
        self._prev: dict | None = None
        self._streak = 0

    @property
    def image_size(self) -> int:
        """The camera size it was trained on (square, pixels)."""
        return self.c.image_size

    @classmethod
    def from_pretrained(cls, path: str | Path) -> LearnedDetector:
        return cls(load_detector_model(path))

    def _inputs(self, obs: dict, what: str) -> tuple[torch.Tensor, torch.Tensor]:
        image = obs.get("image") if isinstance(obs, dict) else None
        if image is None:
            raise ValueError(f"the learned detector judges {what} from the camera: run the env with env.image=true")
        size = self.c.image_size
        if tuple(image.shape) != (size, size, 3):
            raise ValueError(
                f"the learned detector was trained on {size}x{size} camera images, this env gives "
                f"{image.shape[1]}x{image.shape[0]}: set env.image_size={size} or train one for this size"
            )
        return torch.from_numpy(np.ascontiguousarray(image))[None], torch.as_tensor(obs["proprio"]).float()[None]

    @torch.no_grad()
    def probability(self, text: str, before: dict, after: dict, prev: dict | None = None) -> float:
        """P(done) of ``text`` ("intent ..." / "task ...") between the observations ``before`` and ``after``
        (``prev``: the step before ``after``; default ``after``)."""
        what = text.split()[0]
        (b, pb), (a, pa) = self._inputs(before, what), self._inputs(after, what)
        p, pp = self._inputs(prev, what) if prev is not None else (a, pa)
        ids, lengths = batch_text([text], self.c.buckets, self.c.max_words)
        return float(torch.sigmoid(self.model(b, p, a, pb, pp, pa, ids, lengths))[0])

    def intent_done(self, intent: Intent, obs: dict, ref: dict | None) -> bool:
        """Asked after every step of the intent that started at ``ref``: done after ``consecutive`` steps in a row
        at or above the threshold."""
        ref = ref if ref is not None else obs
        if ref is not self._ref:
            self._ref, self._prev, self._streak = ref, ref, 0
        p = self.probability(intent_text(intent), ref, obs, self._prev)
        self._prev = obs
        self._streak = self._streak + 1 if p >= self.c.intent_threshold else 0
        return self._streak >= self.c.consecutive

    def task_done(self, task: Task, obs: dict, info: dict, start: dict | None = None, heard=()) -> bool:
        text = task_text(task.instruction, tuple(heard))
        return self.probability(text, start if start is not None else obs, obs) >= self.c.task_threshold

"""Train the learned success detector, choose its thresholds on validation episodes, and measure it.

    model = SuccessDetectorModel(DetectorConfig(image_size=96))
    metrics = train_detector(model, data, DetectorTrainSettings(), out="runs/detector")

Binary cross-entropy on the training episodes' examples, a share ``task_share`` of each batch drawn from the
task examples (fewer, one per intent). The thresholds are then chosen on the validation episodes, which were
recorded at every step, as the agent would ask at run time:

- intent: the agent stops a skill at the first step the detector fires (``consecutive`` steps in a row at or
  above the threshold). Per executed intent (its steps in order), a **false positive** fires at a step where
  the intent's predicate does not hold, a **true positive** where it holds, a **false negative** never fires on
  an intent that got done (the skill runs on to its budget). The (threshold, consecutive) pair is the one with
  the fewest false negatives among those within ``max_false_positive_rate`` (the fewest false positives if
  none is).
- task: one question per episode (and the earlier intents' frames as tasks not yet done); the same rule.

Calibration (expected calibration error and a reliability table over 10 bins) and the frame-level rates of
counterfactual intents are reported beside them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from intentloop.agents.detector_data import DetectorData
from intentloop.agents.detectors import error_rates
from intentloop.agents.learned_detector import INTENT, TASK, SuccessDetectorModel, batch_text
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm


@dataclass
class DetectorTrainSettings:
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    task_share: float = 0.25  # of each batch, task examples
    max_false_positive_rate: float = 0.05  # the thresholds' limit on validation (issue 17: <= 5%)
    eval_every: int = 500
    seed: int = 0
    threads: int = 1

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 2 or self.eval_every < 1:
            raise ValueError(f"steps, batch_size and eval_every must be positive. Got {self.steps}, "
                             f"{self.batch_size}, {self.eval_every}.")  # fmt: skip
        if not 0.0 <= self.task_share < 1.0 or not 0.0 <= self.max_false_positive_rate < 1.0:
            raise ValueError("task_share and max_false_positive_rate must be in [0, 1).")
        if self.lr <= 0 or self.weight_decay < 0 or self.threads < 1:
            raise ValueError(f"lr must be > 0, weight_decay >= 0 and threads >= 1. Got {self.lr}, "
                             f"{self.weight_decay}, {self.threads}.")  # fmt: skip


def _tensors(model: SuccessDetectorModel, data: DetectorData, idx: np.ndarray) -> tuple:
    c = model.config
    ids, lengths = batch_text(list(data.text[idx]), c.buckets, c.max_words)
    rows = (data.before[idx], data.prev[idx], data.after[idx])
    images = [torch.from_numpy(data.frames[r]) for r in rows]
    return (*images, *(torch.from_numpy(data.proprio[r]) for r in rows), ids, lengths)


@torch.no_grad()
def predict(model: SuccessDetectorModel, data: DetectorData, batch_size: int = 256) -> np.ndarray:
    model.eval()
    out = [torch.sigmoid(model(*_tensors(model, data, np.arange(i, min(i + batch_size, len(data))))))
           for i in range(0, len(data), batch_size)]  # fmt: skip
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def run_time_confusion(data: DetectorData, p: np.ndarray, threshold: float, kind: str, consecutive: int = 1) -> dict:
    """tp / fp / tn / fn as the agent would count them (see the module docstring), over ``data``'s ``kind``
    examples of the intents that ran (intent: it stops at the first of ``consecutive`` steps in a row at or above
    ``threshold``) or every task question (task)."""
    m = (data.kind == kind) & ~data.counterfactual
    if kind == TASK:
        fire, label = p[m] >= threshold, data.label[m]
        return {"tp": int((fire & label).sum()), "fp": int((fire & ~label).sum()),
                "tn": int((~fire & ~label).sum()), "fn": int((~fire & label).sum())}  # fmt: skip
    out = dict.fromkeys(("tp", "fp", "tn", "fn"), 0)
    seg, after, label, prob = data.segment[m], data.after[m], data.label[m], p[m]
    for s in np.unique(seg):
        k = np.flatnonzero(seg == s)
        k = k[np.argsort(after[k])]
        above = (prob[k] >= threshold).astype(int)
        run = np.convolve(above, np.ones(consecutive, int))[: len(above)]  # steps in a row ending at each step
        fired = np.flatnonzero(run >= consecutive)
        if fired.size:
            out["tp" if label[k[fired[0]]] else "fp"] += 1
        else:
            out["fn" if label[k].any() else "tn"] += 1
    return out


def rates(c: dict) -> dict:
    return {**error_rates(c), "negatives": c["fp"] + c["tn"], "positives": c["tp"] + c["fn"]}


def choose_threshold(data: DetectorData, p: np.ndarray, kind: str, max_fp: float) -> tuple[float, int, dict]:
    """(threshold, consecutive steps, run-time rates): the fewest false negatives within ``max_fp`` false
    positives, else the fewest false positives; consecutive steps from 1 to 3 for intents."""
    grid = np.unique(np.concatenate([np.linspace(0.05, 0.99, 95), [0.5]]))
    runs = (1, 2, 3) if kind == INTENT else (1,)
    scored = [(t, n, rates(run_time_confusion(data, p, t, kind, n))) for n in runs for t in grid]
    within = [(r["false_negative_rate"], n, -t, t, r) for t, n, r in scored if r["false_positive_rate"] <= max_fp]
    if within:
        _, n, _, t, r = min(within, key=lambda x: x[:3])
    else:
        _, _, n, t, r = min(((r["false_positive_rate"], r["false_negative_rate"], n, t, r) for t, n, r in scored),
                            key=lambda x: x[:4])  # fmt: skip
    return float(t), int(n), r


def calibration(p: np.ndarray, label: np.ndarray, bins: int = 10) -> dict:
    """Expected calibration error and, per probability bin, (mean predicted, observed rate, count)."""
    which = np.minimum((p * bins).astype(int), bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        k = which == b
        if k.any():
            table.append([round(float(p[k].mean()), 4), round(float(label[k].mean()), 4), int(k.sum())])
            ece += k.mean() * abs(p[k].mean() - label[k].mean())
    return {"ece": float(ece), "reliability": table}


def frame_metrics(data: DetectorData, p: np.ndarray, kind: str, threshold: float) -> dict:
    """Frame-level accuracy, counterfactual intents included, and calibration."""
    m = data.kind == kind
    fire, label = p[m] >= threshold, data.label[m]
    out = {"examples": int(m.sum()), "accuracy": float((fire == label).mean()) if m.any() else 0.0}
    if kind == INTENT:
        cf = data.counterfactual[m]
        out["counterfactual_accuracy"] = float((fire[cf] == label[cf]).mean()) if cf.any() else 0.0
    return {**out, **calibration(p[m], label)}


def evaluate_detector(model: SuccessDetectorModel, val: DetectorData, max_fp: float) -> dict:
    p = predict(model, val)
    out = {}
    for kind in (INTENT, TASK):
        if not (val.kind == kind).any():
            continue
        threshold, consecutive, run_time = choose_threshold(val, p, kind, max_fp)
        out[kind] = {"threshold": threshold, "consecutive": consecutive, "run_time": run_time,
                     "frames": frame_metrics(val, p, kind, threshold)}  # fmt: skip
    return out


def train_detector(model: SuccessDetectorModel, data: DetectorData, s: DetectorTrainSettings, out: Path,
                   logdir: Path | None = None, progress: bool = True) -> dict:  # fmt: skip
    """Train on ``data``'s training episodes, choose thresholds on its validation episodes, save to ``out``."""
    train, val = data.subset(~data.validation), data.subset(data.validation)
    if not len(train) or not len(val):
        raise ValueError(f"the detector needs training and validation episodes; got {len(train)} and {len(val)} "
                         "examples: collect more episodes or change data.val_fraction")  # fmt: skip
    rng = np.random.default_rng(s.seed)
    torch.manual_seed(s.seed)
    pools = [np.flatnonzero(train.kind == INTENT), np.flatnonzero(train.kind == TASK)]
    n_task = round(s.batch_size * s.task_share) if len(pools[1]) else 0
    optimizer = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    warmup = max(1, s.steps // 20)  # linear warm-up, then cosine decay to zero
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(1.0, i / s.steps)))
    )
    writer = SummaryWriter(str(logdir)) if logdir else None
    start, metrics = time.perf_counter(), {}
    bar = tqdm(range(1, s.steps + 1), desc="train detector", unit="step", disable=not progress)
    for step in bar:
        model.train()
        idx = np.concatenate([rng.choice(pools[0], s.batch_size - n_task), rng.choice(pools[1], n_task)]) if n_task \
            else rng.choice(pools[0], s.batch_size)  # fmt: skip
        logits = model(*_tensors(model, train, idx))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(train.label[idx]).float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if writer:
            writer.add_scalar("train/loss", loss.item(), step)
        if step % s.eval_every == 0 or step == s.steps:
            metrics = evaluate_detector(model, val, s.max_false_positive_rate)
            if writer:
                for kind, m in metrics.items():
                    for k in ("false_positive_rate", "false_negative_rate"):
                        writer.add_scalar(f"val/{kind}_{k}", m["run_time"][k], step)
    bar.close()
    if writer:
        writer.close()
    for kind, m in metrics.items():
        setattr(model.config, f"{kind}_threshold", m["threshold"])
    model.config.consecutive = metrics[INTENT]["consecutive"] if INTENT in metrics else 1
    model.save_pretrained(out)
    return {"steps": s.steps, "seconds": round(time.perf_counter() - start, 1), "train_loss": float(loss.item()),
            "train_examples": len(train), "val_examples": len(val), "val": metrics}  # fmt: skip

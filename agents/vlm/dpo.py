"""Preference learning for the planner: DPO (Rafailov et al., 2023) on pairs of its own decisions.

    pairs, kinds = preference_pairs(rows)                     # agents/reflection.py: what a robot has, only
    metrics = train_dpo(model, processor, pairs, examples, "runs/candidate", TrainSettings(steps=400), beta=0.1)

Each step takes a batch of `PreferencePair`s (two intents in one situation, one better by the detector's
verdicts) and a batch of supervised examples. The preference term raises the log-probability of the chosen
intent over the rejected one, measured against the frozen planner the update starts from:

    -log sigmoid(beta * ((log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected))))

where log pi is the summed log-probability of the intent's tokens (and eos) after the prompt. The supervised
term (``sft_weight`` times the planner's own loss, `smoothed_loss` where ``arg_smoothing`` is set) trains on
the round's examples and the replayed oracle data as ``update.method=sft`` does, so the two methods differ by
the preference term alone.

TRL's DPOTrainer is not used: it tokenises prompt and completion itself, through a chat template and a
processor call of its own, while this planner's prompt (image tokens, history, the user's words) and its
labels come from `make_batch`, which supervised training and evaluation share; the loss is the paper's.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from intentloop.agents.vlm.configuration import TrainSettings
from intentloop.agents.vlm.modeling import THINKS
from intentloop.agents.vlm.training import index_batches, intent_trie, lr_factor, make_batch, smoothed_loss
from intentloop.envs.intents import parse_intent
from intentloop.envs.tasks import composition
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm


def intent_logps(model, batch: dict) -> torch.Tensor:
    """(B,) each row's summed log-probability of its labels (the intent's tokens and eos) under ``model``."""
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "choices")}
    logits, gold = model(**inputs).logits[:, :-1].float(), batch["labels"][:, 1:]
    scored = gold != -100
    logp = logits.log_softmax(-1).gather(-1, gold.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logp * scored).sum(-1)


def dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, per-pair margin): the margin is beta times how much more the policy than the reference
    prefers the chosen intent to the rejected one (> 0: the pair is ranked right)."""
    margin = beta * ((chosen - ref_chosen) - (rejected - ref_rejected))
    return -F.logsigmoid(margin).mean(), margin.detach()


def _losses(model, reference, processor, pairs: list, rows: list, s: TrainSettings, beta: float, noise: dict):
    """(DPO loss, per-pair margin, supervised loss) of one batch of ``pairs`` and supervised ``rows``."""
    both = [p.chosen for p in pairs] + [replace(p.chosen, target=p.rejected) for p in pairs]
    batch = make_batch(processor, both, s.max_history)
    logps = intent_logps(model, batch)
    with torch.no_grad():
        ref = intent_logps(reference, batch)
    n = len(pairs)
    loss, margin = dpo_loss(logps[:n], logps[n:], ref[:n], ref[n:], beta)
    if not rows:
        return loss, margin, torch.zeros(())
    sb = make_batch(processor, rows, s.max_history, s.arg_noise, word_noise=s.word_noise, **noise)
    choices = sb.pop("choices", None)
    out = model(**sb)
    sft = out.loss if choices is None else smoothed_loss(out.logits, sb["labels"], choices, s.arg_smoothing)
    return loss, margin, sft


def train_dpo(
    model,
    processor,
    pairs: list,
    examples: list,
    out_dir: str | Path,
    settings: TrainSettings | None = None,
    beta: float = 0.1,
    sft_weight: float = 1.0,
    logdir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Train ``model`` in place on ``pairs`` (`agents.reflection.PreferencePair`) and ``examples``, save it with its
    processor to ``out_dir``; returns the last metrics (``train/dpo_loss``, ``train/reward_accuracy``, ...)."""
    s = settings or TrainSettings()
    if not pairs:
        raise ValueError("no preference pairs: DPO needs two decisions in one situation (agents/reflection.py)")
    if beta <= 0 or sft_weight < 0:
        raise ValueError(f"DPO needs beta > 0 and sft_weight >= 0, got {beta}, {sft_weight}")
    torch.manual_seed(s.seed)
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, s))
    writer = SummaryWriter(str(logdir or Path(out_dir) / "tb"))
    rng = np.random.default_rng(s.seed)
    pair_batches = index_batches(len(pairs), s.batch_size, rng)
    supervised = bool(examples) and sft_weight > 0
    sft_batches = index_batches(len(examples), s.batch_size, rng) if supervised else None
    noise = {"rng": rng, "seen": {composition(parse_intent(e.target)) for e in examples if e.task == "plan"},
             "trie": intent_trie(processor) if s.arg_smoothing > 0 else None}  # fmt: skip
    names = ("dpo_loss", "reward_accuracy", "reward_margin", "loss")
    running, metrics, start = [], {}, time.monotonic()
    bar = tqdm(range(s.steps), desc="train planner (DPO)", unit="step", disable=not progress)
    for step in bar:
        chosen = [pairs[i] for i in next(pair_batches)]  # (drawn before the supervised batch, as measured)
        rows = [examples[i] for i in next(sft_batches)] if supervised else []
        loss, margin, sft = _losses(model, reference, processor, chosen, rows, s, beta, noise)
        (loss + sft_weight * sft).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        running.append([float(loss.detach()), float((margin > 0).float().mean()), float(margin.mean()),
                        float(sft.detach())])  # fmt: skip
        if (step + 1) % s.log_every == 0 or step == s.steps - 1:
            last = dict(zip(names, np.mean(running, 0).tolist(), strict=True))
            last["lr"], running = schedule.get_last_lr()[0], []
            for k, v in last.items():
                writer.add_scalar(f"train/{k}", v, step + 1)
            metrics.update({f"train/{k}": v for k, v in last.items()})
            bar.set_postfix(dpo=f"{last['dpo_loss']:.3f}", ranked=f"{last['reward_accuracy']:.2f}")
    bar.close()
    writer.close()
    model.eval()
    setattr(model.config, THINKS, False)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return {**metrics, "steps": s.steps, "pairs": len(pairs), "seconds": round(time.monotonic() - start, 1)}

"""Supervised training of the planner: predict the oracle's next intent, loss on the intent tokens only.

    model, processor = build_default_model()
    metrics = train_planner(model, processor, train, val, "runs/planner", TrainSettings(steps=500))

Each example is ``prompt ids + intent ids + eos``, right-padded (positions match inference), labels -100
on the prompt and the padding. AdamW with linear warmup and cosine decay, gradient clipping, a tqdm bar,
TensorBoard scalars (``train/loss``, ``train/token_accuracy``, ``train/exact_match``, ``train/lr``, ``val/...`` for
the intents and ``val_scene/...`` for the captions)
and ``save_pretrained`` of model and processor into ``out_dir`` at the end.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import numpy as np
import torch
from intentloop.agents.vlm.configuration import TrainSettings
from intentloop.agents.vlm.constrained import IntentTrie
from intentloop.agents.vlm.data import Example
from intentloop.agents.vlm.modeling import THINKS
from intentloop.agents.vlm.processing import NEXT, build_prompt, scene_prompt
from intentloop.envs import language
from intentloop.envs.intents import Intent, parse_intent, valid_intents
from intentloop.envs.scene import BLOCKS, ZONES
from intentloop.envs.tasks import composition, deciding_words
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

LOSS, TOKEN_ACCURACY, EXACT_MATCH, LR = "loss", "token_accuracy", "exact_match", "lr"


def _target(tok, text: str, eos: list[int], arg_noise: float, rng: np.random.Generator | None, seen: set):
    """(input ids, label ids) of an intent. With probability ``arg_noise`` the teacher-forced input names another
    block as the first argument (labels unchanged), so the later arguments must be read from the instruction
    rather than from the block just written. Only swaps into compositions in ``seen`` (the training targets):
    the input never shows a composition that training does not have."""
    ids = tok(text, add_special_tokens=False)["input_ids"] + eos
    if rng is None or arg_noise == 0.0:
        return torch.tensor(ids), torch.tensor(ids)
    intent = parse_intent(text)
    if not intent.args or rng.random() >= arg_noise:
        return torch.tensor(ids), torch.tensor(ids)
    others = [b for b in BLOCKS if b != intent.args[0] and (intent.skill, b, *intent.args[1:]) in seen]
    if not others:
        return torch.tensor(ids), torch.tensor(ids)
    swapped = Intent(intent.skill, (str(rng.choice(others)), *intent.args[1:]))
    swapped_ids = tok(str(swapped), add_special_tokens=False)["input_ids"] + eos
    return torch.tensor(swapped_ids if len(swapped_ids) == len(ids) else ids), torch.tensor(ids)


def intent_trie(processor) -> IntentTrie:
    """The trie of every valid intent over the suite's objects, as ``processor``'s tokenizer spells them."""
    return IntentTrie(processor.tokenizer, valid_intents(BLOCKS, ZONES))


def _open_choices(trie: IntentTrie, ids: torch.Tensor) -> list[torch.Tensor | None]:
    """For each token of a teacher-forced intent, the tokens the grammar allowed there (None where it allowed
    one only, or once the intent has left the trie)."""
    out, node = [], trie.root
    for i in ids.tolist():
        out.append(node.allowed if node is not None and len(node.allowed) > 1 else None)
        node = None if node is None else node.children.get(i)
    return out


def smoothed_loss(logits: torch.Tensor, labels: torch.Tensor, choices: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Cross-entropy of the next tokens with the label smoothed, where the intent grammar leaves a choice, over
    every token it allows there (``choices``: (B, T, V) bool, aligned with ``labels``): the target is
    ``1 - smoothing`` on the label and ``smoothing`` spread evenly over the allowed tokens.

    Why: trained on the train compositions only, plain cross-entropy pushes the logit of every argument never
    seen with a block (``push(red_block, backward)`` held out) down without end, so the planner learns which
    pairs exist instead of reading the argument from the instruction (held-out pushes: 0.003 probability on the
    named direction, planner v4f). With a smoothed target every argument keeps the same small floor whatever the
    block, so the block carries no information about its arguments and reading the instruction is what pays."""
    logits, labels, choices = logits[:, :-1].float(), labels[:, 1:], choices[:, 1:]
    scored = labels != -100
    logp = logits.log_softmax(-1)
    gold = -logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    n = choices.sum(-1)
    spread = -(logp * choices).sum(-1) / n.clamp(min=1)
    per_token = torch.where(n > 0, (1 - smoothing) * gold + smoothing * spread, gold)
    return per_token[scored].mean()


NOUNS = (
    *language.BLOCK_NOUNS,
    *language.ZONE_NOUNS,
    *language.RULES["train"]["block"],
    *language.RULES["train"]["zone"],
)
# the words `garble` may misspell: nouns and the train grammar's politeness and filler words
EDITABLE = frozenset(NOUNS) | {
    w for k in ("prefix", "suffix") for p in language.RULES["train"][k] for w in re.findall(r"[a-z]+", p)
}
DECIDING = deciding_words()  # never replaced or misspelt


def _pseudo_word(rng: np.random.Generator) -> str:
    return "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), int(rng.integers(4, 8))))


def garble(text: str, rng: np.random.Generator) -> str:
    """One random edit of an instruction's surface that keeps its meaning: a noun (block, zone and their train
    synonyms) becomes a made-up word, a made-up word comes first or last, a noun or a politeness word gets one
    letter doubled or replaced, or a word that decides nothing (a verb or preposition of a templated unit, a
    join, a filler: not in `deciding_words`) becomes a made-up word, so the planner learns to read an
    instruction from its colours, directions and structure when its verb is new ("set the red block upon the
    green block"). Trains the planner to read past words it has never seen (`TrainSettings.word_noise`).
    Words that decide an argument or a goal (colours, directions, "nearest", "except", "clear", ...) are never
    edited: a planner taught that they may be unreadable learns to guess them from the block, which is what
    fails on held-out compositions. Disjoint from the held-out rules of envs/language.py, which drop a letter
    and use their own words, so held-out phrasings stay unseen."""
    kind = int(rng.integers(4))
    nouns = [m.span() for m in re.finditer(rf"\b({'|'.join(NOUNS)})\b", text)]
    if kind == 0 and nouns:
        start, end = nouns[rng.integers(len(nouns))]
        return text[:start] + _pseudo_word(rng) + text[end:]
    if kind == 3:
        spans = [m.span() for m in re.finditer(r"[A-Za-z']+", text) if m.group().lower() not in DECIDING | EDITABLE]
        if spans:
            start, end = spans[rng.integers(len(spans))]
            return text[:start] + _pseudo_word(rng) + text[end:]
    if kind <= 1 or kind == 3:
        return f"{_pseudo_word(rng)} {text}" if rng.random() < 0.5 else f"{text.rstrip('.')} {_pseudo_word(rng)}."
    spans = [m.span() for m in re.finditer(r"[A-Za-z]{4,}", text) if m.group().lower() in EDITABLE]
    if not spans:
        return text
    start, end = spans[rng.integers(len(spans))]
    i = int(rng.integers(start, end))
    other = str(rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c != text[i].lower()]))
    return text[: i + 1] + text[i:] if rng.random() < 0.5 else text[:i] + other + text[i + 1 :]  # double or replace


def _thought_ids(tok, e: Example) -> torch.Tensor:
    """The labels a thinking planner writes before the intent: ``<thought> next:``."""
    if not e.thought:
        raise ValueError(
            "train.think needs examples with thoughts (collected by agents/vlm/data.py since planner v6); "
            "this data has none: collect it again"
        )
    return torch.tensor(tok(f"{e.thought} {NEXT}", add_special_tokens=False)["input_ids"])


def make_batch(
    processor,
    examples: list[Example],
    max_history: int,
    arg_noise: float = 0.0,
    rng: np.random.Generator | None = None,
    seen: set | None = None,
    word_noise: float = 0.0,
    trie: IntentTrie | None = None,
    think: bool = False,
) -> dict[str, torch.Tensor]:
    """Model inputs with ``labels``: (B, T) ids, mask and labels, plus the processor's image tensors.
    ``arg_noise``, ``rng`` and ``seen`` (compositions of the training targets): see `_target`; with probability
    ``word_noise`` an instruction is `garble`d first. With ``trie`` (`intent_trie`), also ``choices``: (B, T, V)
    bool, the tokens the intent grammar allowed at each label position where it allowed more than one
    (`smoothed_loss`); pop it before calling the model. With ``think``, a planning example is asked for a
    thought first (`build_prompt`): the labels are its thought (`agents.vlm.data.scene_thought`), ``next:`` and the
    intent."""
    tok = processor.tokenizer
    eos = [] if tok.eos_token_id is None else [tok.eos_token_id]
    rows, images = [], []
    for e in examples:
        plan = e.task == "plan"
        instruction = (
            garble(e.instruction, rng) if plan and rng is not None and rng.random() < word_noise else e.instruction
        )
        prompt = (
            build_prompt(processor, instruction, e.history, max_history, e.feedback, think)
            if plan
            else scene_prompt(processor)
        )
        enc = processor(text=[prompt], images=[[e.image]], return_tensors="pt")
        noise = arg_noise if plan else 0.0
        given, target = _target(tok, e.target, eos, noise, rng, seen or set())
        thought = _thought_ids(tok, e) if plan and think else torch.zeros(0, dtype=torch.long)
        rows.append((enc.pop("input_ids")[0], thought, given, target))
        enc.pop("attention_mask", None)
        images.append(enc)
    width = max(len(p) + len(th) + len(t) for p, th, t, _ in rows)
    choices = torch.zeros((len(rows), width, len(tok)), dtype=torch.bool) if trie is not None else None
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (prompt, thought, target_in, target) in enumerate(rows):
        start = len(prompt) + len(thought)  # where the intent begins
        n = start + len(target)
        ids[r, :n], mask[r, :n] = torch.cat([prompt, thought, target_in]), 1
        labels[r, len(prompt) : n] = torch.cat([thought, target])
        if choices is not None and examples[r].task == "plan":
            for k, allowed in enumerate(_open_choices(trie, target_in)):
                if allowed is not None:
                    choices[r, start + k, allowed] = True
    extra = {k: torch.cat([x[k] for x in images]) for k in images[0]}
    out = {"input_ids": ids, "attention_mask": mask, "labels": labels, **extra}
    return out if choices is None else {**out, "choices": choices}


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Teacher-forced (token accuracy, exact match of whole intents): exact match = greedy gets it right."""
    pred, gold = logits[:, :-1].argmax(-1), labels[:, 1:]  # (B, T-1)
    scored = gold != -100
    right = (pred == gold) | ~scored
    return float(right[scored].float().mean()), float(right.all(dim=1).float().mean())


@torch.no_grad()
def evaluate_examples(
    model, processor, examples: list[Example], max_history: int = 12, batch_size: int = 64, think: bool = False
) -> dict:
    """Mean loss, token accuracy and exact match over ``examples`` (with ``think``: of thought and intent)."""
    was_training, totals, n = model.training, np.zeros(3), 0
    model.eval()
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        batch = make_batch(processor, chunk, max_history, think=think)
        out = model(**batch)
        totals += len(chunk) * np.array([float(out.loss), *_accuracy(out.logits, batch["labels"])])
        n += len(chunk)
    model.train(was_training)
    return dict(zip((LOSS, TOKEN_ACCURACY, EXACT_MATCH), (totals / max(n, 1)).tolist(), strict=True))


def lr_factor(step: int, s: TrainSettings) -> float:
    if step < s.warmup_steps:
        return (step + 1) / s.warmup_steps
    progress = (step - s.warmup_steps) / max(1, s.steps - s.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def index_batches(n: int, batch_size: int, rng: np.random.Generator):
    """Index batches over shuffled epochs, forever."""
    while True:
        order = rng.permutation(n)
        for i in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            yield order[i : i + batch_size]


def _train_step(model, batch: dict, optimizer, grad_clip: float, smoothing: float = 0.0) -> list[float]:
    """One AdamW step; returns [loss, token accuracy, exact match] of the batch (the loss: `smoothed_loss` where
    the batch has ``choices``)."""
    choices = batch.pop("choices", None)
    out = model(**batch)
    loss = out.loss if choices is None else smoothed_loss(out.logits, batch["labels"], choices, smoothing)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return [float(loss.detach()), *_accuracy(out.logits.detach(), batch["labels"])]


def _log(writer: SummaryWriter, prefix: str, metrics: dict, step: int) -> None:
    for k, v in metrics.items():
        writer.add_scalar(f"{prefix}/{k}", v, step)


def train_planner(
    model,
    processor,
    train: list[Example],
    val: list[Example],
    out_dir: str | Path,
    settings: TrainSettings | None = None,
    logdir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Train ``model`` in place, save it with its processor to ``out_dir``; returns the last metrics."""
    s = settings or TrainSettings()
    if not train:
        raise ValueError("no training examples: collect some first (agents/vlm/data.py)")
    torch.manual_seed(s.seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, s))
    writer = SummaryWriter(str(logdir or Path(out_dir) / "tb"))
    rng, seen = np.random.default_rng(s.seed), {composition(parse_intent(e.target)) for e in train if e.task == "plan"}
    batches = index_batches(len(train), s.batch_size, rng)
    trie = intent_trie(processor) if s.arg_smoothing > 0 else None
    val_sets = {p: [e for e in val if e.task == t] for p, t in (("val", "plan"), ("val_scene", "scene"))}
    val_sets = {p: chosen for p, chosen in val_sets.items() if chosen}  # intents and captions scored apart
    running, metrics, start = [], {}, time.monotonic()
    bar = tqdm(range(s.steps), desc="train planner", unit="step", disable=not progress)
    for step in bar:
        chosen = [train[i] for i in next(batches)]
        batch = make_batch(processor, chosen, s.max_history, s.arg_noise, rng, seen, s.word_noise, trie, s.think)
        running.append(_train_step(model, batch, optimizer, s.grad_clip, s.arg_smoothing))
        schedule.step()
        out_of_time = s.max_minutes is not None and time.monotonic() - start > 60 * s.max_minutes
        last = step == s.steps - 1 or out_of_time
        if (step + 1) % s.log_every == 0 or last:
            train_metrics = dict(zip((LOSS, TOKEN_ACCURACY, EXACT_MATCH), np.mean(running, 0).tolist(), strict=True))
            train_metrics[LR], running = schedule.get_last_lr()[0], []
            _log(writer, "train", train_metrics, step + 1)
            metrics.update({f"train/{k}": v for k, v in train_metrics.items()})
            bar.set_postfix(loss=f"{train_metrics[LOSS]:.3f}", exact=f"{train_metrics[EXACT_MATCH]:.2f}")
        if val and ((step + 1) % s.eval_every == 0 or last):
            for prefix, chosen in val_sets.items():
                val_metrics = evaluate_examples(model, processor, chosen, s.max_history, think=s.think)
                _log(writer, prefix, val_metrics, step + 1)
                metrics.update({f"{prefix}/{k}": v for k, v in val_metrics.items()})
        if out_of_time:
            break
    bar.close()
    writer.close()
    model.eval()
    setattr(model.config, THINKS, s.think)  # so a planner made from the checkpoint asks for what it learned
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return {**metrics, "steps": step + 1, "seconds": round(time.monotonic() - start, 1)}

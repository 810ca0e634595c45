"""A phrasing grammar over instructions: politeness, fillers, synonyms, relative clauses and typos.

Templates give an instruction its meaning; `rephrase` then rewrites its surface, seeded, so a planner learns
language rather than a list of sentences. The grammar has two disjoint halves: the ``train`` rules, used for
every training instruction (with probability ``TRAIN_RATE``), and the ``heldout`` rules (new words, new
politeness forms, new clause structures, another kind of typo), used only for evaluation at the unseen-
phrasings level (``phrasings=heldout``)::

    train    "Could you put the block that is red in the blue spot, thanks."  "Okay, empyt the cyan zone."
    heldout  "Would you kindly put the brick which is red in the blue patch, cheers."  "Well, clar the cyan zone."

Colour words are never replaced by synonyms (the scene's names), and a typo never touches a colour word.
"""

from __future__ import annotations

import re

import numpy as np

COLOURS = ("red", "green", "yellow", "purple", "blue", "orange", "cyan")
BLOCK_NOUNS, ZONE_NOUNS = ("block", "cube", "box"), ("zone", "square", "area")
TRAIN_RATE = 0.5  # fraction of training instructions the train rules rewrite

RULES: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {
        "prefix": ("please ", "could you ", "can you ", "i'd like you to ", "okay, ", "so, ", "um, "),
        "suffix": (", please", ", thanks", " if you can", " now"),
        "block": ("piece",),
        "zone": ("spot",),
        "relative": ("the {noun} that is {colour}",),
    },
    "heldout": {
        "prefix": ("would you kindly ", "i need you to ", "go ahead and ", "well, ", "alright, ", "hmm, "),
        "suffix": (", thank you", ", cheers", " when you get a chance", " for me"),
        "block": ("brick", "tile"),
        "zone": ("patch", "region"),
        "relative": ("the {noun} which is {colour}", "the {noun} coloured {colour}"),
    },
}


def words() -> list[str]:
    """Every word the train rules can write (the held-out rules' words are unseen on purpose)."""
    return [w for options in RULES["train"].values() for w in options]


def _typo(rng: np.random.Generator, text: str, style: str) -> str:
    """Swap two letters (train) or drop one (heldout) in one word of 4+ letters that is not a colour."""
    spans = [m.span() for m in re.finditer(r"[a-z]{4,}", text) if m.group() not in COLOURS]
    if not spans:
        return text
    start, end = spans[rng.integers(len(spans))]
    i = int(rng.integers(start + 1, end - 1))
    if style == "train":
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    return text[:i] + text[i + 1 :]


def rephrase(rng: np.random.Generator, text: str, style: str) -> str:
    """``text`` (a templated instruction ending in '.') rewritten by the ``style`` rules, seeded by ``rng``."""
    rules = RULES[style]
    body = text[:-1] if text.endswith(".") else text
    body = body[0].lower() + body[1:]

    def noun(match: re.Match) -> str:
        colour, kind = match.group(1), match.group(2)
        pool = BLOCK_NOUNS + rules["block"] if kind in BLOCK_NOUNS else ZONE_NOUNS + rules["zone"]
        new = pool[rng.integers(len(pool))]
        if rng.random() < 0.3:
            return rules["relative"][rng.integers(len(rules["relative"]))].format(noun=new, colour=colour)
        return f"the {colour} {new}"

    nouns = "|".join(BLOCK_NOUNS + ZONE_NOUNS)
    body = re.sub(rf"\bthe ({'|'.join(COLOURS)}) ({nouns})\b", noun, body)
    if rng.random() < 0.5:
        body = rules["prefix"][rng.integers(len(rules["prefix"]))] + body
    if rng.random() < 0.4:
        body += rules["suffix"][rng.integers(len(rules["suffix"]))]
    if rng.random() < 0.3:
        body = _typo(rng, body, style)
    return body[0].upper() + body[1:] + "."

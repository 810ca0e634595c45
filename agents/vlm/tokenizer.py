"""A word-level tokenizer with a character fallback, built locally from the task vocabulary (no download).

Intents are cut so that they share tokens with the instruction words: the colour and the direction are
the instruction's own tokens, so copying them is what generalises to unseen compositions::

    "Put the red block in the blue zone."  ->  put the red block in the blue zone .
    "place(red_block, blue_zone)"          ->  place( red ##_block, blue ##_zone)
    "push(red_block, left)"                ->  push( red ##_block, left )

``##`` marks a piece glued to the previous one (the WordPiece decoder), so ``decode`` gives back text that
parses to the same intent (``place( red_block, blue_zone)``). A word outside the vocabulary (a typo, a
synonym never seen) is spelled in letters, WordPiece-style (``brick`` -> ``b ##r ##i ##c ##k``), so it is never
silently ``<unk>``; only characters outside ASCII letters, digits and punctuation are.
"""

from __future__ import annotations

import string

from intentloop.agents.vlm.processing import PROMPT_WORDS
from intentloop.envs import tasks
from intentloop.envs.intents import DIRECTIONS, SKILL_SIGNATURES, valid_intents
from intentloop.envs.scene import BLOCKS, ZONES
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, UNK, BOS, EOS, IMAGE = "<pad>", "<unk>", "<s>", "</s>", "<image>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS, IMAGE)
# skill( or done() | ##_suffix with its comma or paren | a word | one other character
PIECES = r"[a-z]+\(\)?|##_[a-z]+[,)]?|[a-z]+|[^\sa-z]"


def _pipeline(vocab: dict[str, int]) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(vocab, unk_token=UNK, continuing_subword_prefix="##", max_input_chars_per_word=64))
    tok.normalizer = normalizers.Sequence([normalizers.Lowercase(), normalizers.Replace("_", "##_")])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(PIECES), behavior="isolated")]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return tok


def task_corpus() -> list[str]:
    """Every word the planner reads or writes: instruction templates and their fillers, intents, prompt words."""
    texts = tasks.vocabulary()
    texts += [n.replace("_", " ") for n in BLOCKS + ZONES] + list(DIRECTIONS) + list(SKILL_SIGNATURES)
    texts += valid_intents(BLOCKS, ZONES) + list(PROMPT_WORDS) + list("0123456789.,;:'-()")
    return texts


def build_tokenizer(corpus: list[str] | None = None) -> PreTrainedTokenizerFast:
    """The word-level tokenizer over ``corpus`` (default: `task_corpus`), with pad, unk, bos, eos and image tokens."""
    probe = _pipeline({UNK: 0})
    words: dict[str, None] = {}
    for text in corpus or task_corpus():
        for piece, _ in probe.pre_tokenizer.pre_tokenize_str(probe.normalizer.normalize_str(text)):
            words[piece] = None
    letters = [*string.ascii_lowercase, *string.digits]
    words.update(dict.fromkeys([*letters, *(f"##{c}" for c in letters), *string.punctuation]))
    vocab = {t: i for i, t in enumerate([*SPECIAL_TOKENS, *sorted(w for w in words if w not in SPECIAL_TOKENS)])}
    tok = _pipeline(vocab)
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        extra_special_tokens={"image_token": IMAGE},
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )

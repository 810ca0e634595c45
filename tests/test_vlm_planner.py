"""The VLM planner: constrained decoding, any local checkpoint, round trips, record/replay, training, bad input.

Every model here is tiny and randomly initialised (or trained for a few steps); nothing is downloaded.
"""

import json
import os
import re
import subprocess
import sys
from dataclasses import replace

import gymnasium as gym
import intentloop.envs  # noqa: F401
import numpy as np
import pytest
import torch
from intentloop.agents import HierarchicalAgent, IntentOutcome, PlannerInput
from intentloop.agents.vlm import (
    DataSettings,
    RecordingPlanner,
    ReplayPlanner,
    TrainSettings,
    VLMModelConfig,
    VLMPlanner,
)
from intentloop.agents.vlm.constrained import IntentTrie
from intentloop.agents.vlm.data import collect_examples, load_examples
from intentloop.agents.vlm.modeling import build_default_model
from intentloop.agents.vlm.record import UnrecordedInput
from intentloop.agents.vlm.tokenizer import task_corpus
from intentloop.agents.vlm.training import evaluate_examples, train_planner
from intentloop.envs.intents import parse_intent, valid_intents
from intentloop.envs.scene import BLOCKS, ZONES
from intentloop.envs.tasks import TaskSuite, composition, heldout_compositions
from intentloop.policies import ScriptedSkill

TINY = VLMModelConfig(
    image_size=32, patch_size=16, vision_hidden=16, vision_layers=1, vision_heads=1,
    text_hidden=32, text_layers=1, text_heads=2, text_intermediate=64, max_positions=256,
)  # fmt: skip


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread; on a busy 2-core machine, more threads are many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(seed: int = 0) -> VLMModelConfig:
    return VLMModelConfig(**{**TINY.__dict__, "seed": seed})


def tiny_planner(seed: int = 0, **kwargs) -> VLMPlanner:
    """A tiny planner whose weights are drawn with ``seed``."""
    return VLMPlanner(**{"model_config": tiny_config(seed), **kwargs})


def planner_inputs(n: int, phrasings: str = "heldout", seed: int = 0, size: int = 32) -> list[PlannerInput]:
    """Instructions of both splits from the task suite, random images, random histories; no simulator."""
    rng, intents = np.random.default_rng(seed), valid_intents()
    suites = [TaskSuite(split, phrasings=phrasings) for split in ("train", "heldout")]
    out = []
    for i in range(n):
        _, task = suites[i % 2].sample_episode(rng, chain_length=1 + i % 5)
        ok = rng.random(rng.integers(0, 6)) < 0.7
        history = [IntentOutcome(str(rng.choice(intents)), bool(s), 9, "achieved" if s else "timeout") for s in ok]
        out.append(PlannerInput(task.instruction, rng.integers(0, 256, (size, size, 3), dtype=np.uint8), history))
    return out


def assert_all_parse(texts, blocks=BLOCKS, zones=ZONES):
    for text in texts:
        parse_intent(text, blocks, zones)  # raises InvalidIntent otherwise


def test_constrained_decoding_only_yields_parseable_intents_for_a_random_model(test_seed):
    torch.manual_seed(test_seed)  # sampling draws from torch's global generator
    greedy, sampled = tiny_planner(test_seed), tiny_planner(test_seed, temperature=3.0)
    inputs = planner_inputs(120, "heldout", seed=2 * test_seed) + planner_inputs(40, "train", seed=2 * test_seed + 1)
    outputs = [greedy.plan(i) for i in inputs[:40]] + greedy.plan_batch(inputs) + sampled.plan_batch(inputs)
    assert_all_parse(outputs)
    assert len(set(sampled.plan_batch(inputs))) > 15, "sampling should roam over many valid intents"


def test_seeded_sampling_draws_the_same_intent_for_a_seed_whatever_shares_its_batch(test_seed):
    """With a `sample_seed` per input, a sampled intent depends on the input and its seed only: alone, in a batch,
    in another order. Different seeds still roam (it samples), and the global torch generator plays no part."""
    from dataclasses import replace

    planner = tiny_planner(test_seed, temperature=3.0)
    inputs = [replace(x, sample_seed=1000 * test_seed + i) for i, x in enumerate(planner_inputs(8, seed=test_seed))]
    torch.manual_seed(0)
    alone = [planner.plan(x) for x in inputs]
    torch.manual_seed(1)
    assert planner.plan_batch(inputs) == alone == planner.plan_batch(inputs[::-1])[::-1]
    assert planner.plan_batch(inputs[2:5]) == alone[2:5]
    unkeyed = [replace(x, sample_seed=None) for x in inputs[:4]]  # they draw keys of their own; the keyed keep theirs
    assert planner.plan_batch(unkeyed + inputs[4:])[4:] == alone[4:]
    reseeded = planner.plan_batch([replace(inputs[0], sample_seed=k) for k in range(40)])
    assert len(set(reseeded)) > 5, "different seeds should draw different intents"
    assert_all_parse(reseeded)


def test_seeded_sampling_draws_from_the_softmax_at_its_temperature(test_seed):
    """The Gumbel-max draw of `SeededSampling` follows softmax(scores / T): frequencies over 4000 seeds."""
    from intentloop.agents.vlm.constrained import SeededSampling

    scores = torch.tensor([[2.0, 1.0, 0.0, float("-inf")]])
    for temperature in (0.5, 2.0):
        seeds = range(4000 * test_seed, 4000 * (test_seed + 1))
        draws = [int(SeededSampling([s], temperature)(None, scores).argmax()) for s in seeds]
        freq = np.bincount(draws, minlength=4) / len(draws)
        expected = torch.softmax(scores[0] / temperature, 0).numpy()
        assert freq[3] == 0 and np.abs(freq - expected).max() < 0.03, (freq, expected)


def test_an_intent_refused_since_the_last_one_that_ran_is_not_chosen_again(test_seed):
    from dataclasses import replace

    from intentloop.agents.planner import refused_since_last_run

    def refused(intent, rule="rejected: pick_clear_top: a block is on it"):
        return IntentOutcome(intent, False, 0, rule)

    ran = IntentOutcome("pick(red_block)", True, 9, "achieved")
    history = [refused("push(red_block, left)"), ran, refused("pick(green_block)"), refused("x(", "invalid: no")]
    assert refused_since_last_run(history) == {"pick(green_block)", "x("}
    assert refused_since_last_run(history[:2]) == frozenset() and refused_since_last_run([]) == frozenset()
    free, careful = tiny_planner(test_seed, avoid_refused=False), tiny_planner(test_seed)
    changed = 0
    for inp in planner_inputs(40, seed=5 + test_seed):
        again = replace(inp, history=[*inp.history, refused(free.plan(inp))])  # refuse what it would say
        choice = careful.plan(again)
        assert choice not in refused_since_last_run(again.history) and choice in valid_intents()
        changed += free.plan(again) != choice  # the free planner repeats the refused intent, the careful one not
        after_a_run = replace(again, history=[*again.history, ran])  # something moved: nothing is left out
        assert careful.plan(after_a_run) == free.plan(after_a_run)
    assert changed >= 10, changed


def test_only_objects_of_the_scene_are_named(test_seed):
    blocks, zones = ("red_block", "green_block"), ("cyan_zone",)
    torch.manual_seed(test_seed)
    planner = tiny_planner(test_seed, temperature=5.0, blocks=blocks, zones=zones)
    outputs = planner.plan_batch(planner_inputs(100, seed=2 + test_seed))
    assert_all_parse(outputs, blocks, zones)
    assert set(outputs) <= set(valid_intents(blocks, zones)) and len(set(outputs)) > 5


def test_batched_planning_matches_one_at_a_time(test_seed):
    planner, inputs = tiny_planner(test_seed), planner_inputs(16, seed=3 + test_seed)
    assert planner.plan_batch(inputs) == [planner.plan(i) for i in inputs]


def test_fast_greedy_decoding_picks_what_generate_picks_in_fewer_forward_passes(test_seed):
    """Batch-1 greedy intents skip `generate` (agents/vlm/constrained.py greedy_intent): the same intent on every
    input, refusals left out as before, and a forced token (``##_block,`` after ``red``) costs no pass."""
    from dataclasses import replace

    planner, passes = VLMPlanner(model_path="shipped"), []
    planner.model.register_forward_hook(lambda *_: passes.append(1))
    inputs = planner_inputs(40, seed=11 + test_seed, size=96)
    inputs += [replace(i, history=[*i.history, IntentOutcome("pick(red_block)", False, 0, "rejected: x")])
               for i in inputs[:10]]  # fmt: skip
    fast, fast_passes, slow, slow_passes = [], [], [], []
    for inp in inputs:
        fast.append(planner.plan(inp))
        fast_passes.append(len(passes))
        passes.clear()
    planner.fast_greedy = False
    for inp in inputs:
        slow.append(planner.plan(inp))
        slow_passes.append(len(passes))
        passes.clear()
    assert fast == slow and len(set(fast)) > 3, fast
    # two arguments (place, push, stack): the block's ``##_block,`` is forced, one pass fewer; else as many
    saved = [int("," in intent) for intent in fast]
    assert [s - f for s, f in zip(slow_passes, fast_passes, strict=True)] == saved and sum(saved) >= 3


def test_a_thinking_planner_writes_a_bounded_thought_then_a_valid_intent(test_seed):
    """A random tiny model thinks free text: every thought stops by ``max_thought`` tokens (then ``next:`` is
    forced), never holds a special token, and the intent after it still parses; batched equals one at a time."""
    torch.manual_seed(test_seed)
    greedy = tiny_planner(test_seed, think=True, max_thought=6)
    sampled = tiny_planner(test_seed, think=True, max_thought=6, temperature=3.0)
    inputs = planner_inputs(24, seed=7 + test_seed)
    outputs = greedy.plan_batch(inputs)
    thoughts, lengths = greedy.last_thoughts, greedy.last_thought_tokens
    assert_all_parse(outputs + sampled.plan_batch(inputs))
    lengths = lengths + sampled.last_thought_tokens  # generated tokens (decoded text can re-tokenize longer)
    assert [greedy.plan(i) for i in inputs] == outputs
    assert len(thoughts) == 24 and max(lengths) <= 6 and len(set(sampled.last_thoughts)) > 5
    assert not any(special in t for t in thoughts for special in ("<image>", "<s>", "</s>", "<pad>"))
    plain = tiny_planner(test_seed)
    plain.plan_batch(inputs)
    assert plain.last_thoughts == [""] * 24
    with pytest.raises(ValueError, match="max_thought"):
        tiny_planner(test_seed, think=True, max_thought=0)


def test_thinking_labels_are_the_thought_then_next_then_the_intent():
    from intentloop.agents.vlm.data import Example
    from intentloop.agents.vlm.training import intent_trie, make_batch

    processor = build_default_model(TINY)[1]
    tok, image = processor.tokenizer, np.zeros((TINY.image_size, TINY.image_size, 3), np.uint8)
    thought = "blue: red. orange: none. cyan: none. holding: none."
    e = Example(image, "Clear the blue zone.", (), "pick(red_block)", 0, thought=thought)
    batch = make_batch(processor, [e], 12, think=True, trie=intent_trie(processor))
    labels = batch["labels"][0][batch["labels"][0] != -100].tolist()
    assert tok.decode(labels, skip_special_tokens=True).replace(" ", "") == f"{thought}next:pick(red_block)".replace(
        " ", ""
    )
    prompt = tok.decode(batch["input_ids"][0][batch["labels"][0] == -100], skip_special_tokens=True)
    assert prompt.replace(" ", "").endswith("history:none.scene:")
    chosen = batch["choices"][0].any(-1).nonzero().flatten().tolist()  # smoothing only inside the intent
    assert chosen and min(chosen) > len(batch["labels"][0]) - len(labels) + len(tok(thought)["input_ids"])
    with pytest.raises(ValueError, match="collect it again"):
        make_batch(processor, [Example(image, "Clear the blue zone.", (), "done()", 0)], 12, think=True)


class Forbidden:
    def __getattr__(self, name):
        raise AssertionError("the VLM planner read privileged state")

    def __getitem__(self, key):
        raise AssertionError("the VLM planner read privileged state")

    def __bool__(self):
        raise AssertionError("the VLM planner tested privileged state")


class TrappedInput(PlannerInput):
    """Privileged fields that raise when read, ``subgoals_done`` included (an int cannot trap itself)."""

    @property
    def subgoals_done(self):
        raise AssertionError("the VLM planner read subgoals_done")

    @subgoals_done.setter
    def subgoals_done(self, value):
        pass


def test_planner_reads_only_instruction_image_and_history(test_seed):
    """The same robot-visible input (instruction, image, history, feedback) with real, other and trapped
    privileged fields (obs, task, subgoals_done) gives the same intents."""
    env = gym.make("intentloop/Tabletop-v0", task="clear", image_size=32)
    (obs, info), (other, other_info) = env.reset(seed=2 * test_seed), env.reset(seed=2 * test_seed + 1)
    env.close()
    planner, inputs = tiny_planner(test_seed, temperature=0.0), planner_inputs(4, seed=test_seed)
    for i in inputs:
        i.feedback = [(len(i.history), "no, the yellow one")]

    def variant(make, **privileged):
        return [make(i.instruction, i.image, i.history, feedback=i.feedback, **privileged) for i in inputs]

    plain = planner.plan_batch(variant(PlannerInput))
    assert planner.plan_batch(variant(PlannerInput, obs=obs, task=info["task"], subgoals_done=0)) == plain
    assert planner.plan_batch(variant(PlannerInput, obs=other, task=other_info["task"], subgoals_done=3)) == plain
    assert planner.plan_batch(variant(TrappedInput, obs=Forbidden(), task=Forbidden())) == plain
    assert [planner.plan(i) for i in variant(TrappedInput, obs=Forbidden(), task=Forbidden())] == plain


def test_intents_share_the_instructions_colour_and_direction_tokens():
    _, processor = build_default_model(TINY)
    tok = processor.tokenizer
    pieces = tok.convert_ids_to_tokens(tok("push(red_block, left)", add_special_tokens=False)["input_ids"])
    words = tok.convert_ids_to_tokens(tok("Push the red block to the left.", add_special_tokens=False)["input_ids"])
    assert {"red", "left"} <= set(pieces) & set(words) and tok.unk_token not in pieces + words
    for text in valid_intents():
        assert parse_intent(tok.decode(tok(text, add_special_tokens=False)["input_ids"])) == parse_intent(text)


def test_the_users_words_sit_in_the_prompt_where_they_arrived():
    from intentloop.agents.vlm.processing import prompt_text

    history = [
        IntentOutcome("pick(red_block)", False, 5, "interrupted"),
        IntentOutcome("pick(red_block)", True, 9, "ok"),
    ]
    text = prompt_text("Put the red block in the blue zone.", history, 12, [(1, "no, the yellow one"), (0, "hi")])
    assert text == (
        "Put the red block in the blue zone. history: user: hi; pick(red_block) failed interrupted; "
        "user: no, the yellow one; pick(red_block) ok. next:"
    )
    assert prompt_text("Go.", history, 1, [(2, "stop")]).endswith("history: user: stop. next:")


def test_unseen_words_are_spelled_in_letters_never_unknown():
    tok = build_default_model(TINY)[1].tokenizer
    pieces = tok.tokenize("Would you kindly put the brikc which is red in the blue patch, cheers!")
    assert tok.unk_token not in pieces and pieces[pieces.index("the") + 1 : pieces.index("the") + 6] == [
        "b",
        "##r",
        "##i",
        "##k",
        "##c",
    ]
    assert "red" in pieces and "blue" in pieces  # known words stay whole


def build_idefics3(path):
    """A tiny Idefics3 (SmolVLM family) with a byte-level BPE tokenizer trained here, saved to ``path``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3Processor,
        PreTrainedTokenizerFast,
    )
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|pad|>", "<|endoftext|>", "<image>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    bpe.train_from_iterator(task_corpus(), trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<|pad|>", eos_token="<|endoftext|>")
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False, size={"longest_edge": 32}, max_image_size={"longest_edge": 32}
    )
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tok, image_seq_len=1)
    text = dict(
        model_type="llama",
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    vision = dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=1, image_size=32, patch_size=16
    )
    config = Idefics3Config(vision_config=vision, text_config=text, image_token_id=processor.image_token_id)
    Idefics3ForConditionalGeneration(config).save_pretrained(path)
    processor.save_pretrained(path)
    return tok


def test_another_architecture_with_a_bpe_tokenizer_loads_by_path_and_plans_valid_intents(tmp_path, test_seed):
    torch.manual_seed(test_seed)  # the random weights and the sampling
    tok = build_idefics3(tmp_path)
    spelled = [tok(t, add_special_tokens=False)["input_ids"] for t in valid_intents()]
    assert max(map(len, spelled)) > 5, "BPE cuts intents unlike the word-level tokenizer"
    planner = VLMPlanner(model_path=tmp_path, temperature=3.0)
    assert type(planner.model).__name__ == "Idefics3ForConditionalGeneration"
    inputs = planner_inputs(60, seed=4 + test_seed)
    outputs = planner.plan_batch(inputs) + [planner.plan(i) for i in inputs[:10]]
    assert_all_parse(outputs)
    assert len(set(outputs)) > 10


CHAT = (
    "{% for m in messages %}user: {% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}"
    "{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}{% if add_generation_prompt %} answer:{% endif %}"
)


def test_a_checkpoint_with_a_chat_template_gets_the_prompt_inside_its_turn_for_planning_and_training(
    tmp_path, test_seed
):
    """A processor with a chat template: the planner's text goes inside one user turn with the image, and the
    same prompt is what training teacher-forces (the labels start right after the template's generation cue)."""
    from intentloop.agents.vlm.data import Example
    from intentloop.agents.vlm.processing import build_prompt, scene_prompt
    from intentloop.agents.vlm.training import make_batch

    model, processor = build_default_model(tiny_config(test_seed))
    processor.chat_template = CHAT
    said = [IntentOutcome("pick(red_block)", True, 9, "achieved")]
    prompt = build_prompt(processor, "Clear the blue zone.", said, 12)
    assert prompt == "user: <image>Clear the blue zone. history: pick(red_block) ok. next: answer:"
    assert scene_prompt(processor) == "user: <image>scene: answer:"
    image = np.zeros((TINY.image_size, TINY.image_size, 3), np.uint8)
    batch = make_batch(processor, [Example(image, "Clear the blue zone.", tuple(said), "done()", 0)], 12)
    tok, labels = processor.tokenizer, batch["labels"][0]
    shown = tok.decode(batch["input_ids"][0][labels == -100], skip_special_tokens=True)
    assert shown.replace(" ", "").endswith("next:answer:") and shown.replace(" ", "").startswith("user:")
    assert tok.decode(labels[labels != -100], skip_special_tokens=True).replace(" ", "") == "done()"
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    planner = VLMPlanner(model_path=tmp_path)
    assert planner.processor.chat_template == CHAT  # kept by save_pretrained, used by the loaded planner
    assert_all_parse(planner.plan_batch(planner_inputs(12, seed=test_seed)))


def test_save_pretrained_round_trip_gives_identical_outputs(tmp_path, test_seed):
    planner, inputs = tiny_planner(7 + test_seed), planner_inputs(30, seed=test_seed)
    planner.save_pretrained(tmp_path)
    loaded = VLMPlanner(model_path=tmp_path)
    assert loaded.plan_batch(inputs) == planner.plan_batch(inputs)
    batch = loaded.processor(text=["<image>put the"], images=[[inputs[0].image]], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(loaded.model(**batch).logits, planner.model(**batch).logits)


def test_record_and_replay_reproduce_an_episode_without_the_model(tmp_path, test_seed):
    env, seed = gym.make("intentloop/Tabletop-v0", chain_length=2, image_size=32), 3 + 2 * test_seed
    for model_seed in range(10 * test_seed, 10 * test_seed + 10):  # a random model may say done() first: no episode
        log = tmp_path / f"calls-{model_seed}.jsonl"
        planner = RecordingPlanner(tiny_planner(model_seed), log)
        first = HierarchicalAgent(planner, ScriptedSkill(), max_steps_per_intent=8).run_episode(env, seed=seed)
        if first.outcomes:
            break
    replay = ReplayPlanner(log)
    again = HierarchicalAgent(replay, ScriptedSkill(), max_steps_per_intent=8).run_episode(env, seed=seed)
    assert [o.intent for o in again.outcomes] == [o.intent for o in first.outcomes] and first.outcomes
    assert again.to_dict() | {"planner": None} == first.to_dict() | {"planner": None}
    logged = [json.loads(line)["intent"] for line in log.read_text().splitlines()]
    assert logged[: len(first.outcomes)] == [o.intent for o in first.outcomes]
    assert len(logged) <= len(first.outcomes) + 1  # and maybe the final done()
    with pytest.raises(UnrecordedInput, match="has no call for this input"):
        HierarchicalAgent(replay, ScriptedSkill(), max_steps_per_intent=8).run_episode(env, seed=seed + 1)
    log.write_text(log.read_text() + "{not json\n")
    with pytest.raises(ValueError, match="corrupt at line"):
        ReplayPlanner(log)


def test_examples_come_from_the_train_split_and_end_with_done(test_seed):
    settings = DataSettings(
        episodes=[2, 2, 1], families=["clear", "swap"], family_episodes=1, scene_examples=2, image_size=32, noise=0.0
    )
    settings.seed += 100 * test_seed
    examples = [e for e in collect_examples(settings, progress=False) if e.task == "plan"]
    scenes = [e for e in examples if e.episode < 0]  # first steps of fresh arranged scenes, 2 per family
    assert len(scenes) == 4 and all(not e.history and e.target.startswith("pick(") for e in scenes)
    assert len({e.image.tobytes() for e in scenes}) == 4
    examples = [e for e in examples if e.episode >= 0]
    held = heldout_compositions(0)
    assert all(composition(parse_intent(e.target)) not in held for e in examples if e.target != "done()")
    last = {}
    for e in examples:
        last[e.episode] = e
    assert sorted(last) == [0, 1, 2, 3, 4, 5, 6] and all(e.target == "done()" for e in last.values())
    assert {e.instruction for e in examples if e.episode == 6} != {e.instruction for e in examples if e.episode == 4}
    assert all(e.image.shape == (32, 32, 3) and e.image.dtype == np.uint8 for e in examples)
    # each example knows its family, and numbering an unlabelled copy by episode gives the same labels back
    assert [e.family for e in examples] == ["chain"] * sum(e.episode < 5 for e in examples) + [
        "clear" if e.episode == 5 else "swap" for e in examples if e.episode >= 5
    ]
    assert {e.family for e in scenes} == {"clear", "swap"}


def test_extra_family_data_comes_after_the_default_data_which_it_leaves_as_it_was(test_seed):
    """`extra_episodes` / `extra_scenes` add episodes and first-step scenes of one family; the default data is
    collected first with the same seeds, so a cache with extras still holds it example for example."""
    base = DataSettings(episodes=[1], families=["clear"], family_episodes=1, scene_examples=2, image_size=32)
    base.seed += 100 * test_seed
    more = DataSettings(**{**base.__dict__, "extra_episodes": {"refer": 2}, "extra_scenes": {"clear": 2, "refer": 1}})
    a, b = collect_examples(base, progress=False), collect_examples(more, progress=False)

    def same(x, y) -> bool:
        return all(getattr(x, f) == getattr(y, f) for f in ("target", "instruction", "episode")) and np.array_equal(
            x.image, y.image
        )

    episodes_a = [e for e in a if e.episode >= 0]
    assert all(same(x, y) for x, y in zip(episodes_a, b, strict=False))
    extra = [e for e in b if e.episode >= 0][len(episodes_a):]
    assert {e.family for e in extra} == {"refer"} and {e.episode for e in extra} == {2, 3}
    scenes_a, scenes_b = ([e for e in x if e.episode < 0 and e.task == "plan"] for x in (a, b))
    assert len(scenes_a) == 2 and all(same(x, y) for x, y in zip(scenes_a, scenes_b, strict=False))
    new = scenes_b[2:]
    assert [e.family for e in new] == ["clear", "clear", "refer"]
    assert len({e.image.tobytes() for e in scenes_b[:4]}) == 4  # the extra clear scenes are new scenes
    with pytest.raises(ValueError, match="extra_scenes"):
        DataSettings(extra_scenes={"perturb": 5})
    with pytest.raises(ValueError, match="whole numbers"):
        DataSettings(extra_episodes={"clear": -1})


def test_a_caption_fraction_keeps_every_intent_example_and_that_share_of_cached_captions(test_seed):
    from intentloop.agents.vlm.data import Example
    from intentloop.experiments.train_planner import keep_captions

    image = np.zeros((4, 4, 3), np.uint8)
    examples = [Example(image, "", (), "x", i, task="scene" if i % 2 else "plan") for i in range(2000)]
    for fraction in (0.0, 0.3, 1.0):
        kept = keep_captions(examples, fraction, seed=test_seed)
        assert [e for e in kept if e.task == "plan"] == examples[::2]
        assert abs(sum(e.task == "scene" for e in kept) - 1000 * fraction) <= 50


def test_captions_describe_the_scene_the_image_shows(test_seed):
    """Each caption is the place of every block in the scene its image was rendered from; the image pixels and
    the caption change together (the label comes from privileged state, never the planner's input)."""
    settings = DataSettings(episodes=[1], families=["clear"], family_episodes=1, scene_examples=6, image_size=32)
    settings.seed += 100 * test_seed
    examples = collect_examples(settings, progress=False)
    captions = [e for e in examples if e.task == "scene"]
    assert len(captions) > 6 and all(e.instruction == "" and not e.history for e in captions)
    for e in captions:  # every block named once in each ordering, every zone once
        left, near = (re.search(f"{w}: ([a-z ]+)\\.", e.target).group(1).split() for w in ("right", "far"))
        assert sorted(left) == sorted(near) == sorted(b.split("_")[0] for b in BLOCKS)
        assert all(f"{z.split('_')[0]} zone:" in e.target for z in ZONES)
    scenes = [e for e in captions if e.episode < 0]
    plans = {e.episode: e for e in examples if e.task == "plan" and e.episode < 0}
    for e in scenes:  # clear: the block the oracle picks first sits in the zone the caption names
        picked = parse_intent(plans[e.episode].target).args[0].split("_")[0]
        assert np.array_equal(e.image, plans[e.episode].image)
        assert any(picked in part.split(":")[1] for part in e.target.split(". ") if "zone:" in part), e.target
    assert len({e.target for e in scenes}) > 1


def test_scene_caption_reads_zones_stacks_and_orderings(test_seed):
    from intentloop.agents.vlm.data import scene_caption
    from intentloop.envs import goals as G
    from intentloop.envs.goal_tasks import arrange
    from intentloop.envs.scene import sample_layout

    layout = sample_layout(np.random.default_rng(3 + test_seed))
    layout = arrange(None, layout, {"red_block": "blue_zone"}, {"green_block": "red_block"})
    obs = G.state_from_layout(layout)
    caption = scene_caption(obs)
    assert "blue zone: red green." in caption and "stacks: green on red." in caption and "holding: none." in caption
    xs = sorted(BLOCKS, key=lambda b: layout.block_xy(b)[0])
    assert f"left to right: {' '.join(b.split('_')[0] for b in xs)}." in caption


def test_a_few_training_steps_lower_the_loss(tmp_path, test_seed):
    data = DataSettings(episodes=[3, 2], families=[], image_size=32, noise=0.0)
    data.seed += 100 * test_seed
    examples = collect_examples(data, progress=False)
    model, processor = build_default_model(tiny_config(test_seed))
    before = evaluate_examples(model, processor, examples)["loss"]
    settings = TrainSettings(
        steps=40, batch_size=8, lr=3e-3, warmup_steps=2, log_every=5, eval_every=40, seed=test_seed
    )
    metrics = train_planner(model, processor, examples, examples[:8], tmp_path / "out", settings, progress=False)
    after = evaluate_examples(model, processor, examples)["loss"]
    assert after < 0.6 * before, (before, after)
    assert metrics["steps"] == 40 and "val/exact_match" in metrics and "val_scene/exact_match" in metrics
    assert (tmp_path / "out" / "config.json").exists() and list((tmp_path / "out" / "tb").glob("events.*"))
    assert_all_parse(VLMPlanner(model_path=tmp_path / "out").plan_batch(planner_inputs(8)))
    assert VLMPlanner(model_path=tmp_path / "out").think is False


def test_dpo_ranks_the_chosen_intent_above_the_rejected_one_against_the_frozen_start(tmp_path, test_seed):
    from intentloop.agents.reflection import PreferencePair
    from intentloop.agents.vlm.dpo import intent_logps, train_dpo
    from intentloop.agents.vlm.training import make_batch

    data = DataSettings(episodes=[3, 2], families=[], image_size=32, noise=0.0, captions=0.0)
    data.seed += 100 * test_seed
    examples = collect_examples(data, progress=False)
    rng = np.random.default_rng(test_seed)
    pairs = [PreferencePair(e, str(rng.choice([t for t in valid_intents() if t != e.target])), "refused")
             for e in examples]  # fmt: skip
    model, processor = build_default_model(tiny_config(test_seed))

    def preference(m) -> torch.Tensor:  # log pi(chosen) - log pi(rejected), per pair
        with torch.no_grad():
            both = [p.chosen for p in pairs] + [replace(p.chosen, target=p.rejected) for p in pairs]
            logps = intent_logps(m.eval(), make_batch(processor, both, 12))
        return logps[: len(pairs)] - logps[len(pairs) :]

    before = preference(model)
    settings = TrainSettings(steps=30, batch_size=8, lr=3e-3, warmup_steps=2, log_every=10, seed=test_seed)
    metrics = train_dpo(model, processor, pairs, [], tmp_path / "out", settings, beta=0.5, progress=False)
    gained = preference(model) - before
    assert float((gained > 0).float().mean()) >= 0.9, gained
    assert metrics["train/reward_accuracy"] >= 0.9 and metrics["train/dpo_loss"] < 0.4  # log 2 = 0.69 at the start
    assert metrics["pairs"] == len(pairs) and metrics["train/loss"] == 0.0  # no supervised term
    assert_all_parse(VLMPlanner(model_path=tmp_path / "out").plan_batch(planner_inputs(4)))
    with pytest.raises(ValueError, match="no preference pairs"):
        train_dpo(model, processor, [], examples, tmp_path / "none", settings, progress=False)


def test_a_planner_trained_to_think_learns_its_thoughts_and_thinks_when_loaded(tmp_path, test_seed):
    """train.think: the labels are the thought and the intent; a few steps lower that loss, and the saved
    checkpoint makes a planner that thinks by default (``think=None``) and whose thoughts are learned text."""
    data = DataSettings(episodes=[3], families=["clear"], family_episodes=2, scene_examples=4, image_size=32)
    data.seed += 100 * test_seed
    examples = [e for e in collect_examples(data, progress=False) if e.task == "plan"]
    assert all(e.thought.endswith("holding: none.") or "holding:" in e.thought for e in examples)
    model, processor = build_default_model(tiny_config(test_seed))
    before = evaluate_examples(model, processor, examples, think=True)["loss"]
    settings = TrainSettings(steps=60, batch_size=8, lr=3e-3, warmup_steps=2, eval_every=60, seed=test_seed, think=True)
    train_planner(model, processor, examples, examples[:8], tmp_path / "out", settings, progress=False)
    assert evaluate_examples(model, processor, examples, think=True)["loss"] < 0.5 * before
    planner = VLMPlanner(model_path=tmp_path / "out")
    inputs = [PlannerInput(e.instruction, e.image, list(e.history)) for e in examples[:8]]
    assert planner.think is True
    assert_all_parse(planner.plan_batch(inputs))
    vocabulary = {w for e in examples for w in re.findall(r"\w+|[^\w\s]", e.thought)}  # colours, none, holding...
    written = [w for t in planner.last_thoughts for w in re.findall(r"\w+|[^\w\s]", t)]
    assert written and set(written) <= vocabulary, set(written) - vocabulary
    torch.manual_seed(test_seed)  # an untrained model, sampled, writes words no thought has
    random_planner = VLMPlanner(model_config=tiny_config(test_seed), think=True, temperature=1.0)
    random_planner.plan_batch(inputs)
    assert not {w for t in random_planner.last_thoughts for w in re.findall(r"\w+|[^\w\s]", t)} <= vocabulary
    assert VLMPlanner(model_path=tmp_path / "out", think=False).think is False


def one_sentence(e: Exception, path) -> bool:
    return str(path) in str(e) and "\n" not in str(e) and str(e).count(". ") == 0


def test_bad_checkpoints_fail_with_one_sentence_naming_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as e:
        VLMPlanner(model_path=missing)
    assert one_sentence(e.value, missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError) as e:
        VLMPlanner(model_path=tmp_path / "empty")
    assert one_sentence(e.value, tmp_path / "empty")
    good = tmp_path / "good"
    tiny_planner().save_pretrained(good)
    for name, damage in [("config.json", "{not json"), ("model.safetensors", "truncated")]:
        bad = tmp_path / f"bad_{name}"
        bad.mkdir()
        for f in good.iterdir():
            (bad / f.name).write_bytes(f.read_bytes())
        (bad / name).write_text(damage)
        with pytest.raises(ValueError) as e:
            VLMPlanner(model_path=bad)
        assert one_sentence(e.value, bad), e.value


@pytest.mark.parametrize("damage", ["missing", "nan"])
def test_a_checkpoint_with_missing_or_non_finite_weights_is_refused(tmp_path, damage):
    from safetensors.torch import load_file, save_file

    tiny_planner().save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    name = sorted(weights)[len(weights) // 2]
    if damage == "missing":
        del weights[name]
    else:
        weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    expected = r"has weights missing or of the wrong shape \(1, " if damage == "missing" else "has non-finite weights"
    with pytest.raises(ValueError, match=expected) as e:
        VLMPlanner(model_path=tmp_path)
    assert one_sentence(e.value, tmp_path) and name in str(e.value)


def test_trie_refuses_a_tokenizer_that_cannot_spell_an_intent():
    _, processor = build_default_model(TINY)
    with pytest.raises(ValueError, match="cannot spell the intent 'pick\\(rosé_block\\)'"):
        IntentTrie(processor.tokenizer, ["pick(rosé_block)"])  # letters outside ASCII are the only unknowns


def test_hydra_configs_compose_and_build_the_planner():
    import intentloop.configs.planner_schema  # noqa: F401
    from hydra import compose, initialize_config_module

    tiny = [f"planner.model.{k}={v}" for k, v in TINY.__dict__.items()]
    with initialize_config_module("intentloop.configs", version_base="1.3"):
        train = compose("train_planner", ["train.steps=2", *tiny])
        evaluate = compose("evaluate", ["planner=vlm", "planner.temperature=0.5", *tiny])
    assert train.planner.name == "vlm" and train.train.steps == 2 and train.planner.model.text_layers == 1
    assert evaluate.planner.model_path is None and evaluate.planner.temperature == 0.5
    planner = VLMPlanner.from_config(evaluate.planner)
    assert planner.temperature == 0.5 and planner.model.config.text_config.num_hidden_layers == 1
    assert_all_parse(planner.plan_batch(planner_inputs(4)))


@pytest.mark.slow
def test_train_planner_app_runs_and_rejects_bad_values(tmp_path):
    env = {**os.environ, "MUJOCO_GL": "egl", "HYDRA_FULL_ERROR": "0"}
    tiny = [f"planner.model.{k}={v}" for k, v in TINY.__dict__.items()]
    args = [
        sys.executable,
        "-m",
        "intentloop.experiments.train_planner",
        "data.episodes=[2,1]",
        "data.families=[]",
        "data.image_size=32",
        "data.val_fraction=0.34",
        "train.steps=3",
        "train.eval_every=3",
        "progress=false",
        *tiny,
    ]
    cache = f"data_cache={tmp_path / 'data.npz'}"
    proc = subprocess.run(
        [*args, cache, f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 3 and (tmp_path / "planner" / "model.safetensors").exists()
    plans = [e for e in load_examples(tmp_path / "data.npz") if e.task == "plan"]
    assert metrics["train_examples"] + metrics["val_examples"] > len(plans), "captions by default"
    again = [*args, cache, "data.captions=0", f"hydra.run.dir={tmp_path}/again"]
    proc = subprocess.run(again, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "reading planner data" in proc.stdout, proc.stderr
    metrics = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert metrics["train_examples"] + metrics["val_examples"] == len(plans), "captions=0 drops the cached ones"
    bad = subprocess.run(
        [*args, "train.lr=-1", f"hydra.run.dir={tmp_path}/bad"], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2 and "`lr` must be > 0" in bad.stderr and "Traceback" not in bad.stderr


def test_argument_noise_swaps_only_the_first_argument_into_seen_compositions(test_seed):
    from intentloop.agents.vlm.training import _target

    tok = build_default_model(TINY)[1].tokenizer
    seen = {("place", "green_block", "blue_zone"), ("place", "red_block", "blue_zone")}
    rng, swapped = np.random.default_rng(test_seed), 0
    for _ in range(20):
        given, labels = _target(tok, "place(red_block, blue_zone)", [tok.eos_token_id], 0.99, rng, seen)
        given_intent = parse_intent(tok.decode(given, skip_special_tokens=True))
        assert given_intent in (
            parse_intent("place(green_block, blue_zone)"),
            parse_intent("place(red_block, blue_zone)"),
        )
        swapped += given_intent.args[0] == "green_block"
        assert parse_intent(tok.decode(labels, skip_special_tokens=True)) == parse_intent("place(red_block, blue_zone)")
    assert swapped >= 15, swapped  # 0.99 of them; 6 unswapped of 20 has probability ~4e-8
    for noise in (0.0, 0.99):  # no seen composition to swap into, or no noise: unchanged
        given, labels = _target(tok, "push(red_block, left)", [tok.eos_token_id], noise, rng, seen)
        assert torch.equal(given, labels)


def test_argument_smoothing_spreads_only_over_the_choices_the_intent_grammar_leaves_open():
    from intentloop.agents.vlm.data import Example
    from intentloop.agents.vlm.training import intent_trie, make_batch, smoothed_loss

    model, processor = build_default_model(TINY)
    tok, image = processor.tokenizer, np.zeros((TINY.image_size, TINY.image_size, 3), np.uint8)
    examples = [
        Example(image, "Push the red block to the left.", (), "push(red_block, left)", 0),
        Example(image, "Put the red block in the blue zone.", (), "place(red_block, blue_zone)", 0),
        Example(image, "", (), "blue zone: red. orange zone: none.", 0, task="scene"),
    ]
    batch = make_batch(processor, examples, 12, trie=intent_trie(processor))
    choices = batch.pop("choices")
    open_at = {
        r: [(tok.convert_ids_to_tokens(int(batch["labels"][r, t])), set(tok.convert_ids_to_tokens(
            choices[r, t].nonzero().flatten().tolist()))) for t in range(choices.shape[1]) if choices[r, t].any()]
        for r in range(3)
    }  # fmt: skip
    colours = {"red", "green", "yellow", "purple"}
    assert open_at[0] == [("push(", {"pick(", "place(", "push(", "done()"}), ("red", colours),
                          ("left", {"left", "right", "forward", "backward"})]  # fmt: skip
    assert open_at[1][1] == ("red", colours)
    assert open_at[1][2] == ("blue", {"green", "yellow", "purple", "blue", "orange", "cyan"})  # not red itself
    assert open_at[2] == []  # captions are not intents: never smoothed
    out = model(**batch)
    assert torch.isclose(smoothed_loss(out.logits, batch["labels"], choices, 0.0), out.loss, atol=1e-5)


def test_argument_smoothing_lifts_a_never_seen_argument_where_plain_cross_entropy_buries_it():
    """One label position whose grammar allows four directions: the gold one, two other seen ones and a
    held-out one with a low logit. Plain cross-entropy pushes the held-out logit further down; the smoothed
    target pulls it up towards the same floor as every other non-gold choice."""
    from intentloop.agents.vlm.training import smoothed_loss

    vocab, allowed, gold, heldout = 10, [2, 3, 4, 5], 2, 5
    labels = torch.tensor([[-100, gold]])
    choices = torch.zeros((1, 2, vocab), dtype=torch.bool)
    choices[0, 1, allowed] = True
    grads = {}
    for smoothing in (0.0, 0.2):
        logits = torch.zeros((1, 2, vocab))
        logits[0, 0, [gold, 3, 4]] = torch.tensor([6.0, 1.0, 1.0])
        logits[0, 0, heldout] = -8.0
        logits.requires_grad_(True)
        smoothed_loss(logits, labels, choices, smoothing).backward()
        grads[smoothing] = logits.grad[0, 0]
    assert grads[0.0][heldout] > 0  # gradient descent lowers it
    assert grads[0.2][heldout] < 0  # gradient descent raises it
    assert grads[0.2][7] > 0  # a token outside the grammar's choices is never raised
    assert grads[0.2][heldout] < grads[0.2][3]  # the buried choice is raised the most


ARGUMENT_WORDS = ("left", "leftwards", "right", "rightwards", "forward", "backward", "away", "towards", "near", "far")


def test_garbled_instructions_keep_their_colours_and_words_and_differ_from_the_held_out_rules(test_seed):
    from intentloop.agents.vlm.training import garble
    from intentloop.envs import language

    rng, suite, changed = np.random.default_rng(test_seed), TaskSuite("train"), 0
    for _ in range(200):
        _, task = suite.sample_episode(rng, chain_length=2)
        text = garble(task.instruction, rng)
        changed += text != task.instruction  # unchanged only when no word may be misspelt
        for kept in (language.COLOURS, ARGUMENT_WORDS):  # what decides an argument is never misspelt
            words = [w for w in re.findall("[a-z]+", text.lower()) if w in kept]
            assert words == [w for w in re.findall("[a-z]+", task.instruction.lower()) if w in kept], text
        assert abs(len(text.split()) - len(task.instruction.split())) <= 1  # one edit
        assert len(text) >= len(task.instruction) or any(  # a letter is never dropped (a held-out typo)
            w not in task.instruction for w in text.split()
        )
    assert changed >= 190, changed


def test_garble_keeps_every_deciding_word_of_goal_tasks_and_replaces_verbs_that_decide_nothing(test_seed):
    from intentloop.agents.vlm.training import EDITABLE, garble
    from intentloop.envs.goal_tasks import GOAL_FAMILIES
    from intentloop.envs.tasks import deciding_words

    deciding = deciding_words() - EDITABLE  # nouns may be misspelt or made up: the colour decides the object
    rng, suite, verbs = np.random.default_rng(test_seed), TaskSuite("train"), 0
    assert {"clear", "except", "swap", "nearest", "left", "every", "two", "red"} <= deciding
    assert not {"slide", "upon", "then"} & deciding_words()  # the structure says what these say
    assert not {"stays", "leftwards"} & deciding_words()  # only in held-out phrasings, never in a training text
    for i in range(300):
        family = GOAL_FAMILIES[i % len(GOAL_FAMILIES)] if i % 2 else "chain"
        _, task = suite.sample_episode(rng, family, chain_length=2)
        text = garble(task.instruction, rng)
        words = lambda t: [w for w in re.findall("[a-z']+", t.lower()) if w in deciding]  # noqa: E731
        assert words(text) == words(task.instruction), (task.instruction, text)
        replaced = set(re.findall("[a-z']+", task.instruction.lower())) - set(re.findall("[a-z']+", text.lower()))
        verbs += bool(replaced) and not replaced & deciding and len(text.split()) == len(task.instruction.split())
    assert verbs >= 10, verbs  # a quarter of the edits may hit a non-deciding word, when the text has one


def test_patch_positions_start_apart_and_zero_keeps_clips_start(test_seed):
    from dataclasses import replace

    from intentloop.agents.vlm.modeling import grid_positions

    def positions(scale):
        model, _ = build_default_model(replace(TINY, image_size=64, position_init=scale, seed=test_seed))
        return model.model.vision_tower.embeddings.position_embedding.weight.detach()

    coded, plain = positions(1.0), positions(0.0)
    assert torch.equal(coded[0], plain[0]), "the CLS position keeps its seeded start"
    assert torch.allclose(coded[1:], grid_positions(4, TINY.vision_hidden))
    gaps = torch.cdist(coded[1:], coded[1:]) + 10 * torch.eye(16)
    assert gaps.min() > 0.3 and plain[1:].std() < 0.05  # CLIP's N(0, 0.02): patches alike
    with pytest.raises(ValueError, match="position_init"):
        VLMModelConfig(position_init=-1.0)


def test_the_shipped_planner_loads_by_name_and_reads_the_scene_from_the_image():
    from intentloop.agents import OraclePlanner

    planner = VLMPlanner(model_path="shipped")
    for family in ("clear", "count"):  # the first intent depends on what the scene shows
        env = gym.make("intentloop/Tabletop-v0", task=family, image_size=96)
        inputs, oracle = [], []
        for seed in range(500, 524):
            obs, info = env.reset(seed=seed)
            inputs.append(PlannerInput(obs["instruction"], obs["image"], []))
            oracle.append(
                OraclePlanner().plan(PlannerInput(obs["instruction"], obs["image"], [], obs, info["task"], 0))
            )
        env.close()
        seen = planner.plan_batch(inputs)
        blind = planner.plan_batch([PlannerInput(i.instruction, np.zeros_like(i.image), []) for i in inputs])
        right, right_blind = sum(map(str.__eq__, seen, oracle)), sum(map(str.__eq__, blind, oracle))
        assert right >= 18 and right_blind <= 8, (family, right, right_blind)  # 20 / 1 and 21 / 8 when shipped

"""Supervised examples for the planner, from the scripted oracle on the train split only.

`collect_examples` runs `OraclePlanner` + `ScriptedSkill` through `HierarchicalAgent` in
``intentloop/Tabletop-v0`` (``split="train"``, train phrasings) for chains of 1 to 5 intents and for the
goal-level families (arranged scenes; the oracle replans from the state after every detour), and records
every planner call as (camera image, instruction, history, the oracle's intent). The env ends an episode as
soon as its last subgoal holds, before the agent asks again, so that final ``done()`` example is added here.
With ``noise > 0`` that fraction of calls executes a random valid intent instead while the label stays the
oracle's, so the histories also hold failures and detours and the planner learns to recover from them.

The second task, ``scene:`` (DataSettings.captions): the same images described in words by `scene_caption`
(which blocks sit in which zone, stacks, the held block, the blocks ordered left to right and near to far).
One caption names every block's place, so it trains the vision tower far faster than the one intent of a
planning example does; the planner never sees a caption at run time (the label reads privileged state, as the
oracle's intent does).

The env runs with ``image=False`` and the camera is rendered only when the planner is asked (the env's own
render call, so the image is the one the env would have returned): most steps then skip the renderer.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import intentloop.envs  # noqa: F401  (registers the env ids)
import numpy as np
from intentloop.agents.agent import EpisodeResult, HierarchicalAgent
from intentloop.agents.planner import IntentOutcome, OraclePlanner, PlannerInput
from intentloop.agents.vlm.configuration import DataSettings
from intentloop.envs import goals as G
from intentloop.envs import predicates as P
from intentloop.envs.goal_tasks import SCENE_FAMILIES
from intentloop.envs.intents import DONE, valid_intents
from intentloop.envs.scene import BLOCKS, ZONES
from intentloop.envs.world import image_shape
from intentloop.policies import ScriptedSkill
from tqdm import tqdm


@dataclass(frozen=True)
class Example:
    image: np.ndarray  # (H, W, 3) uint8, the camera when the intent was asked for
    instruction: str
    history: tuple[IntentOutcome, ...]
    target: str  # the oracle's intent, canonical text
    episode: int  # which collected episode it comes from
    feedback: tuple[tuple[int, str], ...] = ()  # what the user had said: (outcomes before it, text)
    task: str = "plan"  # "plan": target is the next intent; "scene": target is `scene_caption` of the image
    family: str = ""  # the task family it was collected in ("chain" for templated chains; a label, never an input)
    thought: str = ""  # plan examples: `scene_thought` of the scene the image shows (what a thinking planner writes)


def _colour(name: str) -> str:
    return name.split("_")[0]


def _places(obs: dict) -> tuple[list[tuple[str, list[str]]], list[str], str]:
    """(each zone's colour and the colours of the blocks in it, bottom to top; the stacks as "top on base"; the
    held block's colour or "none"), from privileged state."""
    held, zones = G.carrying(obs), []
    for z in ZONES:
        inside = sorted((b for b in BLOCKS if G.over(obs, b, z) and b != held), key=lambda b: P.block_pos(obs, b)[2])
        zones.append((_colour(z), [_colour(b) for b in inside]))
    stacks = [f"{_colour(b)} on {_colour(base)}" for b in BLOCKS if b != held and (base := G.base_of(obs, b))]
    return zones, stacks, _colour(held) if held else "none"


def scene_caption(obs: dict) -> str:
    """The scene in words from privileged state, a training label only::

    blue zone: red. orange zone: none. cyan zone: green yellow. stacks: yellow on green. holding: none.
    left to right: green red purple yellow. near to far: red green purple yellow.
    """
    zones, stacks, held = _places(obs)
    words = [f"{z} zone: {' '.join(inside) or 'none'}." for z, inside in zones]
    words.append(f"stacks: {', '.join(stacks) or 'none'}. holding: {held}.")
    for what, axis in (("left to right:", 0), ("near to far:", 1)):
        words.append(f"{what} {' '.join(_colour(b) for b in sorted(BLOCKS, key=lambda b: P.block_pos(obs, b)[axis]))}.")
    return " ".join(words)


def scene_thought(obs: dict) -> str:
    """What a thinking planner writes before its intent (``planner.think``): what each zone holds, bottom to top,
    the stacks if there are any, and the held block, from privileged state (a training label only)::

    blue: red purple. orange: none. cyan: none. stacks: purple on red. holding: none.

    Short on purpose (17 tokens with the default tokenizer, 4 more per stack): every token is one more decoding
    step per intent. It names the facts the planner most often gets wrong while its own full caption is right
    (planner v5: ``done()`` with a block still in the zone to clear)."""
    zones, stacks, held = _places(obs)
    words = [f"{z}: {' '.join(inside) or 'none'}." for z, inside in zones]
    stacked = [f"stacks: {', '.join(stacks)}."] if stacks else []  # only when there are: most scenes have none
    return " ".join([*words, *stacked, f"holding: {held}."])


class _Teacher:
    """Asks the oracle, records the example, and now and then executes a random intent instead."""

    name = "oracle"

    def __init__(self, rng: np.random.Generator, noise: float, image_size: int, captions: float = 0.0):
        self.oracle, self.rng, self.noise, self.captions = OraclePlanner(), rng, noise, captions
        self.height, self.width = image_shape(image_size)
        self.env: gym.Env | None = None  # the env being run, for its camera
        self.detours = [t for t in valid_intents() if t != str(DONE)]
        self.examples: list[Example] = []
        self.episode, self.family = 0, ""

    def reset(self) -> None:
        self.oracle.reset()

    def plan(self, inp: PlannerInput) -> str:
        target = self.oracle.plan(inp)
        image = self.env.unwrapped.world.sim.render(self.width, self.height)  # as the env's _obs() renders
        heard = tuple(inp.feedback)
        here = {"episode": self.episode, "family": self.family}
        thought = scene_thought(inp.obs)
        self.examples.append(
            Example(image, inp.instruction, tuple(inp.history), target, feedback=heard, thought=thought, **here)
        )
        if self.rng.random() < self.captions:
            self.examples.append(Example(image, "", (), scene_caption(inp.obs), task="scene", **here))
        if target != str(DONE) and self.rng.random() < self.noise:
            return str(self.rng.choice([t for t in self.detours if t != target]))
        return target

    def finish(self, result: EpisodeResult) -> None:
        """After a successful episode: the ``done()`` the planner should say next, unless it was asked already."""
        last = self.examples[-1] if self.examples else None
        if result.success and not (last and last.episode == self.episode and last.target == str(DONE)):
            image = self.env.unwrapped.world.sim.render(self.width, self.height)
            here = {"episode": self.episode, "feedback": tuple(result.feedback), "family": self.family}
            thought = scene_thought(self.env.unwrapped.world.state_obs())
            self.examples.append(
                Example(image, result.instruction, tuple(result.outcomes), str(DONE), thought=thought, **here)
            )


def collect_examples(settings: DataSettings | None = None, progress: bool = True) -> list[Example]:
    """Examples from ``sum(settings.episodes)`` chain episodes, ``settings.family_episodes`` of each goal-level
    family in ``settings.families`` and then ``settings.extra_episodes``, train split; episode i uses seed
    ``settings.seed + i``."""
    s = settings or DataSettings()
    teacher = _Teacher(np.random.default_rng(s.seed), s.noise, s.image_size, s.captions)
    runs = [("chain", length, count) for length, count in enumerate(s.episodes, 1)]
    runs += [(family, 1, s.family_episodes) for family in s.families]
    runs += [(family, 1, count) for family, count in s.extra_episodes.items()]
    bar = tqdm(total=sum(n for *_, n in runs), desc="collect planner data", unit="ep", disable=not progress)
    for family, length, count in runs:
        if count == 0:
            continue
        env = gym.make(
            "intentloop/Tabletop-v0", backend=s.backend, task=family, chain_length=length, split="train", image=False
        )
        teacher.env, teacher.family = env, family
        agent = HierarchicalAgent(teacher, ScriptedSkill())
        for _ in range(count):
            teacher.finish(agent.run_episode(env, seed=s.seed + teacher.episode))
            teacher.episode += 1
            bar.update()
        env.close()
    bar.close()
    return teacher.examples + scene_examples(s, progress)


def scene_examples(settings: DataSettings | None = None, progress: bool = True) -> list[Example]:
    """``settings.scene_examples`` first-step examples per family of SCENE_FAMILIES in ``settings.families``, then
    ``settings.extra_scenes`` more: a fresh arranged scene (seed ``settings.seed + 1_000_000 + i``, i counting on
    in the extra ones), its instruction and the oracle's first intent, and with probability ``settings.captions``
    the scene's caption as well. Each costs a reset and one render, so the planner sees many more scenes than whole
    episodes could show."""
    s = settings or DataSettings()
    runs = [(f, 0, s.scene_examples) for f in s.families if f in SCENE_FAMILIES]
    runs += [(f, s.scene_examples if f in s.families else 0, n) for f, n in s.extra_scenes.items() if n]
    out: list[Example] = []
    rng = np.random.default_rng(s.seed + 1)
    bar = tqdm(total=sum(n for *_, n in runs), desc="scene examples", unit="ex", disable=not progress)
    for family, first, count in runs:
        env = gym.make("intentloop/Tabletop-v0", backend=s.backend, task=family, split="train", image_size=s.image_size)
        for i in range(first, first + count):
            obs, info = env.reset(seed=s.seed + 1_000_000 + i)
            oracle = OraclePlanner()
            target = oracle.plan(PlannerInput(obs["instruction"], obs["image"], [], obs, info["task"], 0))
            episode = -1 - len(out)  # unique: out grows after every scene
            out.append(
                Example(
                    obs["image"], obs["instruction"], (), target, episode, family=family, thought=scene_thought(obs)
                )
            )
            if rng.random() < s.captions:
                out.append(Example(obs["image"], "", (), scene_caption(obs), episode, task="scene", family=family))
            bar.update()
        env.close()
    bar.close()
    return out


def split_examples(examples: list[Example], val_fraction: float, seed: int = 0) -> tuple[list, list]:
    """(train, validation), split by episode so no validation instruction is seen in training."""
    episodes = sorted({e.episode for e in examples})
    n_val = int(round(val_fraction * len(episodes)))
    val = set(np.random.default_rng(seed).permutation(episodes)[:n_val].tolist())
    return [e for e in examples if e.episode not in val], [e for e in examples if e.episode in val]


def save_examples(path: str | Path, examples: list[Example]) -> None:
    meta = [
        {
            "instruction": e.instruction,
            "history": [asdict(o) for o in e.history],
            "target": e.target,
            "episode": e.episode,
            "feedback": [list(f) for f in e.feedback],
            "task": e.task,
            "family": e.family,
            "thought": e.thought,
        }
        for e in examples
    ]
    np.savez_compressed(path, images=np.stack([e.image for e in examples]), meta=np.array(json.dumps(meta)))


def check_examples_file(path: str | Path) -> None:
    """Fail with one sentence unless ``path`` is a file `save_examples` could have written (the names of its
    arrays, without reading them)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no planner data at {path}: the file does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            if not {"images", "meta"} <= set(f.files):
                raise ValueError(f"it holds {sorted(f.files)[:4]}, not the arrays images and meta")
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"planner data {path} is not a file of planner examples ({e})") from None


def load_examples(path: str | Path) -> list[Example]:
    """Examples written by `save_examples`; a missing or unreadable file fails with one sentence."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no planner data at {path}: the file does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            images, meta = f["images"], json.loads(str(f["meta"]))
        return [
            Example(
                img,
                m["instruction"],
                tuple(IntentOutcome(**o) for o in m["history"]),
                m["target"],
                m["episode"],
                tuple((int(at), str(text)) for at, text in m.get("feedback", [])),
                m.get("task", "plan"),
                m.get("family", ""),
                m.get("thought", ""),
            )
            for img, m in zip(images, meta, strict=True)
        ]
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        raise ValueError(f"planner data {path} is corrupt ({type(e).__name__}: {e})") from e

"""Training data for the learned success detector, labelled by the simulator (the only place it may read it).

`collect_detector_data` runs the scripted oracle and scripted skills through `HierarchicalAgent` on the train
split, chains of 1 to 5 intents and the trained goal-level families, with a recording detector in place of the
agent's: it answers with the ground truth (so episodes run as usual) and keeps, as examples,

- **intent** examples: the camera frame and proprioception when an intent started and at a later step, the
  intent's words, and whether its predicate holds then. Every step that ends an intent (positive) and a share
  ``mid_frames`` of the steps before it (negative: the block is on its way); on validation episodes every step,
  so a threshold can be chosen on what the agent asks at run time (does it fire before the intent is done?).
  Each recorded step also gives ``counterfactuals`` examples of other valid intents judged on the same two
  frames ("place red block orange zone" when red went to blue): the same pictures, other words, their own labels.
- **task** examples: the first and the last frame of the episode, the instruction and the user's utterances,
  and whether the task succeeded; and the frame after every earlier intent (the task not yet done) as negatives.

Episodes alternate between the skill libraries in ``skills`` (scripted experts and the shipped RLlib policies
move differently, and the detector must judge both). Some make mistakes on purpose so failures are not all of
one kind: a share ``noise`` of the planner's calls runs a random valid intent instead of the oracle's, and a
share ``shaky`` of the intents runs the skill with noisy actions (a block dropped, a push that falls short).

Frames are stored once and indexed by the examples (``before``, ``after``), so a frame and its counterfactuals
cost one image. Saved as one ``.npz`` (`save_detector_data` / `load_detector_data`).
"""

from __future__ import annotations

import zipfile
from collections import deque
from dataclasses import dataclass, field

import gymnasium as gym
import intentloop.envs  # noqa: F401  (registers the env ids)
import numpy as np
from intentloop.agents.agent import HierarchicalAgent
from intentloop.agents.detectors import PredicateDetector
from intentloop.agents.learned_detector import INTENT, TASK, intent_text, task_text
from intentloop.agents.planner import OraclePlanner, PlannerInput
from intentloop.agents.vlm.configuration import check_camera, check_episodes
from intentloop.envs import predicates as P
from intentloop.envs.goal_tasks import GOAL_FAMILIES, UNTRAINED_FAMILIES
from intentloop.envs.intents import DONE, parse_intent, valid_intents
from intentloop.envs.scene import BLOCKS, ZONES
from intentloop.policies import SKILL_LIBRARIES, make_skills
from tqdm import tqdm

KINDS = (INTENT, TASK)


@dataclass
class DetectorDataSettings:
    """What `collect_detector_data` runs (train split only; episode i uses seed ``seed + i``)."""

    episodes: list[int] = field(default_factory=lambda: [100, 100, 100, 100, 100])  # per chain length 1..5
    families: list[str] = field(default_factory=lambda: [f for f in GOAL_FAMILIES if f not in UNTRAINED_FAMILIES])
    family_episodes: int = 100  # per goal-level family
    seed: int = 200_000  # far from the planner's data (100_000) and the evaluation seeds 0..N
    noise: float = 0.15  # share of planner calls that run a random valid intent
    shaky: float = 0.2  # share of intents whose skill actions get noise
    shake: float = 0.6  # that noise's std, in action units
    mid_frames: float = 0.2  # share of the steps before an intent ends that give a negative example
    counterfactuals: int = 2  # other intents judged on each recorded pair of frames
    hard_negatives: int = 3  # steps just before an intent's predicate first holds, always recorded
    linger: int = 8  # at most this many steps (drawn per intent) the skill acts on after it holds, recorded
    skills: list[str] = field(default_factory=lambda: ["scripted", "rllib"])  # episodes alternate between them
    val_fraction: float = 0.1  # episodes kept for validation (recorded at every step)
    backend: str = "mujoco"
    image_size: int = 96

    def __post_init__(self):
        check_episodes(self.episodes, self.families)
        for name in ("noise", "shaky", "val_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1). Got {getattr(self, name)}.")
        if not 0.0 <= self.mid_frames <= 1.0:
            raise ValueError(f"`mid_frames` must be in [0, 1]. Got {self.mid_frames}.")
        if not self.skills or any(k not in SKILL_LIBRARIES for k in self.skills):
            raise ValueError(f"`skills` must list skill libraries ({', '.join(SKILL_LIBRARIES)}). Got {self.skills}.")
        if self.counterfactuals < 0 or self.family_episodes < 0 or self.shake < 0:
            raise ValueError("`counterfactuals`, `family_episodes` and `shake` must be >= 0.")
        if self.hard_negatives < 0 or self.linger < 0:
            raise ValueError("`hard_negatives` and `linger` must be >= 0.")
        check_camera(self.backend, self.image_size)


@dataclass
class DetectorData:
    """Frames once, examples as columns indexing them."""

    frames: np.ndarray  # (F, H, W, 3) uint8
    proprio: np.ndarray  # (F, 7) float32
    before: np.ndarray  # (N,) frame index: when the intent (the episode) started
    prev: np.ndarray  # (N,) frame index: the step before the one judged (task examples: the one judged)
    after: np.ndarray  # (N,) frame index: the step judged
    text: np.ndarray  # (N,) str: `intent_text` or `task_text`
    label: np.ndarray  # (N,) bool: the simulator's verdict
    kind: np.ndarray  # (N,) str: intent | task
    episode: np.ndarray  # (N,) int
    segment: np.ndarray  # (N,) int: which executed intent (-1: a task example)
    counterfactual: np.ndarray  # (N,) bool: another intent than the one that ran
    validation: np.ndarray  # (N,) bool: from a validation episode
    family: np.ndarray  # (N,) str

    def __len__(self) -> int:
        return len(self.label)

    def subset(self, mask: np.ndarray) -> DetectorData:
        return DetectorData(self.frames, self.proprio, *(getattr(self, k)[mask] for k in _COLUMNS))


_COLUMNS = (
    "before",
    "prev",
    "after",
    "text",
    "label",
    "kind",
    "episode",
    "segment",
    "counterfactual",
    "validation",
    "family",
)


class _Shaky:
    """A skill library whose actions, on a share of the intents, get Gaussian noise."""

    def __init__(self, skill, rng: np.random.Generator, share: float, std: float):
        self.skill, self.rng, self.share, self.std, self.noisy = skill, rng, share, std, False
        self.name = skill.name

    def reset(self, intent, obs) -> None:
        self.skill.reset(intent, obs)
        self.noisy = self.rng.random() < self.share

    def act(self, obs) -> np.ndarray:
        action = self.skill.act(obs)
        if self.noisy:
            action = np.clip(action + self.rng.normal(0, self.std, action.shape), -1, 1).astype(np.float32)
        return action


class _Detours:
    """The oracle, except that a share of its calls runs a random valid intent."""

    name = "oracle"

    def __init__(self, rng: np.random.Generator, noise: float):
        self.oracle, self.rng, self.noise = OraclePlanner(), rng, noise
        self.choices = [t for t in valid_intents() if t != str(DONE)]

    def reset(self) -> None:
        self.oracle.reset()

    def plan(self, inp: PlannerInput) -> str:
        target = self.oracle.plan(inp)
        if target != str(DONE) and self.rng.random() < self.noise:
            return str(self.rng.choice(self.choices))
        return target


class _Recorder(PredicateDetector):
    """The ground truth as the agent's detector, keeping examples of what it was asked. It answers "done" only
    0 to ``linger`` steps (drawn per intent) after an intent's predicate first holds (the skill acts on: what the
    learned detector sees when it is late, or waits for ``consecutive`` positive steps) and records those steps,
    the one where the predicate first held and the ``hard_negatives`` steps just before it."""

    name = "recorder"

    def __init__(self, s: DetectorDataSettings, rng: np.random.Generator):
        self.s, self.rng = s, rng
        self.choices = [parse_intent(t, BLOCKS, ZONES) for t in valid_intents() if t != str(DONE)]
        self.frames: list[np.ndarray] = []
        self.proprio: list[np.ndarray] = []
        self.rows: list[tuple] = []
        self.episode, self.segment, self.family, self.validation = 0, -1, "", False
        self._ref_obs: dict | None = None
        self._stored: dict[int, tuple[dict, int]] = {}  # id -> (observation, frame): holding it keeps ids unique
        self._start_frame = -1
        self._boundaries: list[int] = []  # frames where an intent ended, this episode

    def begin(self, episode: int, family: str, validation: bool) -> None:
        self.episode, self.family, self.validation = episode, family, validation
        self._ref_obs, self._start_frame, self._boundaries = None, -1, []

    def _frame(self, obs: dict) -> int:
        """The frame index of ``obs``, stored once per intent."""
        if id(obs) not in self._stored:
            self.frames.append(obs["image"])
            self.proprio.append(np.asarray(obs["proprio"], np.float32))
            self._stored[id(obs)] = (obs, len(self.frames) - 1)
        return self._stored[id(obs)][1]

    def _row(self, before, prev, after, text, label, kind, segment=-1, counterfactual=False) -> None:
        self.rows.append((before, prev, after, text, bool(label), kind, self.episode, segment, counterfactual,
                          self.validation, self.family))  # fmt: skip

    def _record(self, intent, prev: dict, obs: dict, label: bool) -> int:
        ref, before = self._ref_obs, self._frame(self._ref_obs)
        p, after = self._frame(prev), self._frame(obs)
        self._row(before, p, after, intent_text(intent), label, INTENT, self.segment)
        others = [c for c in self.choices if c != intent]
        for k in self.rng.choice(len(others), size=min(self.s.counterfactuals, len(others)), replace=False):
            self._row(before, p, after, intent_text(others[k]), P.achieved(others[k], obs, ref), INTENT,
                      self.segment, True)  # fmt: skip
        return after

    def intent_done(self, intent, obs, ref) -> bool:
        truth = super().intent_done(intent, obs, ref)
        if ref is not self._ref_obs:  # a new intent started from `ref`
            self._ref_obs, self.segment, self._stored = ref, self.segment + 1, {}
            self._prev, self._held = ref, -1
            self._recent = deque(maxlen=self.s.hard_negatives)  # the last unrecorded steps: (prev, obs)
            self._linger = int(self.rng.integers(0, self.s.linger + 1))
            if self._start_frame < 0:
                self._start_frame = self._frame(ref)
        prev, self._prev = self._prev, obs
        if truth and self._held < 0:  # the predicate holds for the first time: the steps just before it too
            for p, o in self._recent:
                self._record(intent, p, o, False)
            self._recent.clear()
        self._held = self._held + 1 if truth or self._held >= 0 else -1
        if self._held >= 0 or self.validation or self.rng.random() < self.s.mid_frames:
            after = self._record(intent, prev, obs, truth)
        else:
            self._recent.append((prev, obs))
            return False
        done = truth and self._held >= self._linger
        if done:
            self._boundaries.append(after)
        return done

    def task_done(self, task, obs, info, start=None, heard=()) -> bool:
        truth = super().task_done(task, obs, info)
        first = self._start_frame if self._start_frame >= 0 else self._frame(start if start is not None else obs)
        text = task_text(task.instruction, tuple(heard))
        last = self._frame(obs)
        self._row(first, last, last, text, truth, TASK)
        for frame in self._boundaries:  # earlier intents ended with the task not yet done (else the env ends it)
            if frame != last and not np.array_equal(self.frames[frame], self.frames[last]):
                self._row(first, frame, frame, text, False, TASK)
        return truth


def collect_detector_data(settings: DetectorDataSettings | None = None, progress: bool = True) -> DetectorData:
    s = settings or DetectorDataSettings()
    rng = np.random.default_rng(s.seed)
    recorder = _Recorder(s, rng)
    planner = _Detours(rng, s.noise)
    agents = [HierarchicalAgent(planner, _Shaky(make_skills(k, backend=s.backend), rng, s.shaky, s.shake),
                                detector=recorder) for k in s.skills]  # fmt: skip
    runs = [("chain", length, n) for length, n in enumerate(s.episodes, 1)] + [
        (f, 1, s.family_episodes) for f in s.families
    ]
    bar = tqdm(total=sum(n for *_, n in runs), desc="collect detector data", unit="ep", disable=not progress)
    episode = 0
    for family, length, count in runs:
        if count == 0:
            continue
        env = gym.make("intentloop/Tabletop-v0", backend=s.backend, task=family, chain_length=length,
                       split="train", image_size=s.image_size)  # fmt: skip
        for _ in range(count):
            recorder.begin(episode, family, bool(rng.random() < s.val_fraction))
            agents[episode % len(agents)].run_episode(env, seed=s.seed + episode)
            episode += 1
            bar.update()
        env.close()
    bar.close()
    cols = list(zip(*recorder.rows, strict=True)) if recorder.rows else [[] for _ in _COLUMNS]
    dtypes = (np.int64, np.int64, np.int64, str, bool, str, np.int64, np.int64, bool, bool, str)
    return DetectorData(
        np.stack(recorder.frames),
        np.stack(recorder.proprio),
        *(np.array(c, dtype=d) for c, d in zip(cols, dtypes, strict=True)),
    )


def save_detector_data(path, data: DetectorData) -> None:
    np.savez_compressed(path, frames=data.frames, proprio=data.proprio, **{k: getattr(data, k) for k in _COLUMNS})


def load_detector_data(path) -> DetectorData:
    try:
        with np.load(path, allow_pickle=False) as z:
            return DetectorData(z["frames"], z["proprio"], *(z[k] for k in _COLUMNS))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not detector data written by `intentloop train-detector` ({e})") from None

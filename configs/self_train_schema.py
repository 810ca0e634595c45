"""Structured config of ``intentloop self-train`` (configs/self_train.yaml extends it; the demo reuses it).

Importing this module registers ``base_self_train`` in Hydra's ConfigStore.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import intentloop.configs.planner_schema  # noqa: F401  (registers the planner schemas)
from hydra.core.config_store import ConfigStore
from intentloop.agents.vlm.configuration import DataSettings, TrainSettings
from intentloop.configs.planner_schema import VLMPlannerConfig
from intentloop.configs.schema import AgentConfig, EnvConfig, PlannerConfig, RayConfig, RLlibConfig, SkillsConfig
from omegaconf import MISSING


@dataclass
class InitConfig:
    """The round-0 planner: a trained checkpoint, or one trained here on oracle demos of the train split."""

    planner: str | None = None  # a save_pretrained folder (e.g. from train-planner), "shipped", or None: train it
    data_cache: str | None = None  # .npz of the oracle examples (train-planner's data_cache): read, else written
    data: DataSettings = field(default_factory=DataSettings)  # the oracle examples (also replayed every round)
    train: TrainSettings = field(default_factory=TrainSettings)


@dataclass
class SelfCollectConfig:
    """Practice: the agent attempts tasks of the train and practice splits from their instructions; nobody
    demonstrates. The unseen split is never practised (envs/tasks.py)."""

    workers: int = 2  # collector actors
    episodes: int = 200  # per round
    splits: list[str] = field(default_factory=lambda: ["train", "practice"])
    chain_lengths: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    families: list[str] = field(default_factory=list)  # goal-level families practised too (envs/goal_tasks.py)
    temperature: float = 0.7  # planner sampling (among valid intents only)
    epsilon: float = 0.1  # probability of a random valid alternative intent per planning call
    # runs of each practice seed (episodes // repeats seeds): two runs of one scene that end apart are preference
    # pairs for update.method=dpo (agents/reflection.py preference_pairs)
    repeats: int = 1
    serve_planner: bool = True  # the planner as one Ray Serve deployment (experiments/serve.py) shared by collectors
    planner_replicas: int = 2  # its replicas (bench/bench_serve.py: 2 beat the old batching actor at 2-8 collectors)
    max_retries: int = 1  # re-runs of an episode whose collector died


@dataclass
class SkillPracticeConfig:
    """Optional RL continuation (RLlib PPO, from the current weights) of a skill that failed often in a round."""

    iterations: int = 0  # PPO iterations per practised skill; 0: no skill practice
    min_failures: int = 10  # skill failures in the round's episodes ...
    min_failure_rate: float = 0.05  # ... and their share of the skill's executed intents
    max_skills: int = 1  # practised per round, the most often failing first
    eval_episodes: int = 100  # held-out skill episodes, the same seeds before and after practice ...
    min_gain: float = 0.0  # ... the practised weights are kept only if held-out success rises by more than this
    rllib: RLlibConfig = field(default_factory=lambda: RLlibConfig(bc_iterations=0))


@dataclass
class UpdateConfig:
    """Fine-tuning of the promoted planner on this round's examples plus replay of earlier data."""

    # sft: supervised fine-tuning on reflection's examples; dpo: the same plus DPO on preference pairs of the
    # round's own decisions (agents/vlm/dpo.py); rl: not built yet (issue 20)
    method: str = "sft"
    dpo_beta: float = 0.1
    dpo_sft_weight: float = 1.0  # the supervised term's weight in a DPO update
    steps: int = 400
    batch_size: int = 32
    lr: float = 3.0e-4
    warmup_steps: int = 20
    arg_noise: float = 0.0  # as TrainSettings: match how the promoted planner was trained (shipped: 0.3)
    arg_smoothing: float = 0.0  # as TrainSettings (shipped planner: 0.4); 0 lets held-out arguments sink again
    replay_ratio: float = 1.0  # replayed examples (earlier rounds + the oracle's) per new example
    max_per_composition: int | None = 300  # balance: examples kept per target composition (new data)
    oracle_splits: list[str] = field(default_factory=lambda: ["train"])  # splits whose errors the oracle corrects
    threads: int = 1
    skill_practice: SkillPracticeConfig = field(default_factory=SkillPracticeConfig)


@dataclass
class SelfEvalConfig:
    """Every version is evaluated greedily on the same seeds, so versions compare episode by episode."""

    episodes: int = 50  # per (split, chain length)
    seed: int = 0
    splits: list[str] = field(default_factory=lambda: ["train", "practice", "unseen"])
    chain_lengths: list[int] = field(default_factory=lambda: [1, 5])
    families: list[str] = field(default_factory=list)  # goal-level families, in every split (one set each)


@dataclass
class ReportConfig:
    """The figures reported (README, BENCHMARKS, metrics.json ``report``): the promoted version of every round
    and the control arm, on seeds disjoint from ``eval``'s, which only the promotion gate reads (selection)."""

    episodes: int = 50  # per (split, chain length) and family, in eval's splits
    seed: int = 5_000_000  # report seeds: [seed, seed + episodes), disjoint from eval's and below every practice seed


@dataclass
class PromoteConfig:
    max_drop: float = 0.01  # no train family may fall more than this (success rate) below its best promoted value
    min_gain: float = 0.0  # held-out average chain length must rise by more than this
    # a round whose success detector judged more than this share of failed intents (or tasks) successful is not
    # promoted: its examples rest on false verdicts (0 with the ground-truth detector; issue 17 asks <= 5%)
    max_detector_false_positive_rate: float = 0.05


@dataclass
class ResumeConfig:
    """Running again in a run directory resumes it, with the settings it started with."""

    force: bool = False  # go on with changed settings (they are listed on stderr) instead of refusing


@dataclass
class SelfTrainConfig:
    rounds: int = 3
    backend: str = "mujoco"
    seed: int = 0  # this run's practice seeds, update shuffles and exploration (not the eval or report seeds)
    seeds: list[int] = field(default_factory=list)  # e.g. [0,1,2]: one independent run per seed, and mean +- std
    progress: bool = True
    replays: int = 2  # collected episodes written to TensorBoard per round: the best and the worst
    planner: VLMPlannerConfig = field(default_factory=VLMPlannerConfig)  # decoding and model settings
    skills: SkillsConfig = field(default_factory=lambda: SkillsConfig(name="rllib"))  # path null: shipped
    init: InitConfig = field(default_factory=InitConfig)
    collect: SelfCollectConfig = field(default_factory=SelfCollectConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    eval: SelfEvalConfig = field(default_factory=SelfEvalConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    # the equal-compute control arm: every round, the previous control planner (at first the round-0 planner)
    # is trained for update.steps more steps on the oracle examples alone and scored on the report seeds
    control: bool = True
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    resume: ResumeConfig = field(default_factory=ResumeConfig)


@dataclass
class DemoConfig(SelfTrainConfig):
    """``intentloop demo``: self-training with defaults small enough for <= 10 minutes (configs/demo.yaml)."""


@dataclass
class CollectConfig:
    """``intentloop collect``: episodes of one (split, chain length) into an episode store."""

    planner: PlannerConfig = MISSING
    skills: SkillsConfig = MISSING
    backend: str = "mujoco"
    task: str = "chain"
    split: str = "train"
    chain_length: int = 1
    phrasings: str = "train"
    episodes: int = 100
    seed: int = 0  # episode i uses seed + i and is stored as <backend>-<split>-<chain_length>-seed<seed + i>
    store: str | None = None  # a directory or pyarrow filesystem URI; default: <run dir>/episodes
    progress: bool = True
    collect: SelfCollectConfig = field(default_factory=SelfCollectConfig)  # workers, epsilon, serve_planner...
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    ray: RayConfig = field(default_factory=RayConfig)


cs = ConfigStore.instance()
cs.store(name="base_self_train", node=SelfTrainConfig)
cs.store(name="base_demo", node=DemoConfig)
cs.store(name="base_collect", node=CollectConfig)

"""Structured config schemas: the types and defaults of every Hydra app.

YAML files in this folder extend these schemas through their defaults lists, so a misspelled key or a value
of the wrong type fails when the config is composed, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class EnvConfig:
    """Knobs of ``intentloop/Tabletop-v0`` below the task level (see envs/tabletop_env.py)."""

    image: bool = True  # render the camera into every observation
    image_size: int = 96  # square camera image, pixels
    frame_skip: int = 25  # physics steps per env step (25 x 2 ms = 20 Hz control)
    max_delta: float = 0.03  # EE displacement per step at action 1.0 [m]
    steps_per_intent: int = 80  # the episode is truncated after this many steps per subgoal
    split_seed: int = 0  # which compositions are held out
    phrasings: str = "train"  # train | heldout | all instruction templates


@dataclass
class PlannerConfig:
    name: str = MISSING  # key of intentloop.agents.planner.PLANNERS


@dataclass
class SkillsConfig:
    name: str = MISSING  # key of intentloop.policies.SKILL_LIBRARIES
    path: str | None = None  # learned skills: the run directory of `intentloop train-skills`
    trust_pickle: bool = False  # also load legacy pickled skill checkpoints (*.pkl), which can run code


@dataclass
class SafetyConfig:
    """Intents the agent rejects before executing them, whatever the planner says (agents/safety.py).

    Each rejection is recorded and fed back to the planner as ``rejected: <rule>: <why>``. The defaults forbid
    nothing the task suite needs. Patterns are intents with shell-glob wildcards; quote them for Hydra
    (``agent.safety.forbidden='["push(*, backward)", "place(*, purple_block)"]'``; the ``intentloop`` command
    also takes them unquoted, ``agent.safety.forbidden='[push(*, backward)]'``).
    """

    forbidden: list[str] = field(default_factory=list)  # forbidden_intent: e.g. "push", "push(*, backward)"
    workspace_low: list[float] = field(default_factory=lambda: [-0.3, -0.25])  # workspace_limit: x, y [m]
    workspace_high: list[float] = field(default_factory=lambda: [0.3, 0.25])  # (default: the robot's reach)
    max_height: float = 0.2  # height_limit: no goal above this [m]
    max_stack_height: int = 2  # stack_height_limit: blocks in a stack (the skills' travel heights clear two)


@dataclass
class DetectorSettings:
    """What judges that an intent, or the task, succeeded (agents/detectors.py `make_detector`)."""

    name: str = "predicates"  # predicates: the simulator's ground truth | learned: a trained image model
    path: str | None = None  # detector=learned: the folder `intentloop train-detector` wrote (<run dir>/detector)


@dataclass
class AgentConfig:
    max_steps_per_intent: int = 60  # a skill's step budget for one intent
    max_intents: int | None = None  # intent budget per episode; None: 2 x subgoals + 2
    contracts: bool = True  # reject intents whose skill preconditions fail (agents/contracts.py)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    detector: DetectorSettings = field(default_factory=DetectorSettings)


@dataclass
class EvaluateConfig:
    planner: PlannerConfig = MISSING
    skills: SkillsConfig = MISSING
    backend: str = "mujoco"  # mujoco | pybullet
    task: str = "chain"  # pick | push | put | stack | chain, or a goal-level family: clear | fill | refer | ...
    chain_length: int = 1  # intents per task for task=chain (1..5)
    split: str = "train"  # train | heldout compositions
    level: str | None = None  # L1 new scenes | L2 held-out compositions | L3 unseen phrasings | L4 untrained family
    ablation: str | None = None  # blank_image: also run the same episodes with the planner's camera image zeroed
    episodes: int = 100
    seed: int = 0  # episode i uses seed + i, so versions compare on the same episodes
    progress: bool = True  # progress bar
    record: bool = False  # write every step (frames too) to the episode store <run dir>/episodes
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)


@dataclass
class ReplayConfig:
    episode: str = MISSING  # an episode id (with store=...), or the path of a store or shard holding one episode
    store: str | None = None  # episode store: a directory or pyarrow filesystem URI
    logdir: str | None = None  # TensorBoard log dir; default: <run dir>/tb
    fps: int = 10  # playback speed of the video
    scale: int = 3  # upscaling of the camera frames before drawing


@dataclass
class ExportConfig:
    """``intentloop export``: an episode store as a Minari or LeRobot dataset (experiments/export.py)."""

    format: str = MISSING  # minari | lerobot
    store: str = MISSING  # episode store: a directory or pyarrow filesystem URI
    out: str = MISSING  # minari: the datasets root (MINARI_DATASETS_PATH); lerobot: the dataset's own folder
    name: str = "intentloop/tabletop/episodes-v0"  # the Minari dataset id
    fps: int = 20  # LeRobot's frame rate: one control step is 25 x 2 ms
    jpeg: bool = False  # Minari: JPEG-encode the images (lossy, smaller); false keeps every pixel


@dataclass
class RLlibConfig:
    """RLlib settings of skill training: BC on scripted demonstrations, then PPO (policies/rllib_config.py)."""

    num_env_runners: int = 0  # 0: sample in the driver process; N: N sampling actors (docs/BENCHMARKS.md: 1 vs 2)
    num_learners: int = 0  # PPO's learners: 0 updates in the driver; N: N learner actors (data-parallel)
    num_envs_per_env_runner: int = 8
    lr: float = 3.0e-4
    train_batch_size: int = 4000  # env steps per PPO iteration
    minibatch_size: int = 256
    num_epochs: int = 10
    entropy_coeff: float = 0.0
    clip_param: float = 0.2
    gamma: float = 0.99
    lambda_: float = 0.95
    vf_loss_coeff: float = 0.5
    bc_iterations: int = 60  # BC warm start; 0 trains PPO from scratch
    bc_updates_per_iteration: int = 20
    bc_batch_size: int = 512
    bc_lr: float = 1.0e-3


@dataclass
class RayConfig:
    address: str | None = None  # None: a local Ray (or RAY_ADDRESS); "auto" or host:port joins a cluster
    num_cpus: int | None = 2  # for a local Ray only


@dataclass
class ServeSettings:
    replicas: int = 1  # Ray Serve replicas of the planner deployment
    host: str = "127.0.0.1"  # 0.0.0.0 to answer robots on other machines
    port: int = 8000
    route: str = "/plan"
    image_size: Any = 96  # the camera image a request must carry: an int (square) or [height, width]
    max_batch_size: int = 16  # @serve.batch: requests that arrive together are decoded as one batch
    batch_wait_s: float = 0.002


@dataclass
class ServeConfig:
    """``intentloop serve``: the planner as a Ray Serve deployment with an HTTP route (experiments/serve.py)."""

    planner: PlannerConfig = MISSING
    serve: ServeSettings = field(default_factory=ServeSettings)
    ray: RayConfig = field(default_factory=RayConfig)


@dataclass
class TrainSkillsConfig:
    skill: str = "pick"  # pick | place | push | all
    backend: str = "mujoco"
    reward_type: str = "dense"  # dense | sparse
    demo_episodes: int = 200  # scripted demonstrations for the BC warm start
    min_iterations: int = 5  # PPO iterations before the success target may stop training
    max_iterations: int = 200
    max_minutes: float = 15.0  # wall-clock budget per skill
    target_success: float = 0.9  # stop once held-out success (greedy policy) reaches this
    eval_every: int = 2  # PPO iterations between held-out evaluations
    eval_episodes: int = 100
    final_eval_episodes: int = 200
    seed: int = 0
    progress: bool = True
    model: dict[str, Any] = field(default_factory=lambda: {"hidden": [256, 256], "log_std_init": -0.5})
    rllib: RLlibConfig = field(default_factory=RLlibConfig)
    ray: RayConfig = field(default_factory=RayConfig)


cs = ConfigStore.instance()
cs.store(name="base_evaluate", node=EvaluateConfig)
cs.store(name="base_replay", node=ReplayConfig)
cs.store(name="base_export", node=ExportConfig)
cs.store(name="base_serve", node=ServeConfig)
cs.store(name="base_train_skills", node=TrainSkillsConfig)
cs.store(group="planner", name="base_planner", node=PlannerConfig)
cs.store(group="skills", name="base_skills", node=SkillsConfig)

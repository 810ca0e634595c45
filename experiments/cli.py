"""The `intentloop` console script: ``intentloop <command> [key=value ...]``, each command a Hydra app."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "demo": (
        "intentloop.experiments.demo",
        "the whole loop on embedded defaults: skills, planner, 2 self-training rounds, TensorBoard, summary",
    ),
    "evaluate": ("intentloop.experiments.evaluate", "run planner + skills in closed loop, write metrics.json"),
    "train-skills": (
        "intentloop.experiments.train_skills",
        "train RLlib skill policies: BC on scripted demos, then PPO",
    ),
    "train-planner": ("intentloop.experiments.train_planner", "train the VLM planner on oracle demonstrations"),
    "train-detector": (
        "intentloop.experiments.train_detector",
        "train the learned success detector on simulator-labelled episodes",
    ),
    "replay": ("intentloop.experiments.replay", "write a stored episode to TensorBoard: video, scalars, plan"),
    "serve": ("intentloop.experiments.serve", "the planner as a Ray Serve deployment: an HTTP route for robots"),
    "export": ("intentloop.experiments.export", "write an episode store as a Minari or a LeRobot (v3.0) dataset"),
    "collect": ("intentloop.experiments.collect_app", "collect episodes with Ray collector actors into the store"),
    "self-train": ("intentloop.experiments.self_train", "rounds of collect, reflect, fine-tune, evaluate, promote"),
}
PLANNED: dict[str, str] = {}


def usage() -> str:
    lines = ["usage: intentloop <command> [key=value ...] [--help] [-m]", "", "commands:"]
    lines += [f"  {name:<16}{help_}" for name, (_, help_) in COMMANDS.items()]
    if PLANNED:
        lines += ["", "not implemented yet:"] + [f"  {name:<16}{help_}" for name, help_ in PLANNED.items()]
    lines += ["", "Each command is a Hydra app: `intentloop evaluate --help` shows its config, `-m` sweeps values."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command in PLANNED:
        print(f"intentloop: `{command}` is not implemented yet ({PLANNED[command]}).", file=sys.stderr)
        return 2
    if command not in COMMANDS:
        print(f"intentloop: unknown command {command!r}; available: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    from intentloop.agents.safety import quote_override  # forbidden patterns look like Hydra function calls

    overrides = list(map(quote_override, rest))
    if not any(arg.startswith("-") for arg in rest):  # --help, --cfg, -m sweeps: Hydra's own
        problem = config_problem(command.replace("-", "_"), [o for o in overrides if not o.startswith("hydra.")])
        for run_dir in (o.split("=", 1)[1] for o in overrides if o.startswith("hydra.run.dir=")):
            problem = problem or unwritable(run_dir)
        if problem:
            print(f"intentloop {command}: error: {problem}", file=sys.stderr)
            return 2
    sys.argv = [f"intentloop {command}", *overrides]
    module.main()
    return 0


def unwritable(run_dir: str) -> str | None:
    """Why Hydra could not make ``hydra.run.dir`` (it would raise a traceback), or None."""
    from intentloop.experiments.common import writable_folder

    try:
        writable_folder(run_dir, "hydra.run.dir")
    except ValueError as e:
        return str(e)
    return None


def config_problem(config_name: str, overrides: list[str]) -> str | None:
    """Why the overrides do not compose into the app's config (an unknown key, a value of the wrong type, a
    missing required value, a malformed override), as one sentence; None if they do. Hydra reports these in
    several lines with exit code 1."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    try:
        with initialize_config_module("intentloop.configs", version_base="1.3"):
            OmegaConf.to_container(compose(config_name, overrides=overrides), resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:
        return f"{e.full_key} is required: give it as {e.full_key}=..."
    except MissingConfigException as e:
        first = str(e).splitlines()[0]
        options = [o for o in (e.options or []) if not o.startswith("base_")]
        return f"{first}; choose one of: {', '.join(options)}" if options else first
    except (HydraException, OmegaConfBaseException) as e:
        lines = [line for line in str(e).splitlines() if line.strip()][:2]  # Hydra's sentence, then its detail
        if e.__cause__ is not None:
            lines = [lines[0], str(e.__cause__).splitlines()[0]]
        return ": ".join(line.rstrip(".") for line in lines)
    return None


if __name__ == "__main__":
    sys.exit(main())

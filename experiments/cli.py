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

    sys.argv = [f"intentloop {command}", *map(quote_override, rest)]
    module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The main job on embedded defaults: the whole loop, small enough for a 2-core CPU machine (about 7 minutes).

How to run:        intentloop demo
Bigger:            intentloop demo rounds=3 collect.episodes=200 eval.episodes=50
From scratch:      intentloop demo init.planner=null init.train.steps=3000   (trains the default VLM first)
Other backend:     intentloop demo backend=pybullet

Stages (each with a progress bar): load the learned skills and the planner the package ships; collect oracle
demonstrations on the train split (replayed in every update; with ``init.planner=null`` the default VLM
planner is trained on them first); evaluate the planner; run ``rounds`` self-training
rounds on a local Ray (collect with exploration, reflect, fine-tune with replay, evaluate, promote); write
TensorBoard logs (per-round metrics and replays of the best and worst episodes) and ``report.html``
(experiments/report.py: success per round with 95% intervals, failures by cause, animated replays); print a
summary table of success / average chain length per split per round, one line on whether the loop improved,
the report's path and the ``tensorboard`` command. It is ``intentloop self-train`` with smaller defaults
(configs/demo.yaml): every key of that app works here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import hydra
import intentloop.configs.self_train_schema  # noqa: F401  (registers the config schemas)
from hydra.core.hydra_config import HydraConfig
from intentloop.configs.self_train_schema import SelfTrainConfig
from intentloop.experiments.common import user_errors
from intentloop.experiments.report import verdict, write_report
from intentloop.experiments.self_train import SelfTraining, run_seeds, tables
from omegaconf import DictConfig, OmegaConf


@hydra.main(config_path="../configs", config_name="demo", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> list[dict]:
    c: SelfTrainConfig = OmegaConf.to_object(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    skills = c.skills.path or f"the {c.backend} skills shipped with the package"
    planner = (
        "the planner shipped with the package"
        if c.init.planner == "shipped"
        else c.init.planner
        or f"the default VLM trained on {sum(c.init.data.episodes)} oracle episodes ({c.init.train.steps} steps)"
    )
    print(
        f"intentloop demo on {c.backend}: skills: {skills}; planner: {planner}; then {c.rounds} self-training "
        f"rounds of {c.collect.episodes} episodes with {c.collect.workers} Ray collectors; run directory {run_dir}"
    )
    start = time.monotonic()
    if c.seeds:  # independent runs and their mean +- std (self-train's seeds=[...])
        return run_seeds(c, run_dir)
    history = SelfTraining(c, run_dir).run()
    summary = [
        {
            "round": m["round"],
            "promoted": m["promoted"],
            "report": m["report"]["sets"],  # the promoted planner on the report seeds
            "control": (m.get("control") or {}).get("report", {}).get("sets"),
            "selection": m["eval"]["sets"],  # the candidate on the selection seeds (the gate's)
            "seconds": m.get("seconds"),
        }
        for m in history
    ]
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print()
    print(tables(history))
    report = write_report(run_dir, history)
    print(f"\n{verdict(history)}")
    print(f"done in {time.monotonic() - start:.0f} s; wrote {run_dir / 'summary.json'}")
    print(f"the report (plots, failures, replays): {report}")
    print(f"view the runs and replays: tensorboard --logdir {run_dir / 'tb'}")
    return history


if __name__ == "__main__":
    main()

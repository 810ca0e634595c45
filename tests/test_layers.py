"""The package's layers import downward only (envs <- policies <- agents <- configs <- experiments), and Ray
collection with a planner that needs no model does not pull in torch or transformers."""

import ast
import subprocess
import sys
from pathlib import Path

import intentloop

LAYERS = ("envs", "policies", "agents", "configs", "experiments")
ROOT = Path(intentloop.__file__).resolve().parent


def upward_imports(root: Path = ROOT) -> list[str]:
    """``file:line imports module`` for every import (at module level or inside a function) of a higher layer."""
    found = []
    for rank, layer in enumerate(LAYERS):
        for path in sorted((root / layer).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                else:
                    continue
                for name in names:
                    parts = name.split(".")
                    if parts[0] == "intentloop" and len(parts) > 1 and parts[1] in LAYERS[rank + 1 :]:
                        found.append(f"{path.relative_to(root)}:{node.lineno} imports {name}")
                        break
    return sorted(set(found))


def test_no_module_imports_a_higher_layer():
    assert upward_imports() == []


def test_the_import_walk_finds_an_upward_import(tmp_path):
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
    (tmp_path / "agents" / "ok.py").write_text("from intentloop.envs.intents import Intent\n")
    (tmp_path / "agents" / "bad.py").write_text("def f():\n    from intentloop import experiments\n")
    (tmp_path / "envs" / "bad.py").write_text("import intentloop.policies.scripted\n")
    assert upward_imports(tmp_path) == [
        "agents/bad.py:2 imports intentloop.experiments",
        "envs/bad.py:1 imports intentloop.policies.scripted",
    ]


def test_a_collector_with_the_oracle_planner_and_scripted_skills_loads_no_torch_nor_transformers():
    code = """
import sys
from intentloop.experiments.collect import EpisodeJob, build_agent, build_env, _one_thread
planner, agent = build_agent("mujoco", {"name": "oracle"}, {"name": "scripted"}, {"image": False}, {}, 0.1, True)
_one_thread()
result = agent.run_episode(build_env("mujoco", {"image": False}, EpisodeJob("e", seed=3, task="fill")), seed=3)
assert result.outcomes, "no episode ran"
print(",".join(m for m in ("torch", "transformers") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == ""

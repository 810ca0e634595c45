"""System-1 skill policies: scripted experts, and RLlib RLModules trained per skill (`intentloop train-skills`).

The package ships one trained set per backend in ``policies/pretrained/<backend>/`` (RLModule weights as
safetensors with a JSON spec, see ``policies/skill_library.py``, and their training metrics, from ``intentloop
train-skills skill=all [backend=pybullet]``): ``skills=rllib`` with no ``skills.path`` loads them.
"""

from pathlib import Path

from intentloop.policies.scripted import ScriptedSkill

SKILL_LIBRARIES = ("scripted", "rllib")
PRETRAINED = Path(__file__).parent / "pretrained"


def pretrained_skills(backend: str) -> Path:
    """The folder of the learned skills the package ships for ``backend``."""
    path = PRETRAINED / backend
    if not path.is_dir():
        shipped = sorted(p.name for p in PRETRAINED.iterdir()) if PRETRAINED.is_dir() else []
        raise ValueError(f"no shipped skills for backend {backend!r}; shipped: {', '.join(shipped) or 'none'}")
    return path


def make_skills(
    name: str, max_delta: float = 0.03, path: str | None = None, backend: str = "mujoco", trust_pickle: bool = False
):
    """The skill library called ``name``: scripted experts acting with the env's ``max_delta``, or learned
    skills: those saved under ``path``, else the ones shipped for ``backend`` (learned skills were trained
    with the default ``max_delta``). ``trust_pickle`` also loads legacy pickled checkpoints under ``path``."""
    if name == "scripted":
        return ScriptedSkill(max_delta=max_delta)
    if name == "rllib":
        from intentloop.policies.skill_library import RLlibSkills

        return RLlibSkills(path or pretrained_skills(backend), trust_pickle=trust_pickle)
    raise ValueError(f"unknown skills {name!r}; available: {', '.join(SKILL_LIBRARIES)}")


__all__ = ["PRETRAINED", "SKILL_LIBRARIES", "ScriptedSkill", "make_skills", "pretrained_skills"]

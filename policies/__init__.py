"""System-1 skill policies: scripted experts now; RLlib RLModules per skill come with the skills issue."""

from intentloop.policies.scripted import ScriptedSkill

SKILL_LIBRARIES = {"scripted": ScriptedSkill}


def make_skills(name: str, max_delta: float = 0.03):
    """The skill library called ``name``, acting with the env's ``max_delta``."""
    if name not in SKILL_LIBRARIES:
        raise ValueError(f"unknown skills {name!r}; available: {', '.join(SKILL_LIBRARIES)}")
    return SKILL_LIBRARIES[name](max_delta=max_delta)


__all__ = ["SKILL_LIBRARIES", "ScriptedSkill", "make_skills"]

"""System-1 skill policies: scripted experts, and RLlib RLModules trained per skill (`intentloop train-skills`)."""

from intentloop.policies.scripted import ScriptedSkill

SKILL_LIBRARIES = ("scripted", "rllib")


def make_skills(name: str, max_delta: float = 0.03, path: str | None = None):
    """The skill library called ``name``: scripted experts acting with the env's ``max_delta``, or the learned
    skills saved under ``path`` (learned skills were trained with the default ``max_delta``)."""
    if name == "scripted":
        return ScriptedSkill(max_delta=max_delta)
    if name == "rllib":
        if not path:
            raise ValueError("skills=rllib needs skills.path=<run directory of intentloop train-skills>")
        from intentloop.policies.skill_library import RLlibSkills

        return RLlibSkills(path)
    raise ValueError(f"unknown skills {name!r}; available: {', '.join(SKILL_LIBRARIES)}")


__all__ = ["SKILL_LIBRARIES", "ScriptedSkill", "make_skills"]

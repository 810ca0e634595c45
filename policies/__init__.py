"""System-1 skill policies: scripted experts now; RLlib RLModules per skill (see the skills issue)."""

from intentloop.policies.scripted import ScriptedSkill

__all__ = ["ScriptedSkill"]

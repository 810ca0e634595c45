"""System-2 planners and the hierarchical agent that runs planner and skills in closed loop."""

from intentloop.agents.agent import EpisodeResult, HierarchicalAgent
from intentloop.agents.planner import IntentOutcome, OraclePlanner, Planner, PlannerInput, make_planner

__all__ = [
    "EpisodeResult",
    "HierarchicalAgent",
    "IntentOutcome",
    "OraclePlanner",
    "Planner",
    "PlannerInput",
    "make_planner",
]

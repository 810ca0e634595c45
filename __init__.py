"""intentloop: a System-2 planner emits intents, System-1 skills execute them, episodes feed back.

The code lives in the root folders ``envs/``, ``agents/``, ``policies/``, ``experiments/`` and ``configs/``,
installed as ``intentloop.envs``, ``intentloop.agents``, ... (see DESIGN.md).
"""

__version__ = "0.1.0"

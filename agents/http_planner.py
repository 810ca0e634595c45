"""A planner on the other side of an HTTP route (`intentloop serve`): the "edge body" asks the "cloud brain".

    planner = HTTPPlanner("http://127.0.0.1:8000/plan")
    agent = HierarchicalAgent(planner, ScriptedSkill())      # the robot runs its skills; the planner is remote

It sends what a robot has (the camera image as PNG, the instruction, the history of its intents and outcomes, the
user's words, and the sample seed of its exploration, if any) and never privileged state; the server's answer is
the next intent and the server's own verdict on it (``last_verdict``). A refused request raises ``ValueError``
with the server's one sentence.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import asdict

import cv2
import numpy as np
from intentloop.agents.planner import PlannerInput


def encode_request(inp: PlannerInput) -> dict:
    """The JSON body of a planning request: only what a robot has."""
    body = {
        "instruction": inp.instruction,
        "history": [asdict(o) for o in inp.history],  # intent, success, steps, reason
        "feedback": [[at, text] for at, text in inp.feedback],
    }
    if inp.sample_seed is not None:  # a sampling planner draws from it (agents/exploration.py hands one out)
        body["sample_seed"] = int(inp.sample_seed)
    if inp.image is not None:
        ok, png = cv2.imencode(".png", cv2.cvtColor(np.asarray(inp.image), cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"could not PNG-encode an image of shape {np.shape(inp.image)}")
        body["image"] = base64.b64encode(png.tobytes()).decode("ascii")
    return body


class HTTPPlanner:
    name = "http"

    def __init__(self, url: str, timeout_s: float = 30.0):
        self.url, self.timeout_s = url, timeout_s
        self.think, self.last_thoughts, self.last_verdict = False, [], None

    def reset(self) -> None:
        pass

    def plan(self, inp: PlannerInput) -> str:
        data = json.dumps(encode_request(inp)).encode()
        request = urllib.request.Request(self.url, data, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as err:
            raise ValueError(f"the planner at {self.url} refused the request: {_error(err)}") from None
        except urllib.error.URLError as err:
            raise ConnectionError(f"no planner answers at {self.url}: {err.reason}") from None
        self.last_thoughts, self.last_verdict = [answer.get("thought", "")], answer.get("verdict")
        return answer["intent"]


def _error(err: urllib.error.HTTPError) -> str:
    try:
        return json.loads(err.read())["error"]
    except (ValueError, KeyError):
        return f"HTTP {err.code}"

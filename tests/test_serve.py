"""`intentloop serve`: the planner as a Ray Serve deployment, asked over HTTP by a robot in another process."""

import base64
import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import gymnasium as gym
import intentloop.envs  # noqa: F401  (registers the env ids)
import numpy as np
import pytest
import ray
from intentloop.agents.http_planner import encode_request
from intentloop.agents.planner import PlannerInput
from intentloop.envs.intents import parse_intent
from intentloop.experiments.serve import MAX_BODY, BadRequest, parse_request, planner_app
from ray import serve

PORT = 8341
URL = f"http://127.0.0.1:{PORT}/plan"


@pytest.fixture(scope="module")
def served():
    ray.init(num_cpus=2, include_dashboard=False)
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    handle = serve.run(planner_app({"name": "vlm", "model_path": "shipped"}, replicas=1), name="planner",
                       route_prefix="/plan")  # fmt: skip
    yield handle
    ray.shutdown()  # Serve goes with it


def post(body) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(URL, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def request_body():
    env = gym.make("intentloop/Tabletop-v0", task="clear")
    obs, _ = env.reset(seed=3)
    env.close()
    return encode_request(PlannerInput(obs["instruction"], obs["image"], []))


EDGE = textwrap.dedent(
    """
    import json, sys
    import gymnasium as gym, intentloop.envs
    from intentloop.agents import HierarchicalAgent
    from intentloop.agents.http_planner import HTTPPlanner
    from intentloop.policies import ScriptedSkill

    env = gym.make("intentloop/Tabletop-v0", task="put")
    planner = HTTPPlanner(sys.argv[1])
    result = HierarchicalAgent(planner, ScriptedSkill()).run_episode(env, seed=0)
    print(json.dumps({"success": result.success, "intents": [o.intent for o in result.outcomes],
                      "verdict": planner.last_verdict}))
    """
)


@pytest.mark.slow
def test_a_robot_in_another_process_runs_an_episode_on_the_served_planner(served, tmp_path):
    script = tmp_path / "edge.py"
    script.write_text(EDGE)
    env = {**os.environ, "MUJOCO_GL": "egl"}
    proc = subprocess.run([sys.executable, str(script), URL], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["intents"] and out["verdict"] == "valid"
    for text in out["intents"]:
        parse_intent(text)  # every intent the server sent parses
    assert out["success"]  # the shipped planner solves a put task from the image and the words alone


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        (lambda b: {k: v for k, v in b.items() if k != "image"}, 400, "the request has no image"),
        (lambda b: {**b, "pose": [0, 0, 0]}, 400, "unknown keys ['pose']"),
        (lambda b: {**b, "image": base64.b64encode(b"not a png").decode()}, 400, "image is not a PNG or JPEG"),
        (lambda b: {**b, "image": "@@@"}, 400, "image is not valid base64"),
        (lambda b: {**b, "instruction": ""}, 400, "instruction must be non-empty text"),
        (lambda b: {**b, "history": [{"intent": "pick(red_block)"}]}, 400, "each history entry must be"),
        (lambda b: {**b, "feedback": [["now", "stop"]]}, 400, "each feedback entry must be"),
        (lambda b: b"[1, 2", 400, "the request body must be JSON"),
        (lambda b: b"x" * (MAX_BODY + 1), 413, "at most"),
    ],
)
def test_a_malformed_request_gets_a_4xx_with_one_sentence_and_the_deployment_keeps_serving(
    served, request_body, change, status, message
):
    code, answer = post(change(request_body))
    assert code == status and message in answer["error"] and "\n" not in answer["error"]
    code, answer = post(request_body)
    assert code == 200 and answer["verdict"] == "valid"
    parse_intent(answer["intent"])


@pytest.mark.slow
def test_a_wrong_image_shape_names_the_shape_the_deployment_takes(served):
    small = encode_request(PlannerInput("Pick up the red block.", np.zeros((32, 32, 3), np.uint8), []))
    code, answer = post(small)
    assert code == 400 and answer["error"] == "image must be 96x96 RGB with 8 bits per channel, got shape (32, 32, 3)"


@pytest.mark.slow
def test_collectors_ask_the_same_deployment_through_its_handle(served, request_body):
    env = gym.make("intentloop/Tabletop-v0", task="clear")
    obs, _ = env.reset(seed=3)
    env.close()
    by_handle = served.plan.remote(obs["instruction"], obs["image"], []).result()
    assert by_handle == post(request_body)[1]  # one planner, two routes, the same answer


@pytest.mark.slow
def test_serve_refuses_the_oracle_and_bad_settings_in_one_sentence_before_ray_starts(tmp_path):
    cli = str(Path(sys.executable).parent / "intentloop")
    for override, message in (("planner=oracle", "the oracle reads privileged state"),
                              ("serve.replicas=0", "serve.replicas must be >= 1")):  # fmt: skip
        proc = subprocess.run([cli, "serve", override, f"hydra.run.dir={tmp_path}"], capture_output=True, text=True,
                              env={**os.environ, "HYDRA_FULL_ERROR": "0"}, timeout=120)  # fmt: skip
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr


def test_a_sample_seed_travels_with_the_request_and_a_bad_one_is_refused_in_one_sentence():
    image = np.zeros((96, 96, 3), np.uint8)
    body = encode_request(PlannerInput("Pick up the red block.", image, [], sample_seed=12345))
    assert body["sample_seed"] == 12345
    assert parse_request(json.dumps(body).encode(), (96, 96)).sample_seed == 12345
    unseeded = encode_request(PlannerInput("Pick up the red block.", image, []))
    assert "sample_seed" not in unseeded and parse_request(json.dumps(unseeded).encode(), (96, 96)).sample_seed is None
    for bad in (-1, 2**31, 1.5, "7", True):
        with pytest.raises(BadRequest, match=r"^sample_seed must be an integer in \[0, 2\*\*31\) or null, got "):
            parse_request(json.dumps({**body, "sample_seed": bad}).encode(), (96, 96))

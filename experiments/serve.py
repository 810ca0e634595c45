"""The planner as a Ray Serve deployment: an HTTP route for robots outside the Ray job, a handle for collectors.

How to run:   intentloop serve planner=vlm planner.model_path=shipped serve.replicas=2 serve.port=8000
Then:         curl -s localhost:8000/plan -H 'Content-Type: application/json' \\
                   -d '{"instruction": "Pick up the red block.", "image": "'"$(base64 -w0 frame.png)"'"}'
              -> {"intent": "pick(red_block)", "thought": "", "verdict": "valid", "batch": 1}
Python:       intentloop.agents.http_planner.HTTPPlanner("http://127.0.0.1:8000/plan") is a Planner.

A request is JSON: ``instruction`` (text), ``image`` (base64 PNG or JPEG, RGB, the deployment's image size),
``history`` (optional: ``{"intent", "success", "steps", "reason"}`` per earlier intent), ``feedback``
(optional: ``[after how many outcomes, "the user's words"]`` pairs) and ``sample_seed`` (optional: an integer in
[0, 2**31) that fixes a sampling planner's draw, as collectors send it, so a replayed request gets the same
intent whatever batch it lands in); nothing else. The answer is the next intent,
the planner's thought (empty unless it thinks), the verdict of the intent parser on it (``valid``, or
``invalid: <why>``; the scene's contracts are the robot's to check) and the size of the batch it was decoded
in. A malformed request gets a 4xx and one sentence (``{"error": ...}``); the deployment keeps serving.
Requests that arrive together are decoded as one batch (``@serve.batch``) on every replica.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import socket
import time

# Ray Serve's documented high-throughput mode (gRPC between handles and replicas, user code on the replica's own
# event loop), read when ray.serve is imported; the router keeps its own loop because collectors are sync actors.
# bench/bench_serve.py: without it the deployment answered 0.5-0.67x the calls per second of the batching actor.
SERVE_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1",
             "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"}  # direct ingress drains 30 s per replica stop
for _key, _value in SERVE_ENV.items():
    os.environ.setdefault(_key, _value)

import cv2  # noqa: E402
import hydra  # noqa: E402
import intentloop.configs.planner_schema  # noqa: F401, E402  (registers the config schemas, planner=vlm included)
import numpy as np  # noqa: E402
from intentloop.agents.planner import IntentOutcome, PlannerInput  # noqa: E402
from intentloop.envs.intents import InvalidIntent, parse_intent  # noqa: E402
from intentloop.envs.world import image_shape  # noqa: E402
from intentloop.experiments.common import ONE_THREAD, start_ray, user_errors  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from ray import serve  # noqa: E402

ACTOR_ENV = {**ONE_THREAD, **SERVE_ENV}
MAX_BODY = 1 << 20  # bytes: a 96x96 PNG is ~20 KB; a megabyte is a mistake or an attack
MAX_TEXT, MAX_HISTORY = 400, 64
KEYS = {"instruction", "image", "history", "feedback", "sample_seed"}


class BadRequest(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _image(data, hw: tuple[int, int]) -> np.ndarray:
    if not isinstance(data, str):
        raise BadRequest("image must be a base64 string of a PNG or JPEG file")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("image is not valid base64") from None
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED) if raw else None
    if image is None:
        raise BadRequest("image is not a PNG or JPEG file")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.shape[:2] != hw:
        raise BadRequest(f"image must be {hw[0]}x{hw[1]} RGB with 8 bits per channel, got shape {image.shape}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _text(value, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{what} must be non-empty text")
    if len(value) > MAX_TEXT:
        raise BadRequest(f"{what} must be at most {MAX_TEXT} characters, got {len(value)}")
    return value


def _history(items) -> list[IntentOutcome]:
    if not isinstance(items, list) or len(items) > MAX_HISTORY:
        raise BadRequest(f"history must be a list of at most {MAX_HISTORY} outcomes")
    out = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"intent", "success", "steps", "reason"}:
            raise BadRequest('each history entry must be {"intent", "success", "steps", "reason"}')
        if not isinstance(item["success"], bool) or not isinstance(item["steps"], int) or item["steps"] < 0:
            raise BadRequest("a history entry's success must be true or false and its steps a count")
        out.append(IntentOutcome(_text(item["intent"], "intent"), item["success"], item["steps"],
                                 _text(item["reason"], "reason")))  # fmt: skip
    return out


def _feedback(items) -> list[tuple[int, str]]:
    if not isinstance(items, list) or len(items) > MAX_HISTORY:
        raise BadRequest(f"feedback must be a list of at most {MAX_HISTORY} [at, text] pairs")
    out = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int) and item[0] >= 0):
            raise BadRequest('each feedback entry must be [after how many outcomes, "the words"]')
        out.append((item[0], _text(item[1], "feedback")))
    return out


def _seed(value) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31):
        raise BadRequest(f"sample_seed must be an integer in [0, 2**31) or null, got {json.dumps(value)[:40]}")
    return value


def parse_request(body: bytes, image_hw: tuple[int, int]) -> PlannerInput:
    """A planning request's JSON body as a `PlannerInput`, or `BadRequest` with one sentence."""
    if len(body) > MAX_BODY:
        raise BadRequest(f"the request body must be at most {MAX_BODY} bytes, got {len(body)}", status=413)
    try:
        request = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the request body must be JSON") from None
    if not isinstance(request, dict):
        raise BadRequest("the request body must be a JSON object")
    if unknown := sorted(set(request) - KEYS):
        raise BadRequest(f"unknown keys {unknown}; a request has: {', '.join(sorted(KEYS))}")
    for key in ("instruction", "image"):
        if key not in request:
            raise BadRequest(f"the request has no {key}")
    return PlannerInput(
        _text(request["instruction"], "instruction"),
        _image(request["image"], image_hw),
        _history(request.get("history", [])),
        feedback=_feedback(request.get("feedback", [])),
        sample_seed=_seed(request.get("sample_seed")),
    )


def verdict(text: str) -> str:
    try:
        parse_intent(text)
    except InvalidIntent as err:
        return f"invalid: {err}"
    return "valid"


@serve.deployment(
    ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": ACTOR_ENV}},
    max_ongoing_requests=64,  # Serve's default (5) would cap a batch at 5 concurrent collectors
    graceful_shutdown_timeout_s=0.5,  # an intent takes milliseconds: Serve's 20 s drain only delays a round's end
    graceful_shutdown_wait_loop_s=0.1,  # and its 2 s polling of a draining replica, another 2 s per round
    logging_config={"log_level": "WARNING", "enable_access_log": False},  # a log line per intent costs a core
)
class PlannerDeployment:
    """Any planner the project loads, batched; the oracle cannot be served (it needs privileged state)."""

    def __init__(self, planner: dict, image_size=96, max_batch_size: int = 16, batch_wait_s: float = 0.002):
        import torch

        torch.set_num_threads(1)
        self.planner, self.image_hw = servable_planner(planner), image_shape(image_size)
        self._decide.set_max_batch_size(max_batch_size)
        self._decide.set_batch_wait_timeout_s(batch_wait_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def _decide(self, inputs: list[PlannerInput]) -> list[dict]:
        batched = getattr(self.planner, "plan_batch", None)
        texts = batched(inputs) if batched else [self.planner.plan(inp) for inp in inputs]
        thoughts = getattr(self.planner, "last_thoughts", None) or [""] * len(texts)
        return [{"intent": t, "thought": th, "verdict": verdict(t), "batch": len(inputs)}
                for t, th in zip(texts, thoughts, strict=True)]  # fmt: skip

    async def plan(self, instruction: str, image, history: list, feedback: list = (), sample_seed=None) -> dict:
        """The handle's route (collectors): the image as an array, the history as `IntentOutcome`s."""
        inp = PlannerInput(instruction, image, list(history), feedback=list(feedback), sample_seed=sample_seed)
        return await self._decide(inp)

    async def __call__(self, request):
        from starlette.responses import JSONResponse

        if request.method != "POST":
            return JSONResponse({"error": "POST a JSON planning request"}, status_code=405)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            return JSONResponse({"error": f"the request body must be at most {MAX_BODY} bytes"}, status_code=413)
        try:
            inp = parse_request(await request.body(), self.image_hw)
        except BadRequest as err:
            return JSONResponse({"error": str(err)}, status_code=err.status)
        return JSONResponse(await self._decide(inp))

    def thinks(self) -> bool:
        return bool(getattr(self.planner, "think", False))


def planner_app(planner: dict, replicas: int = 1, image_size=96, max_batch_size: int = 16, batch_wait_s=0.002):
    if replicas < 1:
        raise ValueError(f"serve.replicas must be >= 1, got {replicas}")
    if max_batch_size < 1 or batch_wait_s < 0:
        raise ValueError("serve.max_batch_size must be >= 1 and serve.batch_wait_s >= 0")
    image_shape(image_size)  # a bad size: one sentence now
    return PlannerDeployment.options(num_replicas=replicas).bind(planner, image_size, max_batch_size, batch_wait_s)


def check_address(host: str, port: int, route: str) -> None:
    """One sentence now for an HTTP address Serve could not listen on (it would fail inside Ray, or not at all)."""
    if not 1 <= port <= 65535:
        raise ValueError(f"serve.port must be in [1, 65535], got {port}")
    if not route.startswith("/"):
        raise ValueError(f"serve.route must start with '/', got {route!r}")
    try:
        socket.getaddrinfo(host, port)
    except (OSError, UnicodeError) as e:
        raise ValueError(f"serve.host {host!r} does not resolve to an address to listen on ({e})") from None
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as e:
            raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def servable_planner(planner: dict):
    """The planner a replica serves; one that cannot be served fails in one sentence (``intentloop serve`` builds
    one before Ray starts)."""
    from intentloop.agents.planner import make_planner

    if planner.get("name") == "oracle":
        raise ValueError("the oracle reads privileged state; serve planner=vlm or planner=text")
    return make_planner(OmegaConf.create(planner))


@hydra.main(config_path="../configs", config_name="serve", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> None:
    planner, s = OmegaConf.to_container(cfg.planner, resolve=True), OmegaConf.to_container(cfg.serve)
    app = planner_app(planner, s["replicas"], s["image_size"], s["max_batch_size"], s["batch_wait_s"])
    servable_planner(planner)  # a bad planner or checkpoint: one sentence, before Ray starts
    check_address(s["host"], s["port"], s["route"])
    start_ray(cfg.ray.address, cfg.ray.num_cpus)
    try:
        serve.start(http_options={"host": s["host"], "port": s["port"]})
        serve.run(app, name="planner", route_prefix=s["route"])
        url = f"http://{s['host']}:{s['port']}{s['route']}"
        print(f"serving planner={planner['name']} at {url} ({s['replicas']} replicas); Ctrl-C stops", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()


if __name__ == "__main__":
    main()

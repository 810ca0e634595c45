"""Every app refuses bad values and bad artefacts with exit code 2 and one sentence, before any work: a sample of
the table in tests/bad_inputs.py (the whole table: bench/bench_bad_inputs.py, counts in docs/RELIABILITY.md)."""

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from bad_inputs import CASES, MARKER, build_artefacts, run_case, verdict


def sample() -> list:
    """The first case of every app, every 25th case of the table, and every crafted pickle."""
    first = {c.app: c for c in reversed(CASES)}
    picked = [*first.values(), *CASES[::25], *(c for c in CASES if "pickle" in c.why)]
    return list(dict.fromkeys(picked))


def test_the_sample_spans_every_app_and_kind_of_artefact():
    cases = sample()
    assert {c.app for c in cases} == {c.app for c in CASES} and len(CASES) >= 200
    assert 18 <= len(cases) <= 30 and any("{" in " ".join(c.args) for c in cases)


@pytest.mark.parametrize(
    ("returncode", "stderr", "written", "expected"),
    [
        (2, "intentloop evaluate: error: episodes must be >= 1\n", [], "refused"),
        (2, "intentloop evaluate: error: episodes must be >= 1\n", ["run/metrics.json"], "late"),
        (2, "2026 INFO Started a local Ray instance.\nintentloop evaluate: error: x\n", [], "unclear"),
        (1, "Error merging override episodes=abc\n", [], "unclear"),
        (0, "", ["run/metrics.json"], "accepted"),
        (None, "", [], "hang"),
        (1, 'Traceback (most recent call last):\n  File "x"\nValueError: y\n', [], "traceback"),
    ],
)
def test_the_verdict_of_a_run(returncode, stderr, written, expected):
    assert verdict("evaluate", returncode, stderr, written) == expected


@pytest.mark.slow
def test_a_sample_of_bad_inputs_is_refused_in_one_sentence_before_any_work(tmp_path):
    artefacts = build_artefacts(tmp_path / "artefacts")
    env = {**os.environ, "MUJOCO_GL": "egl", "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    cases = sample()

    def one(i):
        return run_case(cases[i], artefacts, tmp_path / f"c{i}", env, timeout=120)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, range(len(cases))))
    wrong = [f"{r['verdict']}: {r['app']} {r['args']} -> {r['stderr_tail'][-300:]}" for r in results
             if r["verdict"] != "refused"]  # fmt: skip
    assert not wrong, "\n".join(wrong)
    assert not (tmp_path / "artefacts" / MARKER).exists()  # no crafted pickle ran
    assert all(r["message"].startswith(f"intentloop {r['app']}: error: ") for r in results)

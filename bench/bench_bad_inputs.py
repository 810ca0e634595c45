"""The bad-input table (issue 15): every app run with bad values and bad artefacts, each in its own process.

    python bench/bench_bad_inputs.py --workers 2 --out docs/reliability_cases.json    # ~10 min on 2 cores
    python bench/bench_bad_inputs.py --only replay export                              # some apps

Every case must be **refused**: exit code 2, exactly one line on stderr (``intentloop <app>: error: ...``), no
file written in its run directory besides Hydra's own (so the refusal came before any work), within the
``--timeout``. Anything else is counted under what happened:

- ``accepted``: exit 0 (a bad input taken as good);
- ``traceback``: a Python traceback on stderr;
- ``hang``: still running at the timeout (killed);
- ``unclear``: another exit code, or more than one line;
- ``late``: refused, but only after the run wrote outputs (work that was thrown away);
- ``code ran``: a crafted pickle's payload ran (it writes a marker file when unpickled).

The artefacts (a planner checkpoint missing tensors, NaN skill weights, a hostile pickle, a store holding a
Parquet file of another schema, ...) are built once in a scratch folder from the shipped models; a small real
episode store is collected first (one scripted episode). The table (``tests/bad_inputs.py``) is shared with the
test suite, which runs a sample of it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bad_inputs import CASES, MARKER, build_artefacts, run_case  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--only", nargs="*", help="apps to run (default: all)")
    parser.add_argument("--out", default="runs/bad_inputs.json")
    parser.add_argument("--doc", help="also write the table as markdown here (docs/RELIABILITY.md)")
    args = parser.parse_args()

    cases = [c for c in CASES if not args.only or c.app in args.only]
    scratch = Path(tempfile.mkdtemp(prefix="intentloop-bad-"))
    start = time.monotonic()
    artefacts = build_artefacts(scratch / "artefacts")
    print(f"artefacts built in {time.monotonic() - start:.0f} s; {len(cases)} cases, {args.workers} at a time")
    env = {**os.environ, "MUJOCO_GL": "egl", "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}

    def one(item):
        i, case = item
        return run_case(case, artefacts, scratch / f"case{i:03d}", env, args.timeout)

    results = []
    with ThreadPoolExecutor(args.workers) as pool:
        for n, result in enumerate(pool.map(one, enumerate(cases)), 1):
            results.append(result)
            if result["verdict"] != "refused":
                print(f"[{n}/{len(cases)}] {result['verdict']:>9}: {result['app']} {result['args']}\n    "
                      f"{result['stderr_tail'][-400:]}", flush=True)  # fmt: skip
    counts = Counter(r["verdict"] for r in results)
    summary = {
        "cases": len(results),
        "verdicts": dict(counts),
        "code_ran": (scratch / "artefacts" / MARKER).exists(),
        "max_seconds": max(r["seconds"] for r in results),
        "seconds": round(time.monotonic() - start, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"summary": summary, "results": results}, indent=1))
    print(json.dumps(summary))
    if args.doc:
        Path(args.doc).write_text(markdown(summary, results, " ".join(sys.argv[1:])))


def markdown(summary: dict, results: list[dict], argv: str) -> str:
    apps = list(dict.fromkeys(r["app"] for r in results))
    verdicts = ["refused", "late", "unclear", "traceback", "accepted", "hang"]
    lines = [
        "# Reliability: the bad-input table",
        "",
        f"`python bench/bench_bad_inputs.py {argv}` ({summary['seconds']:.0f} s on 2 cores). Every case runs",
        "the app in a fresh process with one bad value or artefact (tests/bad_inputs.py builds the artefacts from the",
        "shipped models) and must be **refused**: exit code 2, one line on stderr, nothing written in its run",
        "folder but Hydra's own files (so before any training or collection). The test suite runs a sample of the",
        "table (tests/test_bad_inputs.py).",
        "",
        f"**{summary['cases']} cases: " + ", ".join(f"{summary['verdicts'].get(v, 0)} {v}" for v in verdicts)
        + f"; crafted pickle executed: {'yes' if summary['code_ran'] else 'no'}; slowest refusal "
        f"{summary['max_seconds']:.0f} s.**",
        "",
        "| app | cases | " + " | ".join(verdicts) + " | median s |",
        "|---|---|" + "---|" * (len(verdicts) + 1),
    ]
    for app in apps:
        mine = [r for r in results if r["app"] == app]
        secs = sorted(r["seconds"] for r in mine)
        counts = Counter(r["verdict"] for r in mine)
        lines.append(f"| {app} | {len(mine)} | " + " | ".join(str(counts.get(v, 0)) for v in verdicts)
                     + f" | {secs[len(secs) // 2]:.1f} |")  # fmt: skip
    lines += [
        "",
        "Kills are tests, not rows: a collector killed as a crash kills it and one killed for good, the only Serve",
        "replica killed mid-round (tests/test_collect.py), a collector whose restart fails in its constructor",
        "(collect stops with that cause), and `intentloop self-train` killed mid-round with SIGKILL and resumed",
        "(tests/test_self_train.py): every episode is stored exactly once and none is lost.",
    ]
    lines += ["", "Every case (`{name}`: an artefact of tests/bad_inputs.py `build_artefacts`):", ""]
    lines += ["| app | what is wrong | overrides | verdict | s | the sentence |", "|---|---|---|---|---|---|"]
    for r in results:
        message = r["message"].split(": error: ", 1)[-1].replace("|", "\\|")
        message = message if len(message) <= 160 else message[:157] + "..."
        lines.append(f"| {r['app']} | {r['why']} | `{r['args']}` | {r['verdict']} | {r['seconds']:.1f} | {message} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""A self-training run as one page: ``report.html`` in its run directory, written at the end of every run.

    intentloop demo                       ->  runs/demo/<date>/report.html (the demo prints its path)
    write_report(run_dir, history)        ->  the same for any ``intentloop self-train`` run

The page holds: one sentence saying whether the loop improved held-out success and whether the train sets
held; success per round and evaluation set with Wilson 95% intervals (an inline SVG chart, and the table);
the failures of each round's practice episodes by cause (reflection's attribution); and the best and the
worst practice episode of the last round that collected any, as animated GIFs with the step, the intent and
its outcome drawn on every frame (`intentloop.experiments.replay.annotated_frames`). Everything is inline: the page
opens from disk with no server and no network.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from intentloop.agents.episode_store import read_store
from intentloop.experiments.evaluation import wilson
from intentloop.experiments.replay import annotated_frames, gif_bytes

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def _sets(m: dict) -> dict:
    """The evaluation of the planner kept after round ``m`` (the promoted one), on the report seeds when the run
    has them (runs before report seeds existed: on the selection seeds)."""
    return (m.get("report") or m.get("promoted_eval") or m["eval"])["sets"]


def _interval(cell: dict) -> list[float]:
    n = cell["episodes"]
    return wilson(round(cell["success_rate"] * n), n)


def verdict(history: list[dict]) -> str:
    """One sentence: did the loop raise held-out success, by how much, and did the train sets hold."""
    first, last = _sets(history[0]), _sets(history[-1])
    promoted = [m["round"] for m in history[1:] if m["promoted"]]
    if not promoted:
        return f"No round was promoted: the round-0 planner is kept ({len(history) - 1} rounds tried)."
    held = [k for k in first if k.split("/")[0] in ("practice", "unseen", "heldout")]
    drops = [first[k]["success_rate"] - last[k]["success_rate"] for k in first if k.startswith("train")]
    rise = "no held-out set evaluated"
    if held:
        gains = {k: last[k]["success_rate"] - first[k]["success_rate"] for k in held}
        rise = f"held-out success {' / '.join(f'{k} {gains[k]:+.2f}' for k in held)}"
        best = max(gains, key=gains.get)
        if _interval(last[best])[0] > _interval(first[best])[1]:  # the two 95% intervals do not overlap
            was, now = first[best]["success_rate"], last[best]["success_rate"]
            rise += f" ({best}: {was:.2f} -> {now:.2f}, outside its 95% interval)"
    forgot = max(drops, default=0.0)
    kept = "the train sets held" if forgot <= 0.01 else f"a train set fell {forgot:.2f}"
    rounds = f"Round {promoted[0]}" if len(promoted) == 1 else f"Rounds {', '.join(map(str, promoted))}"
    control = (history[-1].get("control") or {}).get("report")
    if held and control and len(history) > 1:
        beside = {k: last[k]["success_rate"] - control["sets"][k]["success_rate"] for k in held if k in control["sets"]}
        kept += "; against the equal-compute control: " + " / ".join(f"{k} {v:+.2f}" for k, v in beside.items())
    return f"{rounds} promoted: {rise}; {kept}."


def chart(history: list[dict], width: int = 640, height: int = 260) -> str:
    """Success rate per round (x) for every evaluation set, with Wilson 95% intervals, as inline SVG."""
    keys, pad, legend = list(_sets(history[0])), 40, 90
    rounds = [m["round"] for m in history]
    span = max(1, rounds[-1] - rounds[0])

    def x(r):
        return pad + (width - 2 * pad - legend) * (r - rounds[0]) / span

    def y(v):
        return height - pad - (height - 2 * pad) * v

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="chart">']
    for v in (0.0, 0.5, 1.0):
        parts.append(f'<line x1="{pad}" x2="{x(rounds[-1])}" y1="{y(v)}" y2="{y(v)}" stroke="#ddd"/>')
        parts.append(f'<text x="4" y="{y(v) + 4}" font-size="11">{v:.1f}</text>')
    for r in rounds:
        parts.append(f'<text x="{x(r) - 4}" y="{height - 12}" font-size="11">r{r}</text>')
    for i, k in enumerate(keys):
        colour, shift = COLOURS[i % len(COLOURS)], (i - len(keys) / 2) * 3  # a few px apart: bars stay visible
        cells = [_sets(m)[k] for m in history]
        points = " ".join(f"{x(r) + shift},{y(c['success_rate'])}" for r, c in zip(rounds, cells, strict=True))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for r, c in zip(rounds, cells, strict=True):
            lo, hi = _interval(c)
            parts.append(f'<line x1="{x(r) + shift}" x2="{x(r) + shift}" y1="{y(lo)}" y2="{y(hi)}" stroke="{colour}"/>')
        label = f'<text x="{x(rounds[-1]) + 16}" y="{pad + 14 * i}" font-size="11" fill="{colour}">{k}</text>'
        parts.append(label)
    return "".join(parts) + "</svg>"


def _table(history: list[dict], control: bool = False) -> str:
    """The promoted planner's figures per round (``control``: the control arm's), success [95%] / chain."""
    if control:  # the control arm has no gate: it is "promoted" every round
        history = [{"round": m["round"], "promoted": True, "report": m["control"]["report"]}
                   for m in history if m.get("control")]  # fmt: skip
        if len(history) < 2:
            return "<p>No control arm in this run (control=false).</p>"
    keys = list(_sets(history[0]))
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    rows = []
    for m in history:
        cells = []
        for k in keys:
            c = _sets(m)[k]
            lo, hi = _interval(c)
            cells.append(f"<td>{c['success_rate']:.2f} [{lo:.2f}, {hi:.2f}] / {c['avg_chain_length']:.2f}</td>")
        rows.append(f"<tr><td>{m['round']}</td><td>{'yes' if m['promoted'] else 'no'}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>round</th><th>promoted</th>{head}</tr>{''.join(rows)}</table>"


def _failures(history: list[dict]) -> str:
    rounds = [m for m in history if "reflect" in m]
    if not rounds:
        return "<p>No practice episodes yet.</p>"
    causes = sorted({c for m in rounds for c in m["reflect"]["failures_by_cause"]})
    head = "".join(f"<th>{html.escape(c)}</th>" for c in causes)
    rows = [
        f"<tr><td>{m['round']}</td><td>{m['reflect']['episodes']}</td>"
        + "".join(f"<td>{m['reflect']['failures_by_cause'].get(c, 0)}</td>" for c in causes)
        + "</tr>"
        for m in rounds
    ]
    return f"<table><tr><th>round</th><th>episodes</th>{head}</tr>{''.join(rows)}</table>"


def _episodes(run_dir: Path, history: list[dict]) -> str:
    """The best and the worst practice episode of the last round that collected any (by subgoals reached)."""
    for m in reversed(history):
        store = run_dir / "rounds" / f"r{m['round']:03d}" / "episodes"
        if m["round"] > 0 and store.exists():
            rows = [e for e in read_store(str(store)).to_pylist() if e["frames"]]
            if rows:
                break
    else:
        return "<p>No recorded practice episodes.</p>"
    ranked = sorted(rows, key=lambda e: (e["subgoals_done"] / e["n_subgoals"], e["episode_id"]))
    out = []
    for label, e in (("best", ranked[-1]), ("worst", ranked[0])):
        data = base64.b64encode(gif_bytes(annotated_frames(e, scale=3), fps=8)).decode()
        title = f"{label} of round {m['round']}: {e['subgoals_done']}/{e['n_subgoals']} subgoals"
        out.append(
            f'<figure><img class="replay" alt="{label} episode" src="data:image/gif;base64,{data}">'
            f"<figcaption>{html.escape(title)}: <i>{html.escape(e['instruction'])}</i></figcaption></figure>"
        )
    return "".join(out)


def write_report(run_dir: str | Path, history: list[dict]) -> Path:
    """Write ``<run_dir>/report.html`` for a run's rounds (the metrics dicts of `SelfTraining.run`)."""
    run_dir = Path(run_dir)
    if not history:
        raise ValueError("no rounds to report: the run has not evaluated its round-0 planner yet")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>intentloop run {html.escape(run_dir.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}} figure{{display:inline-block;margin:1em}}</style>
</head><body>
<h1>Self-training run {html.escape(run_dir.name)}</h1>
<p id="verdict"><b>{html.escape(verdict(history))}</b></p>
<h2>Success per round (promoted planner; bars: Wilson 95% intervals)</h2>
{chart(history)}
<h2>The promoted planner after every round (report seeds): success [95% interval] / average chain length</h2>
{_table(history)}
<h2>The equal-compute control arm (the round-0 planner trained as many steps on its oracle data only)</h2>
{_table(history, control=True)}
<h2>Failures of the practice episodes, by cause</h2>
{_failures(history)}
<h2>Replays</h2>
{_episodes(run_dir, history)}
</body></html>
"""
    path = run_dir / "report.html"
    path.write_text(page)
    return path

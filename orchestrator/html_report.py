"""The run as one self-contained HTML page: a Gantt chart of the slots and the results table."""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import pairwise
from typing import Any

from .report import exit_text, format_duration, iso_utc, terminal_safe, xml_safe
from .results import JobResult, RunSummary
from .timeline import Bar, Needs, bars, critical_path, path_seconds, run_origin

ROW_HEIGHT = 22
BAR_HEIGHT = 16
AXIS_HEIGHT = 24
MIN_CHART_WIDTH = 1000
MAX_CHART_WIDTH = 16000
PIXELS_PER_BAR = 8  # the busiest lane gets about this much room per bar
TICK_SPACING = 100  # pixels between time labels, roughly
TAIL_LINES = 20
LIGHT_STATUSES = ("retried", "allowed", "cancelled", "skipped", "ok (resumed)")  # dark labels
LABEL_CHAR_WIDTH = 6.5  # pixels per character of an 11px label, to cut names that would spill

# No script at all, and a policy that forbids every fetch: the page can neither call out nor
# run anything a job name or output might smuggle in, even if escaping were ever missed.
CONTENT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.3em; margin: 0 0 .3em; }
.facts { color: #555; margin: 0 0 1em; }
.facts span { margin-right: 1.5em; }
.critical-line { margin: .5em 0 1em; }
.legend span { display: inline-block; margin-right: 1em; }
.legend i { display: inline-block; width: 1em; height: .8em; vertical-align: middle; margin-right: .3em; }
.gantt { display: flex; border: 1px solid #ddd; margin: .5em 0 1.5em; }
.lanes { flex: none; padding-top: %(axis)dpx; border-right: 1px solid #ddd; background: #fafafa; }
.lanes div { height: %(row)dpx; line-height: %(row)dpx; padding: 0 .6em; font-size: 12px; }
.lanes div { white-space: nowrap; }
.chart { overflow-x: auto; flex: auto; }
svg text { font: 11px system-ui, sans-serif; fill: #666; }
svg .tick { stroke: #eee; }
svg .lane-even { fill: #fcfcfc; }
rect.bar { stroke: #fff; stroke-width: 1; }  /* back-to-back jobs stay two bars */
rect.bar:hover { stroke: #000; stroke-width: 1.5; }
rect.bar.critical { stroke: #111; stroke-width: 2; }
svg text.label { fill: #fff; pointer-events: none; }
svg text.label.dark { fill: #222; }
path.critical-chain { fill: none; stroke: #111; stroke-width: 1; stroke-dasharray: 3 2; }
.s-ok { fill: #2e9e4f; background: #2e9e4f; }
.s-ok-resumed { fill: #8cc9a0; background: #8cc9a0; }
.s-allowed { fill: #e0a800; background: #e0a800; }
.s-failed { fill: #d64545; background: #d64545; }
.s-timeout { fill: #8e44ad; background: #8e44ad; }
.s-interrupted { fill: #b3592d; background: #b3592d; }
.s-cancelled, .s-skipped { fill: #a6a6a6; background: #a6a6a6; }
.s-retried { fill: url(#retried); background: repeating-linear-gradient(45deg, #f0a04b 0 3px, #fff 3px 5px); }
.legend .critical { outline: 2px solid #111; background: #fff; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: .2em .7em; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f3f3f3; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.status i { display: inline-block; width: .7em; height: .7em; margin-right: .4em; }
tr.critical td:first-child { font-weight: 600; }
tr.critical td:first-child::after { content: " ◆"; }
pre { margin: .3em 0 0; max-width: 60em; white-space: pre-wrap; font-size: 12px; }
"""


def render_html(summary: RunSummary, run_info: Mapping[str, Any], needs: Needs | None = None) -> str:
    """The whole page; every job name, output and path in it is escaped text."""
    path = critical_path(summary.results, needs or {})
    drawn = bars(summary, critical=[result.name for result in path])
    origin = run_origin(summary)
    run_id = str(run_info.get("run_id") or summary.run_id or "")
    title = f"orchestrate run {run_id}".strip()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_text(title)}</title>",
        f"<style>{STYLE % {'axis': AXIS_HEIGHT, 'row': ROW_HEIGHT}}</style>",
        "</head><body>",
        f"<h1>{_text(title)}</h1>",
        _facts(summary, run_info, origin),
        _critical_line(path, summary.elapsed),
        _legend(drawn),
        _gantt(drawn, origin, summary.elapsed, path),
        _table(summary, origin, {result.name for result in path}),
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def _text(value: object) -> str:
    """Any value as HTML text or attribute content: no markup, no control characters."""
    return html.escape(terminal_safe(str(value)), quote=True)


def _block(value: str) -> str:
    """Multi-line output as HTML text, lines kept, escape sequences and control bytes gone."""
    return html.escape(xml_safe(value).replace("\r\n", "\n"), quote=True)


def _facts(summary: RunSummary, run_info: Mapping[str, Any], origin: float) -> str:
    exit_code = run_info.get("exit_code", summary.exit_code)
    facts = [
        ("job file", run_info.get("job_file")),
        ("started", iso_utc(run_info.get("started", origin or None))),
        ("exit code", exit_code),
        ("stopped", summary.stop_reason.value if summary.stop_reason else None),
    ]
    shown = "".join(
        f"<span>{name}: <b>{_text(value)}</b></span>" for name, value in facts if value is not None
    )
    return f'<p class="facts"><b>{_text(summary.summary_line())}</b></p><p class="facts">{shown}</p>'


def _critical_line(path: list[JobResult], elapsed: float) -> str:
    if not path:
        return ""
    chain = " → ".join(f"<b>{_text(result.name)}</b>" for result in path)
    seconds = f"{path_seconds(path):.1f}s of {elapsed:.1f}s"
    return f'<p class="critical-line">Critical path: {chain} ({seconds})</p>'


def _legend(drawn: list[Bar]) -> str:
    statuses = sorted({bar.status for bar in drawn})
    items = [f'<span><i class="{_status_class(status)}"></i>{_text(status)}</span>' for status in statuses]
    if any(bar.critical for bar in drawn):
        items.append('<span><i class="critical"></i>on the critical path</span>')
    return f'<p class="legend">{"".join(items)}</p>' if items else ""


def _status_class(status: str) -> str:
    return "s-" + "".join(char if char.isalnum() else "-" for char in status).strip("-").replace("--", "-")


def _gantt(drawn: list[Bar], origin: float, elapsed: float, path: list[JobResult]) -> str:
    if not drawn:
        return "<p>No job ran.</p>"
    lanes = sorted({bar.lane for bar in drawn})
    row_of = {lane: row for row, lane in enumerate(lanes)}
    span = max(elapsed, max(bar.end for bar in drawn) - origin, 1e-3)
    busiest = max(Counter(bar.lane for bar in drawn).values())
    width = min(MAX_CHART_WIDTH, max(MIN_CHART_WIDTH, busiest * PIXELS_PER_BAR))
    scale = width / span
    height = AXIS_HEIGHT + ROW_HEIGHT * len(lanes)
    hosts = _lane_hosts(drawn)
    labels = "".join(
        f"<div>slot {lane}{' · ' + _text(hosts[lane]) if lane in hosts else ''}</div>" for lane in lanes
    )
    svg = [
        f'<svg class="gantt-chart" width="{width + 10}" height="{height}" role="img"'
        ' aria-label="slots over time">',
        '<defs><pattern id="retried" width="5" height="5" patternUnits="userSpaceOnUse"'
        ' patternTransform="rotate(45)"><rect width="5" height="5" fill="#fff"/>'
        '<rect width="3" height="5" fill="#f0a04b"/></pattern></defs>',
    ]
    svg += [
        f'<rect class="lane-even" x="0" y="{AXIS_HEIGHT + row * ROW_HEIGHT}" width="{width + 10}" '
        f'height="{ROW_HEIGHT}"/>'
        for row in range(0, len(lanes), 2)
    ]
    svg += _ticks(span, scale, height)
    for bar in drawn:
        svg.append(_bar(bar, origin, scale, row_of[bar.lane]))
    svg.append(_chain(drawn, path, origin, scale, row_of))
    svg.append("</svg>")
    return (
        f'<div class="gantt"><div class="lanes">{labels}</div><div class="chart">{"".join(svg)}</div></div>'
    )


def _lane_hosts(drawn: Iterable[Bar]) -> dict[int, str]:
    hosts: dict[int, set[str]] = {}
    for bar in drawn:
        if bar.host:
            hosts.setdefault(bar.lane, set()).add(bar.host)
    return {lane: ", ".join(sorted(names)) for lane, names in hosts.items()}


def _ticks(span: float, scale: float, height: int) -> list[str]:
    step = _nice_step(TICK_SPACING / scale)
    ticks = []
    for index in range(int(span / step) + 1):
        x = index * step * scale
        ticks.append(
            f'<line class="tick" x1="{x:.1f}" y1="{AXIS_HEIGHT - 6}" x2="{x:.1f}" y2="{height}"/>'
            f'<text x="{x + 2:.1f}" y="{AXIS_HEIGHT - 10}">{format_duration(index * step)}</text>'
        )
    return ticks


def _nice_step(seconds: float) -> float:
    """The first of 1, 2, 5 × 10ⁿ seconds at least `seconds`."""
    power = 10.0 ** math.floor(math.log10(max(seconds, 1e-3)))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= seconds)


def _bar(bar: Bar, origin: float, scale: float, row: int) -> str:
    x = (bar.start - origin) * scale
    width = max(1.0, bar.duration * scale)
    y = AXIS_HEIGHT + row * ROW_HEIGHT + (ROW_HEIGHT - BAR_HEIGHT) // 2
    classes = f"bar {_status_class(bar.status)}" + (" critical" if bar.critical else "")
    how = f"exit {bar.exit_code}" if bar.exit_code is not None else ""
    if bar.signal_name:
        how = f"killed by {bar.signal_name}"
    if bar.timed_out:
        how = f"timed out ({how})" if how else "timed out"
    details = [
        bar.name,
        f"attempt {bar.attempt} of {bar.attempts}",
        bar.status,
        f"{bar.duration:.3f}s",
        how,
        f"on {bar.host}" if bar.host else "",
        "critical path" if bar.critical else "",
    ]
    tooltip = " · ".join(_text(item) for item in details if item)
    rect = (
        f'<rect class="{classes}" x="{x:.1f}" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT}" '
        f'data-job="{_text(bar.name)}" data-attempt="{bar.attempt}" data-status="{_text(bar.status)}" '
        f'data-critical="{"true" if bar.critical else "false"}"><title>{tooltip}</title></rect>'
    )
    fits = int((width - 8) / LABEL_CHAR_WIDTH)
    if fits < 3:
        return rect
    name = terminal_safe(bar.name)
    label = name if len(name) <= fits else name[: fits - 1] + "…"
    shade = "label dark" if bar.status in LIGHT_STATUSES else "label"
    return (
        rect + f'<text class="{shade}" x="{x + 4:.1f}" y="{y + BAR_HEIGHT - 4}">{html.escape(label)}</text>'
    )


def _chain(
    drawn: list[Bar], path: list[JobResult], origin: float, scale: float, row_of: dict[int, int]
) -> str:
    """Dashed links along the critical path, from a need's last attempt to its dependent's
    first, between the bars (never across their labels)."""
    first_bar: dict[str, Bar] = {}
    last_bar: dict[str, Bar] = {}
    for bar in drawn:  # in start order
        first_bar.setdefault(bar.name, bar)
        last_bar[bar.name] = bar

    def middle(bar: Bar) -> float:
        return AXIS_HEIGHT + row_of[bar.lane] * ROW_HEIGHT + ROW_HEIGHT / 2

    links = []
    for need, dependent in pairwise(path):
        if need.name in last_bar and dependent.name in first_bar:
            left, right = last_bar[need.name], first_bar[dependent.name]
            links.append(
                f"M{(left.end - origin) * scale:.1f} {middle(left):.1f}"
                f"L{(right.start - origin) * scale:.1f} {middle(right):.1f}"
            )
    return f'<path class="critical-chain" d="{"".join(links)}"/>' if links else ""


def _table(summary: RunSummary, origin: float, critical: set[str]) -> str:
    headers = [
        "job",
        "status",
        "exit",
        "attempts",
        "slot",
        "ready",
        "waited",
        "started",
        "duration",
        "last output",
    ]
    rows = [_row(result, origin, result.name in critical) for result in summary.results]
    head = "".join(f"<th>{name}</th>" for name in headers)
    return f'<table class="results"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _row(result: JobResult, origin: float, critical: bool) -> str:
    def since(moment: float | None) -> str:
        return "" if moment is None else f"+{format_duration(moment - origin)}"

    waited = None
    if result.ready is not None and result.start is not None:
        waited = max(0.0, result.start - result.ready)
    succeeded = result.status.value in ("ok", "ok (resumed)")
    output = "" if succeeded else _output(result)
    slot = "" if result.slot is None else str(result.slot)
    if result.host:
        slot += f" · {result.host}"
    cells = [
        f"<td>{_text(result.name)}</td>",
        f'<td class="status"><i class="{_status_class(result.status.value)}"></i>{_text(result.status)}</td>',
        f'<td class="num">{_text(exit_text(result))}</td>',
        f'<td class="num">{result.attempts}</td>',
        f'<td class="num">{_text(slot)}</td>',
        f'<td class="num">{since(result.ready)}</td>',
        f'<td class="num">{format_duration(waited)}</td>',
        f'<td class="num">{since(result.start)}</td>',
        f'<td class="num">{format_duration(result.duration)}</td>',
        f"<td>{output}</td>",
    ]
    marked = ' class="critical"' if critical else ""
    return f'<tr{marked} data-job="{_text(result.name)}">{"".join(cells)}</tr>'


def _output(result: JobResult) -> str:
    """The reason or last line, the tail folded under it."""
    last = _text(result.last_line)
    tail = "\n".join(result.tail.splitlines()[-TAIL_LINES:])
    if not tail.strip() or tail.strip() == result.last_line.strip():
        return last
    return f"<details><summary>{last}</summary><pre>{_block(tail)}</pre></details>"

"""Turn results and job files into text: the summary table, report files, list and graph."""

from __future__ import annotations

import json
import os
import re
import shlex
import unicodedata
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .model import Job, JobFile
from .results import Attempt, JobResult, RunSummary, Status
from .timeline import Needs, attempts_of, critical_path, critical_path_line, path_seconds, signal_name

if TYPE_CHECKING:  # imported by junit_report: a JSON report or a table needs no XML
    import xml.etree.ElementTree as ET

LAST_OUTPUT_WIDTH = 80
LIST_COMMAND_WIDTH = 60  # `orchestrate show JOB` prints it whole
REPORT_EXTENSIONS = (".json", ".xml", ".html")
GRAPH_FORMATS = ("dot", "mermaid")

# Escape sequences a job may print: CSI (incl. 8-bit), OSC/DCS/APC/PM/SOS strings, and the
# two-byte ESC forms. Removed whole so no stray "[31m" is left behind; a string never
# swallows past the end of its line.
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]P^_X]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
_LINE_BREAKS = re.compile(r"[\t\n\r\v\f]+")
# Everything XML 1.0 forbids, lone surrogates included (they cannot even be encoded).
# Compiled when first used: it takes 6 ms, and only JUnit files need it.
_XML_ILLEGAL = "[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
# What surrogateescape makes of bytes that are not UTF-8; no strict encoder accepts them.
_SURROGATES = re.compile("[\ud800-\udfff]")

_RED, _YELLOW, _GREEN, _RESET = "\x1b[31m", "\x1b[33m", "\x1b[32m", "\x1b[0m"
_STATUS_COLORS = {
    Status.OK: _GREEN,
    Status.RESUMED: _GREEN,
    Status.SHARED: _GREEN,
    Status.UP_TO_DATE: _GREEN,
    Status.ALLOWED: _YELLOW,
    Status.SKIPPED: _YELLOW,
    Status.CANCELLED: _YELLOW,
    Status.FAILED: _RED,
    Status.TIMEOUT: _RED,
    Status.INTERRUPTED: _RED,
}
# Formats whose output is read by another program, where ANSI codes would only be garbage.
_MARKUP_FORMATS = re.compile(r"(unsafe)?html|latex\w*|mediawiki|moinmoin|jira|textile|asciidoc|tsv|youtrack")

_FAILURES = (Status.FAILED, Status.TIMEOUT, Status.INTERRUPTED)
_NOT_RUN = (Status.SKIPPED, Status.CANCELLED)


# -- making job output safe to show ---------------------------------------------------------


def terminal_safe(text: str) -> str:
    """One line of `text` with escape sequences and control/format characters removed."""
    text = _LINE_BREAKS.sub(" ", _ESCAPE_SEQUENCE.sub("", _replace_surrogates(text)))
    # Cf holds the bidi overrides that can make a line read differently from what it is.
    return "".join(char for char in text if unicodedata.category(char) not in ("Cc", "Cf"))


def xml_safe(text: str) -> str:
    """`text` without escape sequences or any character XML 1.0 does not allow."""
    return re.sub(_XML_ILLEGAL, "", _ESCAPE_SEQUENCE.sub("", text))


def _replace_surrogates(text: str) -> str:
    return _SURROGATES.sub("\ufffd", text)


def json_safe(text: str | None) -> str | None:
    # json.dumps would emit a lone surrogate as "\udcff", which strict parsers reject.
    return None if text is None else _replace_surrogates(text)


def _shorten(text: str, width: int = LAST_OUTPUT_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# -- the summary table ----------------------------------------------------------------------


def check_table_format(table_format: str) -> None:
    """Raise ValueError naming the valid formats; tabulate itself silently falls back."""
    from tabulate import tabulate_formats  # imported where a table is made: report files need none

    if table_format not in tabulate_formats:
        raise ValueError(
            f"unknown table format {table_format!r}; choose one of: {', '.join(tabulate_formats)}"
        )


def format_duration(seconds: float | None) -> str:
    """`0.4s`, `12.3s`, `4m05s`, `1h02m03s`; blank when the job never started."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s"


def exit_text(result: JobResult) -> str:
    """The signal name when killed by one, else the exit code, blank when never run."""
    if result.signal is not None:
        return result.signal_name or ""
    return "" if result.exit_code is None else str(result.exit_code)


def _status_text(status: Status, color: bool) -> str:
    return f"{_STATUS_COLORS[status]}{status}{_RESET}" if color else str(status)


def _table_row(result: JobResult, color: bool) -> list[str]:
    # An allowed failure still failed: its last line says why.
    succeeded = result.status is Status.OK or result.status.reused
    last_output = "" if succeeded else _shorten(terminal_safe(result.last_line))
    return [
        terminal_safe(result.name),
        _status_text(result.status, color),
        exit_text(result),
        str(result.attempts),
        format_duration(result.duration),
        last_output,
    ]


def render_table(
    summary: RunSummary, table_format: str = "simple", color: bool = False, needs: Needs | None = None
) -> str:
    """The results table, the summary line (`12 ok, 1 failed in 4.2s`), then the critical
    path when `needs` (each job's needs) links the jobs."""
    check_table_format(table_format)
    color = color and not _MARKUP_FORMATS.fullmatch(table_format)
    rows = [_table_row(result, color) for result in summary.results]
    headers = ["job", "status", "exit", "attempts", "duration", "last output"]
    align = ["left", "left", "right", "right", "right", "left"]
    if any(result.host for result in summary.results):  # a cluster ran some: say where
        for row, result in zip(rows, summary.results, strict=True):
            row.insert(5, terminal_safe(result.host or ""))
        headers.insert(5, "host")
        align.insert(5, "left")
    from tabulate import tabulate

    table = tabulate(
        rows,
        headers=headers,
        tablefmt=table_format,
        # Cells are text: a job named "1e3" must not be printed as 1000.0.
        disable_numparse=True,
        colalign=align if rows else None,  # tabulate 0.9 fails aligning the columns of no rows
    )
    path_line = critical_path_line(summary, needs) if needs else None
    footer = [terminal_safe(path_line)] if path_line else []
    return "\n".join([table, summary.summary_line(), *footer])


def render_job_list(
    jobfile: JobFile, table_format: str = "simple", names: Iterable[str] | None = None
) -> str:
    """The table `orchestrate list` prints: name, command, needs, resources, tags, description."""
    check_table_format(table_format)
    jobs = jobfile.jobs.values() if names is None else [jobfile.jobs[name] for name in names]
    rows = [
        [
            terminal_safe(job.name),
            _shorten(terminal_safe(_first_line(command_text(job))), LIST_COMMAND_WIDTH),
            terminal_safe(", ".join(job.needs)),
            terminal_safe(", ".join(_resource_text(*item) for item in job.resources.items())),
            terminal_safe(", ".join(job.tags)),
            terminal_safe(job.description),
        ]
        for job in jobs
    ]
    from tabulate import tabulate

    return tabulate(
        rows,
        headers=["name", "command", "needs", "resources", "tags", "description"],
        tablefmt=table_format,
        disable_numparse=True,
    )


def command_text(job: Job) -> str:
    """The command as written: a string as is, an argv as shell words."""
    return shlex.join(job.run) if isinstance(job.run, tuple) else job.run


def _first_line(text: str) -> str:
    """One line for a table: a multi-line script shows its first line and an ellipsis."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0] + (" …" if len(lines) > 1 else "") if lines else ""


def render_job(jobfile: JobFile, job: Job) -> str:
    """`orchestrate show JOB`: one job as it will run, every default and layer applied."""
    shell = "none: the list is the argv" if isinstance(job.run, tuple) else shlex.join(job.shell or ())
    if not isinstance(job.run, tuple) and job.shell is None:
        shell = "/bin/sh -c" + (" (not needed: exec'd directly)" if job.argv[0] != "/bin/sh" else "")
    fields = [
        ("job", job.name),
        ("command", command_text(job)),
        ("shell", shell),
        ("cwd", job.cwd or jobfile.directory),
        ("needs", ", ".join(job.needs) or "-"),
        ("resources", ", ".join(_resource_text(*item) for item in job.resources.items()) or "-"),
        ("timeout", format_duration(job.timeout) if job.timeout is not None else "none"),
        (
            "retries",
            f"{job.retries}" + (f", {format_duration(job.retry_delay)} apart" if job.retries else ""),
        ),
        ("allow_failure", "yes" if job.allow_failure else "no"),
        ("tags", ", ".join(job.tags) or "-"),
        ("matrix", ", ".join(f"{key}={value}" for key, value in job.matrix.items()) or "-"),
        ("description", job.description or "-"),
        ("inputs", ", ".join(job.inputs) or "-"),
        ("outputs", ", ".join(job.outputs) or "- (always runs)"),
    ]
    lines = [f"{label + ':':<15}{terminal_safe(value)}" for label, value in fields]
    lines.append("env:           (from the file and the command line; the caller's environment is below it)")
    lines += [f"  {terminal_safe(name)}={terminal_safe(value)}" for name, value in sorted(job.env.items())]
    if not job.env:
        lines.append("  (none)")
    return "\n".join(lines)


def _resource_text(name: str, units: int) -> str:
    return name if units == 1 else f"{name}:{units}"


# -- report files ---------------------------------------------------------------------------


def report_extension(path: str) -> str:
    """The report format of `path` (`.json`, `.xml` or `.html`); ValueError for anything else."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in REPORT_EXTENSIONS:
        raise ValueError(
            f"cannot write report file {path!r}: unknown extension {extension or '(none)'!r}; "
            f"use one of: {', '.join(REPORT_EXTENSIONS)}"
        )
    return extension


def write_report_file(
    path: str, summary: RunSummary, run_info: dict[str, Any], needs: Needs | None = None
) -> None:
    """Write the results to `path` as JSON, JUnit XML or an HTML page, atomically.

    `run_info` may hold `job_file`, `run_id`, `started` (epoch seconds, datetime or text)
    and `exit_code` (defaults to the summary's); `needs` maps each job to its needs, for the
    critical path (without it every job is a path of its own).
    """
    extension = report_extension(path)
    if extension == ".json":
        data = json_text(json_report(summary, run_info, needs))
    elif extension == ".html":
        from .html_report import render_html

        data = render_html(summary, run_info, needs)
    else:
        data = junit_report(summary, run_info)
    write_atomically(path, data.encode("utf-8"))


def json_text(report: dict[str, Any]) -> str:
    """The JSON report with a line per key and per job: readable, and made by json's C
    encoder (`indent=` switches json to its Python encoder: 15 ms more for 1,000 jobs)."""
    encode = json.JSONEncoder(ensure_ascii=False).encode
    lines = []
    for key, value in report.items():
        if key == "jobs" and value:
            jobs = ",\n".join(f"    {encode(job)}" for job in value)
            lines.append(f'  "jobs": [\n{jobs}\n  ]')
        else:
            lines.append(f"  {encode(key)}: {encode(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def write_atomically(path: str, data: bytes) -> None:
    # A reader (CI, a dashboard) never sees a half-written report; os.open honours the umask,
    # unlike mkstemp's 0600.
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temp = os.path.join(directory, f".{os.path.basename(path)}.{os.urandom(4).hex()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def iso_utc(
    moment: float | datetime | str | None, timespec: str = "milliseconds", suffix: str = "Z"
) -> str | None:
    """ISO-8601 UTC text for epoch seconds or a datetime; text passes through; None stays."""
    if moment is None or isinstance(moment, str):
        return moment
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, timezone.utc)
    utc = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return utc.isoformat(timespec=timespec) + suffix


def json_report(summary: RunSummary, run_info: dict[str, Any], needs: Needs | None = None) -> dict[str, Any]:
    """The JSON report as a plain dict: run information, the critical path and one entry
    per job."""
    starts = [result.start for result in summary.results if result.start is not None]
    started = run_info.get("started", min(starts) if starts else None)
    path = critical_path(summary.results, needs or {})
    return {
        "job_file": json_safe(run_info.get("job_file")),
        "run_id": json_safe(run_info.get("run_id")),
        "started": iso_utc(started),
        "exit_code": run_info.get("exit_code", summary.exit_code),
        "elapsed": round(summary.elapsed, 3),
        "stop_reason": summary.stop_reason.value if summary.stop_reason else None,
        "summary": summary.summary_line(),
        "critical_path": [json_safe(result.name) for result in path],
        "critical_path_seconds": round(path_seconds(path), 3),
        "jobs": [_json_job(result) for result in summary.results],
    }


def _json_job(result: JobResult) -> dict[str, Any]:
    duration = result.duration
    return {
        "name": json_safe(result.name),
        "status": result.status.value,
        "exit_code": result.exit_code,
        "signal": result.signal_name,
        "attempts": result.attempts,
        "start": iso_utc(result.start),
        "end": iso_utc(result.end),
        "duration": None if duration is None else round(float(duration), 3),
        "log_path": json_safe(result.log_path),
        "reason": json_safe(result.reason),
        "timed_out": result.timed_out,
        "ready": iso_utc(result.ready),
        "slot": result.slot,
        "host": json_safe(result.host),
        "tries": [_json_attempt(attempt) for attempt in attempts_of(result)],
    }


def _json_attempt(attempt: Attempt) -> dict[str, object]:
    return {
        "attempt": attempt.number,
        "start": iso_utc(attempt.start),
        "end": iso_utc(attempt.end),
        "duration": round(max(0.0, attempt.end - attempt.start), 3),
        "exit_code": attempt.exit_code,
        "signal": signal_name(attempt.signal),
        "timed_out": attempt.timed_out,
        "slot": attempt.slot,
        "host": json_safe(attempt.host),
    }


def junit_report(summary: RunSummary, run_info: dict[str, Any]) -> str:
    """The results as JUnit XML: one testsuite, one testcase per job."""
    import xml.etree.ElementTree as ET

    counts = summary.counts()
    suite = ET.Element(
        "testsuite",
        name="orchestrate",
        tests=str(len(summary.results)),
        failures=str(sum(counts.get(status, 0) for status in _FAILURES)),
        errors="0",
        skipped=str(sum(counts.get(status, 0) for status in _NOT_RUN)),
        time=f"{summary.elapsed:.3f}",
    )
    # The JUnit schema's timestamp has neither fraction nor zone (it is UTC by convention).
    started = iso_utc(run_info.get("started"), timespec="seconds", suffix="")
    if started:
        suite.set("timestamp", xml_safe(started))
    for result in summary.results:
        suite.append(_junit_case(result))
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _junit_case(result: JobResult) -> ET.Element:
    import xml.etree.ElementTree as ET

    case = ET.Element(
        "testcase",
        classname="orchestrate",
        name=xml_safe(result.name),
        time=f"{result.duration or 0.0:.3f}",
    )
    message = xml_safe(_outcome_text(result))
    if result.status in _FAILURES:
        failure = ET.SubElement(case, "failure", message=message, type=result.status.value)
        failure.text = xml_safe(result.tail)
    elif result.status in _NOT_RUN:
        ET.SubElement(case, "skipped", message=message)
    elif result.status is Status.ALLOWED:
        # CI should stay green for an allowed failure, yet the failure must be visible.
        note = ET.SubElement(case, "system-out")
        note.text = xml_safe(f"allowed to fail: {_outcome_text(result)}\n{result.tail}")
    return case


def _outcome_text(result: JobResult) -> str:
    """A short why: the reason if given, else how the process ended."""
    if result.reason:
        return result.reason
    if result.status is Status.TIMEOUT:
        return "timed out"
    if result.signal is not None:
        return f"killed by {result.signal_name}"
    if result.exit_code is not None:
        return f"exit code {result.exit_code}"
    return str(result.status)


# -- the job graph --------------------------------------------------------------------------


def render_graph(jobfile: JobFile, fmt: str, names: Iterable[str] | None = None) -> str:
    """The job DAG (or the part of it `names` selects) as Graphviz `dot` or `mermaid`,
    edges pointing from a need to its job."""
    if names is not None:
        kept = set(names)
        jobfile = replace(jobfile, jobs={name: job for name, job in jobfile.jobs.items() if name in kept})
    if fmt == "dot":
        return _render_dot(jobfile)
    if fmt == "mermaid":
        return _render_mermaid(jobfile)
    raise ValueError(f"unknown graph format {fmt!r}; choose one of: {', '.join(GRAPH_FORMATS)}")


def _edges(jobfile: JobFile) -> list[tuple[str, str]]:
    # A need left out of the selection (--exclude) is drawn no more than it is run.
    return [(need, job.name) for job in jobfile.jobs.values() for need in job.needs if need in jobfile.jobs]


def _dot_id(name: str) -> str:
    # Names hold [ = , . - so every id is a quoted string; only \ and " need escaping there.
    escaped = terminal_safe(name).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _render_dot(jobfile: JobFile) -> str:
    lines = ["digraph orchestrate {", "  rankdir=LR;", "  node [shape=box];"]
    lines += [f"  {_dot_id(name)};" for name in jobfile.jobs]
    lines += [f"  {_dot_id(need)} -> {_dot_id(name)};" for need, name in _edges(jobfile)]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_label(name: str) -> str:
    # Mermaid reads #...; as an entity code, so # goes first; quotes and <> would end or
    # inject into the label.
    text = terminal_safe(name)
    for char, entity in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, entity)
    return f'"{text}"'


def _render_mermaid(jobfile: JobFile) -> str:
    ids: dict[str, str] = {}
    for name in [*jobfile.jobs, *(node for edge in _edges(jobfile) for node in edge)]:
        ids.setdefault(name, f"n{len(ids)}")
    lines = ["graph TD"]
    lines += [f"  {node_id}[{_mermaid_label(name)}]" for name, node_id in ids.items()]
    lines += [f"  {ids[need]} --> {ids[name]}" for need, name in _edges(jobfile)]
    return "\n".join(lines) + "\n"

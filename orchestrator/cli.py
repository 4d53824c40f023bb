"""The command line: parse arguments, run the pipeline steps, turn outcomes into exit codes."""

from __future__ import annotations

import argparse
import os
import sys

from orchestrator import __version__
from orchestrator.errors import JobFileError, UsageError
from orchestrator.model import parse_duration
from orchestrator.options import FailurePolicy, OutputMode, ProgressMode, Schedule, values

EXIT_USAGE = 2
DEFAULT_TABLE_FORMAT = "simple"


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (try 30s, 5m, 1h30m, 250ms)") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def process_count(text: str) -> int:
    return (os.cpu_count() or 1) if text == "auto" else positive_int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrate", description="Run a YAML file of shell jobs in parallel."
    )
    parser.add_argument("--version", action="version", version=f"orchestrate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the named jobs and what they need (all jobs if none)")
    run.add_argument("file", metavar="FILE")
    run.add_argument("targets", nargs="*", metavar="JOB")
    run.add_argument(
        "-j", "--jobs", type=positive_int, help="at most N jobs at once (default: the CPU count)"
    )
    failure = run.add_mutually_exclusive_group()
    failure.add_argument(
        "-k",
        "--keep-going",
        action="store_true",
        help="after a failure, keep starting jobs that do not depend on it",
    )
    failure.add_argument(
        "--fail-fast", action="store_true", help="after a failure, terminate running jobs at once"
    )
    run.add_argument(
        "-t",
        "--tag",
        action="append",
        default=[],
        help="only jobs with this tag, and what they need (repeatable)",
    )
    run.add_argument(
        "-n", "--dry-run", action="store_true", help="print the jobs that would run, in order; run nothing"
    )
    run.add_argument("--timeout", type=duration, help="limit for the whole run (exit 124 when it expires)")
    run.add_argument(
        "--kill-grace", type=duration, default=5.0, help="between SIGTERM and SIGKILL (default 5s)"
    )
    run.add_argument(
        "-o",
        "--output",
        choices=values(OutputMode),
        default="grouped",
        help="grouped (each job's output whole when it ends), stream (live, prefixed), failed, none",
    )
    run.add_argument(
        "--progress",
        choices=values(ProgressMode),
        default="auto",
        help="tty (a status line), lines (a line per job start and end on stderr), none; "
        "auto: tty on a terminal, lines when CI is set",
    )
    run.add_argument(
        "--schedule",
        choices=values(Schedule),
        default="critical",
        help="which ready job starts first: critical (the longest expected chain of work after it, "
        "from earlier runs' durations; by depth on a first run), file (the first ready, as make)",
    )
    run.add_argument("--report", choices=("table", "none"), default="table")
    run.add_argument(
        "--table-format", default=DEFAULT_TABLE_FORMAT, help="any tabulate format (default simple)"
    )
    run.add_argument(
        "--report-file",
        action="append",
        default=[],
        metavar="PATH",
        help="also write results as .json or .xml (JUnit); repeatable",
    )
    run.add_argument("--log-dir", help="where each job's output goes (default .orchestrate/logs beside FILE)")
    run.add_argument(
        "--processes", type=process_count, default=1, metavar="N|auto", help="run jobs in N worker processes"
    )
    run.add_argument(
        "--resume", action="store_true", help="rerun only the jobs that did not succeed last time"
    )
    run.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no table unless something failed; only failed jobs' output",
    )
    run.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the report (auto: on a terminal, unless NO_COLOR is set)",
    )

    validate = commands.add_parser(
        "validate", help="check the file; exit 0, or 2 with file:line:col: message"
    )
    validate.add_argument("file", metavar="FILE")

    listing = commands.add_parser("list", help="table of jobs: name, needs, resources, tags, description")
    listing.add_argument("file", metavar="FILE")
    listing.add_argument("--table-format", default=DEFAULT_TABLE_FORMAT)

    graph = commands.add_parser("graph", help="the DAG as Graphviz dot or mermaid")
    graph.add_argument("file", metavar="FILE")
    graph.add_argument("--format", choices=("dot", "mermaid"), default="dot")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Job names may come after options (`run FILE -j 2 build`): argparse leaves them over.
    if args.command == "run" and not any(word.startswith("-") for word in extra):
        args.targets += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return COMMANDS[args.command](args)
    except JobFileError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    except UsageError as error:
        print(f"orchestrate: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def load(path: str):
    from orchestrator.loader import load_for_process

    return load_for_process(path)


def cmd_validate(args) -> int:
    jobfile = load(args.file)
    print(f"{args.file}: {len(jobfile.jobs)} jobs, ok")
    return 0


def cmd_list(args) -> int:
    from orchestrator.report import render_job_list

    print(render_job_list(load(args.file), _table_format(args.table_format)))
    return 0


def cmd_graph(args) -> int:
    from orchestrator.report import render_graph

    print(render_graph(load(args.file), args.format))
    return 0


def cmd_run(args) -> int:
    from orchestrator.run import OutputAbandoned, RunRequest, run

    if args.report_file or args.table_format != DEFAULT_TABLE_FORMAT:  # else spare importing tabulate
        from orchestrator.report import report_extension

        _table_format(args.table_format)
        for path in args.report_file:
            _checked(report_extension, path)
    request = RunRequest(
        file=args.file,
        targets=args.targets,
        tags=args.tag,
        jobs=args.jobs,
        policy=FailurePolicy.KEEP_GOING
        if args.keep_going
        else FailurePolicy.FAIL_FAST
        if args.fail_fast
        else FailurePolicy.STOP,
        dry_run=args.dry_run,
        timeout=args.timeout,
        kill_grace=args.kill_grace,
        output=OutputMode(args.output),
        progress=ProgressMode(args.progress),
        schedule=Schedule(args.schedule),
        report=args.report,
        table_format=args.table_format,
        report_files=args.report_file,
        log_dir=args.log_dir,
        processes=args.processes,
        resume=args.resume,
        quiet=args.quiet,
        color=args.color,
    )
    try:
        return run(request)
    except OutputAbandoned as abandoned:
        # stdout's reader stopped reading: the interpreter's final flush would wait forever.
        sys.stderr.flush()
        os._exit(abandoned.exit_code)


def _table_format(name: str) -> str:
    from orchestrator.report import check_table_format

    _checked(check_table_format, name)
    return name


def _checked(check, value) -> None:
    """Run one of report's checks on a command-line value; its ValueError is a usage error."""
    try:
        check(value)
    except ValueError as error:
        raise UsageError(str(error)) from None


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "list": cmd_list, "graph": cmd_graph}


if __name__ == "__main__":
    sys.exit(main())

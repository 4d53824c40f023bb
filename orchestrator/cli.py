"""The command line: parse arguments, run the pipeline steps, turn outcomes into exit codes."""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from orchestrator import __version__, discovery
from orchestrator.errors import JobFileError, UsageError
from orchestrator.model import JobFile, parse_duration
from orchestrator.options import FailurePolicy, OutputMode, ProgressMode, Schedule, values

EXIT_USAGE = 2
DEFAULT_TABLE_FORMAT = "simple"
# make's command-line variables: NAME=VALUE among the job names of `run`.
VARIABLE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)", re.DOTALL)

FILE_HELP = f"""\
the job file:
  -f FILE names it; -f - reads it from stdin (relative paths then start in the current folder).
  Otherwise the first of {", ".join(discovery.JOB_FILE_NAMES)}
  in the current folder or the nearest parent folder that has one (as go-task and just do).
  The older form `orchestrate COMMAND FILE ...` works too: a first argument ending in
  .yml/.yaml is the job file.
"""
CHECK_EXIT_CODES = """\
exit codes:
  0    the job file is valid
  2    the job file or the command line is invalid (one line: file:line:col: message)
"""
STATE_EXIT_CODES = """\
exit codes:
  0    shown
  2    no such run on record, or the command line is invalid
"""
RUN_EXIT_CODES = """\
exit codes:
  0    every selected job succeeded (or was allowed to fail)
  1    a job failed or timed out
  2    the job file or the command line is invalid; nothing ran
  124  the run's --timeout expired
  129  stopped by SIGHUP; 130 interrupted (Ctrl-C); 143 stopped by SIGTERM
"""
TOP_EPILOG = f"""\
examples:
  orchestrate run                     run every job of ./orchestrate.yaml or ./jobs.yaml (or a parent's)
  orchestrate run test -j4            run job test and what it needs, 4 jobs at once
  orchestrate run -f ci.yaml --tag slow MODE=release
  orchestrate list --tag slow         the jobs a selection would run, with their commands
  orchestrate show 'build[ARCH=arm64]'
  orchestrate completion bash > ~/.local/share/bash-completion/completions/orchestrate

{FILE_HELP}
{RUN_EXIT_CODES}"""
RUN_EPILOG = f"""\
examples:
  orchestrate run                         every job of the job file found from here
  orchestrate run build test              these jobs and everything they need
  orchestrate run 'build[ARCH=arm64]'     one expansion of a matrix job (quote the brackets)
  orchestrate run --tag ci --exclude slow-e2e
  orchestrate run deploy ENV=staging      ENV=staging in every job's environment
  orchestrate run jobs.yaml test          the older form: the file first

variables:
  NAME=VALUE words set NAME in every job's environment, above the file's dotenv, env,
  defaults.env and a job's env, below matrix values and ORCHESTRATE_*.

{FILE_HELP}
{RUN_EXIT_CODES}"""


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


def _subcommand(
    commands: Any, name: str, summary: str, epilog: str, description: str | None = None
) -> argparse.ArgumentParser:
    return commands.add_parser(  # type: ignore[no-any-return]
        name,
        help=summary,
        description=description or summary[0].upper() + summary[1:] + ".",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--file",
        metavar="FILE",
        help="the job file (- reads it from stdin); default: found from the current folder up",
    )


def _add_selection(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "targets",
        nargs="*",
        metavar="JOB",
        help=f"jobs to {what}, with what they need (a matrix name means every expansion; default: all jobs)",
    )
    parser.add_argument(
        "-t",
        "--tag",
        action="append",
        default=[],
        help="only jobs with this tag, and what they need (repeatable)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="JOB",
        help="leave this job out and treat it as done for the jobs that need it, like make -o (repeatable)",
    )
    parser.add_argument(
        "--exclude-tag",
        action="append",
        default=[],
        metavar="TAG",
        help="leave out the jobs with this tag, as --exclude does (repeatable)",
    )


def executor_target(text: str) -> str:
    if text == "local":
        return text
    from orchestrator.executors.dask import parse_target

    try:
        parse_target(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line's parser; for `command` "run", only run's: the others' parsers
    cost every run ~3.5 ms, and a run's usage and errors are its own parser's anyway."""
    parser = argparse.ArgumentParser(
        prog="orchestrate",
        description="Run a YAML file of shell jobs in parallel.",
        epilog=TOP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"orchestrate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands)
    if command == "run":
        return parser
    _add_state_commands(commands)

    validate = _subcommand(
        commands,
        "validate",
        "check the job file; exit 0, or 2 with file:line:col: message",
        "examples:\n  orchestrate validate\n  orchestrate validate ci.yaml\n"
        f"\n{FILE_HELP}\n{CHECK_EXIT_CODES}",
    )
    validate.add_argument("path", nargs="?", metavar="FILE", help="the job file (same as -f FILE)")
    _add_file(validate)

    listing = _subcommand(
        commands,
        "list",
        "table of jobs: name, command, needs, resources, tags, description",
        "examples:\n  orchestrate list\n  orchestrate list test --tag slow --table-format github\n"
        f"  orchestrate list --names\n\n{FILE_HELP}\n{CHECK_EXIT_CODES}",
    )
    _add_file(listing)
    _add_selection(listing, "list")
    listing.add_argument(
        "--table-format", default=DEFAULT_TABLE_FORMAT, help="any tabulate format (default simple)"
    )
    listing.add_argument("--names", action="store_true", help="only the job names, one a line")

    graph = _subcommand(
        commands,
        "graph",
        "the DAG as Graphviz dot or mermaid",
        "examples:\n  orchestrate graph | dot -Tsvg > jobs.svg\n"
        "  orchestrate graph package --format mermaid\n"
        f"\n{FILE_HELP}\n{CHECK_EXIT_CODES}",
    )
    _add_file(graph)
    _add_selection(graph, "draw")
    graph.add_argument(
        "--format", choices=("dot", "mermaid"), default="dot", help="Graphviz dot (default) or mermaid"
    )

    show = _subcommand(
        commands,
        "show",
        "one job fully resolved: command, shell, cwd, environment, needs, limits",
        "examples:\n  orchestrate show test\n  orchestrate show 'build[ARCH=arm64]' MODE=release\n"
        "  orchestrate show build          every expansion of matrix job build\n"
        f"\n{FILE_HELP}\n{CHECK_EXIT_CODES}",
    )
    _add_file(show)
    show.add_argument(
        "targets",
        nargs="*",
        metavar="JOB",
        help="the jobs to show (a matrix name shows every expansion); NAME=VALUE as for run",
    )

    explain = _subcommand(
        commands,
        "explain",
        "why each job would run (or that it is up to date), one line a job",
        "examples:\n  orchestrate explain\n  orchestrate explain app MODE=release\n\n"
        "Reasons: never ran, last run failed, no outputs: always runs, output PATH missing,\n"
        "output PATH changed since it was made, input PATH changed, input added: PATH,\n"
        "input removed: PATH, input missing: PATH, command changed, env NAME changed,\n"
        "needs JOB (its outputs changed), needs JOB (it would run).\n"
        f"\n{FILE_HELP}\n{CHECK_EXIT_CODES}",
    )
    _add_file(explain)
    _add_selection(explain, "explain")
    _add_state_dir(explain)

    schema = _subcommand(
        commands,
        "schema",
        "print a JSON Schema (draft 2020-12) of the job file, for editors",
        "examples:\n  orchestrate schema > orchestrate.schema.json\n"
        "  then, as the first line of the job file:\n"
        "  # yaml-language-server: $schema=orchestrate.schema.json\n\nexit codes:\n  0    always\n",
    )
    del schema  # no arguments

    completion = _subcommand(
        commands,
        "completion",
        "print a shell completion script (subcommands, options, job names, tags)",
        "examples:\n  source <(orchestrate completion bash)      # in ~/.bashrc\n"
        "  orchestrate completion zsh > ~/.zfunc/_orchestrate\n"
        "  orchestrate completion fish > ~/.config/fish/completions/orchestrate.fish\n\n"
        "Job names and tags come from the job file found at the time of completion.\n\n"
        "exit codes:\n  0    the script was printed\n",
    )
    completion.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell to complete in")

    # Hidden (no help=): the completion scripts call it with the words typed so far.
    complete = commands.add_parser("__complete")
    complete.add_argument("words", nargs=argparse.REMAINDER)
    return parser


def _add_run(commands: Any) -> None:
    run = _subcommand(commands, "run", "run the named jobs and what they need (all jobs if none)", RUN_EPILOG)
    _add_file(run)
    _add_selection(run, "run")
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
        "-n",
        "--dry-run",
        action="store_true",
        help="print the jobs that would run, in order (JOB: (up-to-date) if it need not); run nothing",
    )
    run.add_argument(
        "-B", "--force", action="store_true", help="run the selected jobs even when they are up to date"
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
        help="grouped: each job's output whole when it ends (default); stream: live, lines "
        "prefixed [job]; failed: only failed jobs' output; none",
    )
    run.add_argument(
        "--progress",
        choices=values(ProgressMode),
        default="auto",
        help="tty: a status line redrawn in place; lines: a line per job start and end on stderr; "
        "none; auto (default): tty on a terminal, lines when CI is set",
    )
    run.add_argument(
        "--report",
        choices=("table", "none"),
        default="table",
        help="the summary table after the run (default) or none",
    )
    run.add_argument(
        "--schedule",
        choices=values(Schedule),
        default="critical",
        help="which ready job starts first: critical (the longest expected chain of work after it, "
        "from earlier runs' durations; by depth on a first run), file (the first ready, as make)",
    )
    run.add_argument(
        "--table-format", default=DEFAULT_TABLE_FORMAT, help="any tabulate format (default simple)"
    )
    run.add_argument(
        "--report-file",
        action="append",
        default=[],
        metavar="PATH",
        help="also write results as .json, .xml (JUnit) or .html (a page with a Gantt chart); repeatable",
    )
    run.add_argument(
        "--trace",
        metavar="FILE.json",
        help="write the run in Chrome's trace-event format (Perfetto, chrome://tracing)",
    )
    run.add_argument(
        "--log-dir", help="where each job's output goes (default .orchestrate/logs/FILE/ beside FILE)"
    )
    _add_state_dir(run)
    run.add_argument(
        "--processes", type=process_count, default=1, metavar="N|auto", help="run jobs in N worker processes"
    )
    run.add_argument(
        "--executor",
        type=executor_target,
        default="local",
        metavar="local|dask://HOST:PORT|dask-local:N",
        help="where attempts run: here, on a Dask cluster, or on N local Dask workers",
    )
    run.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME",
        help="pass this variable of yours to remote jobs (repeatable; local jobs get them all)",
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


def _add_state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir", metavar="DIR", help="the run state folder (default .orchestrate beside FILE)"
    )


def _add_state_commands(commands: Any) -> None:
    history = _subcommand(
        commands,
        "history",
        "a table of the job file's recent runs: id, start, duration, selection, counts, exit code",
        "examples:\n  orchestrate history\n  orchestrate history -f ci.yaml --limit 5\n"
        f"\n{FILE_HELP}\n{STATE_EXIT_CODES}",
    )
    _add_file(history)
    _add_state_dir(history)
    history.add_argument("--limit", type=positive_int, default=20, help="how many runs (default 20)")
    history.add_argument(
        "--table-format", default=DEFAULT_TABLE_FORMAT, help="any tabulate format (default simple)"
    )

    report = _subcommand(
        commands,
        "report",
        "a past run's table again (the latest by default), and its report files",
        "examples:\n  orchestrate report\n  orchestrate report --run 3f2a --report-file run.html\n"
        f"\n{FILE_HELP}\n{STATE_EXIT_CODES}",
    )
    _add_file(report)
    _add_state_dir(report)
    report.add_argument(
        "--run", metavar="ID", help="the run (an id from `orchestrate history`, or its start)"
    )
    report.add_argument(
        "--report-file",
        action="append",
        default=[],
        metavar="PATH",
        help="also write it as .json, .xml (JUnit) or .html (a page with a Gantt chart); repeatable",
    )
    report.add_argument(
        "--table-format", default=DEFAULT_TABLE_FORMAT, help="any tabulate format (default simple)"
    )
    report.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the report (auto: on a terminal, unless NO_COLOR is set)",
    )


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's own parser, so its errors print its own usage."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def parse(argv: list[str] | None) -> argparse.Namespace:
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(words[0] if words else None)
    if not words:  # bare `orchestrate`: what it can do, as git does
        parser.print_help(sys.stderr)
        parser.exit(EXIT_USAGE)
    args, extra = parser.parse_known_args(argv)
    own = subparsers(parser)[args.command]
    takes_jobs = hasattr(args, "targets")
    # Job names may come after options (`run -j 2 build`): argparse leaves them over.
    if extra and (not takes_jobs or any(word.startswith("-") and word != "-" for word in extra)):
        own.error(f"unrecognized arguments: {' '.join(extra)}")
    if takes_jobs:
        args.targets += extra
    args.parser = own
    args.argv = list(words)
    return args


def main(argv: list[str] | None = None) -> int:
    # Start-up makes only what lives as long as the command (modules, the parser, the job
    # file): the cyclic GC's 40-odd passes over it cost a short run 7-10 ms. A run turns it
    # back on once the engine is imported (run.run); other commands are short.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        args = parse(argv)
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
    finally:
        if gc_was_enabled:
            gc.enable()


def split_variables(words: list[str]) -> tuple[list[str], dict[str, str]]:
    """Job names and make-style NAME=VALUE words (a matrix selector's `=` is inside brackets)."""
    names, variables = [], {}
    for word in words:
        match = VARIABLE.fullmatch(word)
        if match:
            variables[match["name"]] = match["value"]
        else:
            names.append(word)
    return names, variables


def source_and_targets(args: argparse.Namespace) -> tuple[discovery.JobSource, list[str]]:
    return discovery.resolve(args.file, list(getattr(args, "targets", [])))


def load(source: discovery.JobSource, variables: dict[str, str] | None = None) -> JobFile:
    from orchestrator.loader import load_for_process

    return load_for_process(source.path, variables, source.data)


def selected(args: argparse.Namespace, jobfile: JobFile, targets: list[str]) -> list[str]:
    from orchestrator.graph import select

    return select(jobfile.jobs, targets, args.tag, args.exclude, args.exclude_tag)


def cmd_validate(args: argparse.Namespace) -> int:
    if args.path is not None and args.file is not None:
        args.parser.error(f"give the job file once: -f {args.file} or {args.path}")
    source = discovery.resolve(args.file if args.path is None else args.path, [])[0]
    jobfile = load(source)
    print(f"{source.path}: {len(jobfile.jobs)} jobs, ok")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from orchestrator.report import render_job_list

    source, targets = source_and_targets(args)
    jobfile = load(source)
    names = selected(args, jobfile, targets)
    if args.names:
        print("\n".join(names))
        return 0
    print(render_job_list(jobfile, _table_format(args.table_format), names))
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from orchestrator.report import render_graph

    source, targets = source_and_targets(args)
    jobfile = load(source)
    print(render_graph(jobfile, args.format, selected(args, jobfile, targets)), end="")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from orchestrator.graph import select
    from orchestrator.report import render_job

    source, words = source_and_targets(args)
    targets, variables = split_variables(words)
    if not targets:
        args.parser.error("name the job to show, e.g. orchestrate show build (orchestrate list shows them)")
    jobfile = load(source, variables)
    names = select(jobfile.jobs, targets, with_needs=False)
    print("\n\n".join(render_job(jobfile, jobfile.jobs[name]) for name in names))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from orchestrator.graph import order
    from orchestrator.report import terminal_safe
    from orchestrator.run import explain

    source, words = source_and_targets(args)
    targets, variables = split_variables(words)
    jobfile = load(source, variables)
    names = order(jobfile.jobs, selected(args, jobfile, targets))
    for name, reason in explain(jobfile, names, args.state_dir).items():
        print(f"{terminal_safe(name)}: {terminal_safe(reason or 'up to date')}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    import json

    from orchestrator.schema import job_file_schema

    print(json.dumps(job_file_schema(), indent=2))
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    from orchestrator.completion import script

    print(script(args.shell), end="")
    return 0


def cmd_complete(args: argparse.Namespace) -> int:
    from orchestrator.completion import candidates

    words = args.words[1:] if args.words[:1] == ["--"] else args.words
    print("\n".join(candidates(build_parser(), words)))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from orchestrator.options import RunRequest
    from orchestrator.run import OutputAbandoned, run

    source, words = source_and_targets(args)
    targets, variables = split_variables(words)
    if args.report_file or args.table_format != DEFAULT_TABLE_FORMAT:  # else spare importing tabulate
        from orchestrator.report import report_extension

        _table_format(args.table_format)
        for path in args.report_file:
            _checked(report_extension, path)
    if args.executor != "local" and args.processes > 1:
        raise UsageError(
            "--processes runs jobs in local worker processes; it does not combine with --executor"
        )
    request = RunRequest(
        file=source.path,
        data=source.data,
        targets=targets,
        tags=args.tag,
        exclude=args.exclude,
        exclude_tags=args.exclude_tag,
        variables=variables,
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
        trace=args.trace,
        log_dir=args.log_dir,
        state_dir=args.state_dir,
        arguments=list(args.argv),
        processes=args.processes,
        resume=args.resume,
        quiet=args.quiet,
        color=args.color,
        executor=args.executor,
        forward_env=args.env,
        force=args.force,
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


def _checked(check: Callable[[str], object], value: str) -> None:
    """Run one of report's checks on a command-line value; its ValueError is a usage error."""
    try:
        check(value)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _state_store(args: argparse.Namespace) -> Any:
    from orchestrator import state

    source = discovery.resolve(args.file, [])[0]
    directory = state.state_directory(os.path.dirname(os.path.abspath(source.path)), args.state_dir)
    return source, state.StateStore(directory, source.path, threaded=False)  # no hub to protect here


def cmd_history(args: argparse.Namespace) -> int:
    import time

    from tabulate import tabulate

    _table_format(args.table_format)
    source, store = _state_store(args)
    try:
        records = store.runs(args.limit)
    finally:
        store.close()
    if not records:
        print(f"no runs of {source.path} on record")
        return 0
    rows = []
    for record in records:
        duration = "-" if record.end is None else f"{record.end - record.start:.1f}s"
        counts = ", ".join(f"{n} {status}" for status, n in sorted(record.counts.items()))
        exit_code = record.exit_code if record.end is not None else "running" if record.running else "killed"
        selection = " ".join(record.selection)
        if len(selection) > 40:
            selection = selection[:37] + "..."
        start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.start))
        rows.append([record.run_id, start, duration, selection, counts, exit_code])
    headers = ["run", "start", "duration", "jobs", "results", "exit"]
    print(tabulate(rows, headers, tablefmt=args.table_format, disable_numparse=True))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from orchestrator import terminal
    from orchestrator.report import render_table, report_extension, write_report_file

    _table_format(args.table_format)
    for path in args.report_file:
        _checked(report_extension, path)
    source, store = _state_store(args)
    try:
        found = store.summary(args.run)
    finally:
        store.close()
    if found is None:
        which = f"run {args.run}" if args.run else "run"
        raise UsageError(f"no {which} of {source.path} on record; see orchestrate history")
    record, summary = found
    needs: dict[str, Any] = {}
    try:  # for the critical path; the file may have changed since, or not load at all
        jobs = load(source).jobs
        needs = {result.name: jobs[result.name].needs for result in summary.results if result.name in jobs}
    except JobFileError:
        pass
    run_info = {"job_file": record.job_file, "run_id": summary.run_id, "started": summary.started}
    # A run with no end on record has no exit code yet (or never will): not its partial one.
    ended = record.end is not None
    run_info["exit_code"] = (
        (record.exit_code if record.exit_code is not None else summary.exit_code) if ended else None
    )
    for path in args.report_file:
        write_report_file(path, summary, run_info, needs)
    color = terminal.color_enabled(args.color, sys.stdout)
    print(render_table(summary, args.table_format, color=color, needs=needs))
    if not ended:
        state = "is still running" if record.running else "was killed before it ended"
        finished = f"{len(summary.results)} of {len(record.selection)} jobs finished"
        print(f"run {record.run_id} {state}: {finished}{' so far' if record.running else ''}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "history": cmd_history,
    "report": cmd_report,
    "validate": cmd_validate,
    "list": cmd_list,
    "graph": cmd_graph,
    "show": cmd_show,
    "schema": cmd_schema,
    "explain": cmd_explain,
    "completion": cmd_completion,
    "__complete": cmd_complete,
}


if __name__ == "__main__":
    sys.exit(main())

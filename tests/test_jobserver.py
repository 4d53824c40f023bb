"""The jobserver client and server on pipes and fifos made here, without make."""

import os

import gevent
import pytest
from fakes import FakeExecutor, jobs_of, make_engine

from orchestrator import jobserver
from orchestrator.jobserver import JobserverUnavailable, connect, job_slots, reopen_in_worker
from orchestrator.makeflags import parse_makeflags
from orchestrator.model import Job
from orchestrator.results import Status


def pipe_with(tokens: bytes):
    read_fd, write_fd = os.pipe()
    os.write(write_fd, tokens)
    return read_fd, write_fd


def take_all(fd: int) -> bytes:
    """Everything in the pipe now, read through a descriptor of our own (never blocks)."""
    reader = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK)
    try:
        return os.read(reader, 4096)
    except BlockingIOError:
        return b""
    finally:
        os.close(reader)


def closed_fd() -> int:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


def hold_all(gate, count, seconds=0.02):
    """`count` greenlets each hold a slot for a moment; returns the most held at once."""
    state = {"now": 0, "peak": 0}

    def work():
        with gate.hold():
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            gevent.sleep(seconds)
            state["now"] -= 1

    gevent.joinall([gevent.spawn(work) for _ in range(count)], raise_error=True)
    return state["peak"]


@pytest.mark.parametrize(
    "text, dry_run, auth",
    [
        ("", False, None),
        (" -j3 --jobserver-auth=3,4", False, "3,4"),
        ("n -j3 --jobserver-auth=3,4", True, "3,4"),
        ("kn -j3 --jobserver-auth=3,4", True, "3,4"),
        ("k -j3 --jobserver-auth=3,4", False, "3,4"),
        (" --no-print-directory -j2 --jobserver-auth=3,4", False, "3,4"),  # an `n` in a long option
        (" -j2 --jobserver-fds=5,6", False, "5,6"),  # make before 4.2
        (" -j2 --jobserver-auth=fifo:/tmp/GMfifo1 --jobserver-auth=7,8", False, "7,8"),  # the last counts
        (" -j2 --jobserver-auth=7,8 -- X=--jobserver-auth=1,2", False, "7,8"),  # overrides are not options
        (" -j2 --jobserver-auth=fifo:/tmp/GMfifo1", False, "fifo:/tmp/GMfifo1"),
    ],
)
def test_parse_makeflags(text, dry_run, auth):
    flags = parse_makeflags(text)
    assert (flags.dry_run, flags.auth) == (dry_run, auth)


def test_pipe_gate_runs_tokens_plus_one_and_returns_the_same_bytes():
    read_fd, write_fd = pipe_with(b"ab")
    gate, fds = connect(f"{read_fd},{write_fd}")
    try:
        assert fds == (read_fd, write_fd)
        assert hold_all(gate, 10) == 3
        assert sorted(take_all(read_fd)) == sorted(b"ab")
        assert gate.tokens_held == 0 and gate.implicit_free
        assert os.get_blocking(read_fd) and os.get_blocking(write_fd)  # the shared pipe is untouched
    finally:
        gate.close()
        os.close(read_fd)
        os.close(write_fd)


def test_a_token_from_another_process_wakes_a_waiter():
    read_fd, write_fd = pipe_with(b"")
    gate, _ = connect(f"{read_fd},{write_fd}")
    got = []

    def second():
        with gate.hold():
            got.append("second")

    try:
        with gate.hold():  # the implicit slot
            waiter = gevent.spawn(second)
            gevent.sleep(0.05)
            assert got == []
            os.write(write_fd, b"x")  # a sibling recipe finished
            waiter.join(timeout=5)
            assert got == ["second"]
        assert take_all(read_fd) == b"x"
    finally:
        gate.close()
        os.close(read_fd)
        os.close(write_fd)


def test_a_freed_implicit_slot_wakes_a_waiter():
    gate = jobserver.TokenGate()  # no jobserver: the implicit slot alone
    order = []

    def job(name):
        with gate.hold():
            order.append(f"start {name}")
            gevent.sleep(0.02)
            order.append(f"end {name}")

    gevent.joinall([gevent.spawn(job, n) for n in "abc"], timeout=5)
    assert order == ["start a", "end a", "start b", "end b", "start c", "end c"]


def test_killed_holders_and_waiters_lose_no_token():
    read_fd, write_fd = pipe_with(b"t")
    gate, _ = connect(f"{read_fd},{write_fd}")

    def hold_forever():
        with gate.hold():
            gevent.sleep(60)

    try:
        holders = [gevent.spawn(hold_forever) for _ in range(4)]  # implicit, the token, two waiting
        gevent.sleep(0.05)
        assert gate.in_use == 2 and take_all(read_fd) == b""
        gevent.killall(holders[2:])  # the waiters
        gevent.killall(holders[:2])  # the holders
        assert take_all(read_fd) == b"t"
        assert gate.implicit_free and gate.in_use == 0 and gate.tokens_held == 0
    finally:
        gate.close()
        os.close(read_fd)
        os.close(write_fd)


def test_fifo_gate(tmp_path):
    path = str(tmp_path / "fifo")
    os.mkfifo(path)
    keep = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # keeps the tokens alive between openers
    os.write(keep, b"++")
    gate, fds = connect(f"fifo:{path}")
    try:
        assert fds == ()
        assert hold_all(gate, 8) == 3
        assert os.read(keep, 100) == b"++"
    finally:
        gate.close()
        os.close(keep)


@pytest.mark.parametrize(
    "auth, words",
    [
        ("{closed},{closed}", ["closed", "`+`", "$(MAKE)"]),
        ("{file},{file}", ["not make's jobserver pipe", "`+`"]),
        ("-1,-1", ["no descriptors"]),
        ("fifo:/nonexistent/fifo", ["cannot open the fifo /nonexistent/fifo"]),
        ("banana", ["cannot read"]),
    ],
)
def test_unusable_jobserver_warns_once_and_runs_one_at_a_time(auth, words):
    regular = os.open(os.devnull, os.O_RDONLY)
    auth = auth.format(closed=closed_fd(), file=regular)
    warnings = []
    try:
        with pytest.raises(JobserverUnavailable):
            connect(auth)
        slots = job_slots(None, 4, 10, parse_makeflags(f" -j4 --jobserver-auth={auth}"), warn=warnings.append)
        try:
            assert len(warnings) == 1 and "\n" not in warnings[0]
            assert all(word in warnings[0] for word in words), warnings[0]
            assert not slots.client and slots.pool_size == 1
            assert hold_all(slots.gate, 4) == 1
        finally:
            slots.close()
    finally:
        os.close(regular)


def test_a_pipe_of_two_different_pipes_is_refused():
    first, second = os.pipe(), os.pipe()
    try:
        with pytest.raises(JobserverUnavailable, match="not one pipe"):
            connect(f"{first[0]},{second[1]}")
    finally:
        for fd in (*first, *second):
            os.close(fd)


def test_client_passes_makes_jobserver_through_and_lifts_the_pool():
    read_fd, write_fd = pipe_with(b"++")
    flags = parse_makeflags(f"k -j3 --jobserver-auth={read_fd},{write_fd}")
    slots = job_slots(None, 2, 50, flags)
    try:
        assert slots.client and slots.server is None
        assert slots.makeflags == flags.text and slots.pass_fds == (read_fd, write_fd)
        assert slots.pool_size == 50  # the jobserver is the limit, not the -j pool
    finally:
        slots.close()
        os.close(read_fd)
        os.close(write_fd)


def test_explicit_jobs_win_and_serve_our_own_jobserver():
    read_fd, write_fd = pipe_with(b"++")
    flags = parse_makeflags(f"k -j3 --jobserver-auth={read_fd},{write_fd} -- V=1")
    slots = job_slots(5, 2, 50, flags)
    try:
        assert not slots.client and slots.pool_size == 5
        server = slots.server
        assert slots.makeflags == (
            f"k -j5 --jobserver-auth=fifo:{server.path} "
            f"--jobserver-auth={server.read_fd},{server.write_fd} -- V=1"
        )
        assert parse_makeflags(slots.makeflags).auth == f"{server.read_fd},{server.write_fd}"
        assert slots.environment({"MAKEFLAGS": flags.text, "A": "1"}) == {
            "MAKEFLAGS": slots.makeflags,
            "A": "1",
        }
        assert hold_all(slots.gate, 12) == 5
        assert take_all(read_fd) == b"++"  # make's tokens never touched
    finally:
        slots.close()
        os.close(read_fd)
        os.close(write_fd)


def test_server_fills_slots_minus_one_and_removes_its_fifo():
    server = jobserver.Server(4)
    try:
        assert os.path.exists(server.path)
        assert take_all(server.read_fd) == b"+++"
    finally:
        server.close()
    assert not os.path.exists(server.path) and not os.path.exists(server.directory)


def test_server_fifo_and_pipe_form_are_one_pool():
    server = jobserver.Server(3)
    by_fifo, _ = connect(f"fifo:{server.path}")
    by_pipe, _ = connect(f"{server.read_fd},{server.write_fd}")
    try:
        taken = [by_fifo._read(), by_pipe._read()]
        assert taken == [b"+", b"+"]
        assert by_fifo._read() is None and by_pipe._read() is None  # both tokens are gone for both
        os.write(server.write_fd, b"".join(taken))
        assert take_all(server.read_fd) == b"++"
    finally:
        by_fifo.close()
        by_pipe.close()
        server.close()


def test_a_worker_reopens_the_jobserver_and_names_its_own_descriptors():
    slots = job_slots(3, 2, 10, parse_makeflags(" -k"))
    read_fd = write_fd = None
    try:
        (read_fd, write_fd), makeflags = reopen_in_worker(os.getpid(), slots.pass_fds, slots.makeflags)
        assert {read_fd, write_fd}.isdisjoint(slots.pass_fds)
        assert f"--jobserver-auth={read_fd},{write_fd}" in makeflags.split()
        assert f"--jobserver-auth=fifo:{slots.server.path}" in makeflags.split() and "-k" in makeflags.split()
        assert os.read(read_fd, 2) == b"++"  # the same two tokens the server holds
        os.write(write_fd, b"++")
        assert hold_all(slots.gate, 6) == 3
    finally:
        for fd in (read_fd, write_fd):
            if fd is not None:
                os.close(fd)
        slots.close()


def test_a_worker_that_cannot_reopen_the_pipe_drops_only_the_pipe_form():
    flags = " -j4 --jobserver-auth=fifo:/x --jobserver-auth=3,4"
    assert reopen_in_worker(2**22 + 1, (3, 4), flags) == ((), " -j4 --jobserver-auth=fifo:/x")


def test_without_a_jobserver_pipe_a_worker_keeps_makeflags():
    assert reopen_in_worker(os.getpid(), (), " -j4 --jobserver-auth=fifo:/x") == (
        (),
        " -j4 --jobserver-auth=fifo:/x",
    )


def job(name):
    return Job(name=name, run="true")


def test_engine_never_runs_more_than_the_jobserver_allows():
    read_fd, write_fd = pipe_with(b"++")
    gate, _ = connect(f"{read_fd},{write_fd}")
    executor = FakeExecutor(default_duration=0.01)
    jobs = jobs_of(*(job(f"j{i}") for i in range(30)))
    engine = make_engine(jobs, executor, jobs_limit=30, slots=gate)
    try:
        summary = engine.run()
        assert summary.exit_code == 0 and len(executor.started) == 30
        assert executor.peak == 3
        assert take_all(read_fd) == b"++"
    finally:
        gate.close()
        os.close(read_fd)
        os.close(write_fd)


@pytest.mark.parametrize("policy", ["stop", "fail-fast"])
def test_engine_gives_tokens_back_after_a_failure(policy):
    read_fd, write_fd = pipe_with(b"++")
    gate, _ = connect(f"{read_fd},{write_fd}")
    executor = FakeExecutor(durations={"bad": 0.02}, codes={"bad": 1}, default_duration=0.2)
    jobs = jobs_of(job("bad"), *(job(f"j{i}") for i in range(10)))
    engine = make_engine(jobs, executor, jobs_limit=11, policy=policy, slots=gate)
    try:
        summary = engine.run()
        statuses = {r.name: r.status for r in summary.results}
        assert statuses["bad"] == Status.FAILED and summary.exit_code == 1
        assert Status.CANCELLED in statuses.values()
        assert take_all(read_fd) == b"++" and gate.implicit_free
    finally:
        gate.close()
        os.close(read_fd)
        os.close(write_fd)


def test_the_jobserver_folder_is_private_and_made_even_where_tmpdir_cannot_be_written(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    made = jobserver._private_directory("orchestrate-jobserver-")
    assert os.path.dirname(made) == str(tmp_path) and os.path.basename(made).startswith(
        "orchestrate-jobserver-"
    )
    assert os.stat(made).st_mode & 0o777 == 0o700
    assert jobserver._private_directory("orchestrate-jobserver-") != made  # a new one each time
    monkeypatch.setenv("TMPDIR", "/proc")  # not even root can make a folder there
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile looks again, as in a fresh process
    elsewhere = jobserver._private_directory("orchestrate-jobserver-")
    try:
        assert os.path.isdir(elsewhere) and not elsewhere.startswith("/proc")
    finally:
        os.rmdir(elsewhere)

"""GNU make's jobserver: a client of make's job slots, and a server for nested makes.

Protocol (GNU make manual, "Job Slots"): every process in a jobserver owns one implicit
slot; each extra job needs a token, one byte read from a shared pipe or fifo, and must
write that same byte back when the job ends. `MAKEFLAGS` names the jobserver with
`--jobserver-auth=R,W` (two inherited descriptors; `--jobserver-fds=` before make 4.2)
or `--jobserver-auth=fifo:PATH` (make 4.4); the last one given counts.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import NamedTuple

import gevent
from gevent.event import Event
from gevent.lock import Semaphore

from orchestrator.makeflags import AUTH_OPTIONS, MakeFlags

TOKEN = b"+"
MAX_TOKENS = 4096  # a pipe holds 64 KiB; more tokens than this would block the filling write
NOT_RECURSIVE = "make did not mark the rule recursive: use `+` or `$(MAKE)` in the recipe"


class JobserverUnavailable(Exception):
    """MAKEFLAGS names a jobserver that cannot be used; the message says why."""


class TokenGate:
    """Job slots shared through a jobserver: the implicit slot first, then one token per
    extra running job, written back byte for byte when that job ends, however it ends.

    `reader` is an open file description of our own on the jobserver's pipe, made
    non-blocking: the descriptors make and its other children share keep their flags.
    Greenlets wanting a slot line up (first come, first served); only the first waits on
    the pipe, through the gevent hub, so the process never blocks. With no reader there is
    only the implicit slot: one job at a time.
    """

    def __init__(self, reader: int | None = None, writer: int | None = None, owned: tuple[int, ...] = ()):
        self.reader = reader
        self.writer = writer
        self.owned = owned  # descriptors to close with the gate
        self.implicit_free = True
        self.tokens_held = 0
        self.in_use = 0
        self.peak = 0
        self._turn = Semaphore(1)
        self._wake = Event()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold one job slot for the duration of the block."""
        token = self._acquire()  # no greenlet switch between here and `try`: a kill cannot lose it
        self.in_use += 1
        self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            self.in_use -= 1
            self._release(token)

    def _acquire(self) -> bytes | None:
        with self._turn:
            while True:
                if self.implicit_free:
                    self.implicit_free = False
                    return None
                token = self._read()
                if token is not None:
                    self.tokens_held += 1
                    return token
                self._wait()

    def _read(self) -> bytes | None:
        if self.reader is None:
            return None
        try:
            token = os.read(self.reader, 1)
        except BlockingIOError:
            return None  # another process took it first
        if not token:  # every writer is gone: make has ended; only the implicit slot is left
            self.reader = None
            return None
        return token

    def _wait(self) -> None:
        """Until the pipe is readable or our implicit slot is free again."""
        self._wake.clear()
        watcher = None
        if self.reader is not None:
            watcher = gevent.get_hub().loop.io(self.reader, 1)
            watcher.start(self._wake.set)
        try:
            self._wake.wait()
        finally:
            if watcher is not None:
                watcher.stop()
                watcher.close()

    def _release(self, token: bytes | None) -> None:
        if token is None:
            self.implicit_free = True
        else:
            self.tokens_held -= 1
            try:
                assert self.writer is not None  # a token was read, so there is a jobserver
                os.write(self.writer, token)
            except OSError:
                pass  # make has gone away: nobody is left to give it to
        self._wake.set()

    def close(self) -> None:
        for fd in self.owned:
            _close_quietly(fd)
        self.owned = ()
        self.reader = None


def connect(auth: str) -> tuple[TokenGate, tuple[int, ...]]:
    """A gate on make's jobserver, and the descriptors jobs must inherit to share it.

    Raises JobserverUnavailable, saying why, when the jobserver cannot be used.
    """
    if auth.startswith("fifo:"):
        return _connect_fifo(auth[len("fifo:") :]), ()
    try:
        read_fd, write_fd = (int(part) for part in auth.split(","))
    except ValueError:
        raise JobserverUnavailable(f"cannot read --jobserver-auth={auth}") from None
    if read_fd < 0 or write_fd < 0:
        raise JobserverUnavailable(f"make passed no descriptors ({auth}); {NOT_RECURSIVE}")
    _check_pipe(read_fd, write_fd)
    try:
        # A new open file description of the same pipe: ours alone to make non-blocking.
        reader = os.open(f"/proc/self/fd/{read_fd}", os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise JobserverUnavailable(
            f"cannot reopen descriptor {read_fd} without blocking: {exc.strerror}"
        ) from None
    return TokenGate(reader, write_fd, owned=(reader,)), (read_fd, write_fd)


def _check_pipe(read_fd: int, write_fd: int) -> None:
    """Make closes the jobserver descriptors for recipes it does not know are recursive;
    the numbers may then be free, or reused by anything this process opened."""
    stats = {}
    for fd, wanted in ((read_fd, (os.O_RDONLY, os.O_RDWR)), (write_fd, (os.O_WRONLY, os.O_RDWR))):
        try:
            stats[fd] = os.fstat(fd)
            access = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
        except OSError as exc:
            if exc.errno == errno.EBADF:
                raise JobserverUnavailable(f"descriptor {fd} is closed; {NOT_RECURSIVE}") from None
            raise JobserverUnavailable(f"descriptor {fd}: {exc.strerror}") from None
        if not stat.S_ISFIFO(stats[fd].st_mode) or access not in wanted:
            raise JobserverUnavailable(f"descriptor {fd} is not make's jobserver pipe; {NOT_RECURSIVE}")
    if stats[read_fd].st_ino != stats[write_fd].st_ino or stats[read_fd].st_dev != stats[write_fd].st_dev:
        raise JobserverUnavailable(f"descriptors {read_fd},{write_fd} are not one pipe; {NOT_RECURSIVE}")


def _connect_fifo(path: str) -> TokenGate:
    try:
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise JobserverUnavailable(f"cannot open the fifo {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISFIFO(os.fstat(reader).st_mode):
            raise JobserverUnavailable(f"{path} is not a fifo")
        writer = os.open(path, os.O_WRONLY)  # does not block: our reader is open
    except OSError as exc:
        os.close(reader)
        raise JobserverUnavailable(f"cannot open the fifo {path} for writing: {exc.strerror}") from None
    except BaseException:
        os.close(reader)
        raise
    return TokenGate(reader, writer, owned=(reader, writer))


class Server:
    """A jobserver of our own, for the makes our jobs run: a fifo holding `slots - 1`
    tokens, also opened as a read/write descriptor pair for makes older than 4.4.
    Our own jobs take their slots from it too, so nested makes and our jobs together
    never exceed `slots`."""

    def __init__(self, slots: int):
        self.slots = max(1, slots)
        self.directory = _private_directory("orchestrate-jobserver-")
        self.path = os.path.join(self.directory, "fifo")
        fds: list[int] = []
        try:
            os.mkfifo(self.path, 0o600)
            fds.append(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK))  # ours
            fds.append(os.open(self.path, os.O_WRONLY))  # W for children, and ours to write back
            fds.append(os.open(self.path, os.O_RDONLY))  # R for children: blocking, as old clients expect
            os.write(fds[1], TOKEN * min(self.slots - 1, MAX_TOKENS))
        except BaseException:
            for fd in fds:
                _close_quietly(fd)
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        reader, self.write_fd, self.read_fd = fds
        self.gate = TokenGate(reader, self.write_fd, owned=tuple(fds))

    @property
    def pass_fds(self) -> tuple[int, int]:
        return (self.read_fd, self.write_fd)

    def makeflags(self, inherited: str | None = None) -> str:
        """MAKEFLAGS for our jobs: the caller's flags, our -j and jobserver instead of make's.

        The pipe form comes last: the last --jobserver-auth counts, and make 4.3 stops
        with an error on a fifo; make 4.4 reads either form.
        """
        ours = [
            f"-j{self.slots}",
            f"--jobserver-auth=fifo:{self.path}",
            f"--jobserver-auth={self.read_fd},{self.write_fd}",
        ]
        return _replace_jobs_options(inherited or "", ours)

    def close(self) -> None:
        self.gate.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def _private_directory(prefix: str) -> str:
    """A new folder that only we may use, in $TMPDIR or /tmp, as tempfile.mkdtemp makes one:
    importing tempfile (and random) cost every start ~2 ms; it is the way out when that
    folder cannot be written."""
    parent = os.environ.get("TMPDIR") or "/tmp"
    for _ in range(10):
        path = os.path.join(parent, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue
        except OSError:
            break
    import tempfile

    return tempfile.mkdtemp(prefix=prefix)


def _replace_jobs_options(text: str, ours: list[str]) -> str:
    words = text.split()
    split = words.index("--") if "--" in words else len(words)
    options, overrides = words[:split], words[split:]
    letters = options.pop(0) if options and not text[:1].isspace() and not options[0].startswith("-") else ""
    kept = [
        w for w in options if not (w.startswith("-j") or w.startswith("--jobs") or w.startswith(AUTH_OPTIONS))
    ]
    return " ".join([letters, *kept, *ours, *overrides])  # empty letters: the leading space make expects


class JobSlots(NamedTuple):
    """How this run gets its job slots, and what its jobs get to share them.

    `gate`: the slot gate the engine holds around each job; `pool_size`: the engine's -j
    pool (not the binding limit when make's jobserver sets it); `makeflags` and
    `pass_fds`: what every job's process gets so nested makes share the same slots.
    """

    gate: TokenGate
    pool_size: int
    makeflags: str
    pass_fds: tuple[int, ...] = ()
    server: Server | None = None
    client: bool = False

    def environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The caller's environment with the MAKEFLAGS our jobs get."""
        env = dict(environ)
        if self.makeflags.strip():
            env["MAKEFLAGS"] = self.makeflags
        else:
            env.pop("MAKEFLAGS", None)
        return env

    def close(self) -> None:
        self.gate.close()
        if self.server is not None:
            self.server.close()


def job_slots(
    explicit_jobs: int | None,
    default_jobs: int,
    job_count: int,
    flags: MakeFlags,
    warn: Callable[[str], None] | None = None,
) -> JobSlots:
    """Use make's jobserver when MAKEFLAGS has one and no -j was given; else serve our own.

    A jobserver that cannot be used is reported through `warn` (one line), and the run
    gets one slot, as make itself does.
    """
    if explicit_jobs is None and flags.auth is not None:
        try:
            gate, fds = connect(flags.auth)
        except JobserverUnavailable as problem:
            if warn is not None:
                warn(
                    f"orchestrate: warning: cannot use make's jobserver ({problem}); "
                    "running one job at a time"
                )
            explicit_jobs = 1
        else:
            return JobSlots(gate, max(1, job_count), flags.text, fds, client=True)
    slots = explicit_jobs or default_jobs
    server = Server(slots)
    return JobSlots(server.gate, slots, server.makeflags(flags.text), server.pass_fds, server=server)


def reopen_in_worker(
    parent_pid: int, pass_fds: tuple[int, ...], makeflags: str | None
) -> tuple[tuple[int, ...], str | None]:
    """In a worker process (spawned: it inherits no descriptors), the parent's jobserver
    pipe opened anew through /proc, and the MAKEFLAGS naming this process's numbers.
    `pass_fds` is (read, write), as JobSlots has it; returns (descriptors, MAKEFLAGS).
    Where /proc will not open them, the pipe form is dropped: nested makes then run
    one target at a time (a fifo form, for make 4.4, still works)."""
    if not pass_fds:
        return (), makeflags
    try:
        read_fd = os.open(f"/proc/{parent_pid}/fd/{pass_fds[0]}", os.O_RDONLY)
    except OSError:
        return (), _pipe_auth(makeflags, None)
    try:
        write_fd = os.open(f"/proc/{parent_pid}/fd/{pass_fds[1]}", os.O_WRONLY)
    except OSError:
        os.close(read_fd)
        return (), _pipe_auth(makeflags, None)
    return (read_fd, write_fd), _pipe_auth(makeflags, f"{read_fd},{write_fd}")


def _pipe_auth(makeflags: str | None, descriptors: str | None) -> str:
    """`makeflags` with its pipe-form jobserver options naming `descriptors`, or without them."""
    words = []
    for word in (makeflags or "").split(" "):
        if word.startswith(AUTH_OPTIONS) and not word.partition("=")[2].startswith("fifo:"):
            if descriptors is None:
                continue
            word = f"{word.partition('=')[0]}={descriptors}"
        words.append(word)
    return " ".join(words)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass

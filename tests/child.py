"""A controllable child process for tests: runs its arguments as a little script.

    child.py print hello stderr oops sleep 0.5 exit 3

Actions, in order: print TEXT | stderr TEXT | raw TEXT (no newline) | bytes N (N bytes of
output in lines) | sleep SECONDS | ignore-term | exit CODE | kill-self SIGNAL |
pidfile PATH | background SECONDS PIDFILE (a grandchild that holds the output pipe) |
daemon SECONDS PIDFILE (setsid + double fork, escaping the job's session) |
record PATH (appends "start NAME TIME" now and "end NAME TIME" at exit) | env NAME (prints
NAME=value).
"""

import atexit
import os
import signal
import sys
import time

CHILD = os.path.abspath(__file__)


def write_pid(path, pid):
    with open(path, "w") as f:
        f.write(str(pid))


def record_end(path, name):
    with open(path, "a") as f:
        f.write(f"end {name} {time.time()}\n")


def main(args):
    out = sys.stdout.buffer
    i = 0
    while i < len(args):
        action = args[i]
        i += 1
        if action == "print":
            out.write(args[i].encode() + b"\n")
            i += 1
        elif action == "raw":
            out.write(args[i].encode())
            i += 1
        elif action == "stderr":
            out.flush()
            sys.stderr.write(args[i] + "\n")
            sys.stderr.flush()
            i += 1
        elif action == "bytes":
            count = int(args[i])
            i += 1
            line = b"x" * 1023 + b"\n"
            block = line * 64
            while count >= len(block):
                out.write(block)
                count -= len(block)
            out.write((line * (count // 1024 + 1))[:count])
        elif action == "sleep":
            out.flush()
            time.sleep(float(args[i]))
            i += 1
        elif action == "ignore-term":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        elif action == "exit":
            out.flush()
            os._exit(int(args[i]))
        elif action == "kill-self":
            out.flush()
            os.kill(os.getpid(), getattr(signal, args[i]))
            time.sleep(5)
        elif action == "pidfile":
            write_pid(args[i], os.getpid())
            i += 1
        elif action == "background":
            seconds, pidfile = args[i], args[i + 1]
            i += 2
            out.flush()
            pid = os.fork()
            if pid == 0:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                time.sleep(float(seconds))
                os._exit(0)
            write_pid(pidfile, pid)
        elif action == "daemon":
            seconds, pidfile = args[i], args[i + 1]
            i += 2
            out.flush()
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                    devnull = os.open(os.devnull, os.O_RDWR)
                    for fd in (0, 1, 2):
                        os.dup2(devnull, fd)
                    write_pid(pidfile, os.getpid())
                    time.sleep(float(seconds))
                    os._exit(0)
                os._exit(0)
            while not os.path.exists(pidfile):
                time.sleep(0.01)
        elif action == "record":
            path = args[i]
            i += 1
            name = os.environ.get("ORCHESTRATE_JOB", "?")
            with open(path, "a") as f:
                f.write(f"start {name} {time.time()}\n")
            atexit.register(record_end, path, name)
        elif action == "env":
            out.write(f"{args[i]}={os.environ.get(args[i], '')}\n".encode())
            i += 1
        else:
            raise SystemExit(f"child.py: unknown action {action!r}")
    out.flush()


if __name__ == "__main__":
    main(sys.argv[1:])

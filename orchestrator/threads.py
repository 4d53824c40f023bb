"""Thread pools whose threads leave every signal to the hub's thread."""

from __future__ import annotations

import signal

from gevent.threadpool import ThreadPool


def quiet_thread_pool(threads: int) -> ThreadPool:
    """A gevent ThreadPool whose threads are started now, blocking every signal, so that
    SIGCHLD (one a job) and the stop signals go to the hub's thread. Otherwise the kernel
    hands a SIGCHLD to another thread whenever the hub's blocks signals, as posix_spawn
    does for every launch, and each such wake-up cost the hub ~60 us of CPU a job."""
    pool = ThreadPool(threads)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pool.size = threads  # starts them, with no greenlet switch that could see the mask
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return pool

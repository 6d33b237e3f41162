"""Worker processes die with their driver.

A driver killed with SIGKILL cannot stop its workers; left alone they would train on for
minutes, holding the driver's stdout and stderr open (a script that captured the output hangs
until they finish). Two guards, set up first thing in each worker:

- Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the worker when its parent dies.
- On every POSIX system (and in case the parent died before ``prctl`` took effect): a thread that
  polls the parent pid and exits the worker once it changes (the worker was re-parented). A
  worker forked by a forkserver (whose parent outlives the driver) also polls the driver's pid.

Workers write no results (only the driver does), so exiting at once loses nothing but the run in
flight, which a rerun redoes (from its last checkpoint, if it makes them).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
POLL_S = 0.5
EXIT_CODE = 70  # what a worker exits with when it outlives its driver


def set_parent_death_signal(signum: int = signal.SIGKILL) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent dies; False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch(driver_pid: int, parent_pid: int, poll_s: float) -> None:
    while os.getppid() == parent_pid and (parent_pid == driver_pid or _alive(driver_pid)):
        time.sleep(poll_s)
    os._exit(EXIT_CODE)  # no cleanup: the driver is gone and nobody reads what we would do


def die_with_driver(driver_pid: int, poll_s: float = POLL_S, *, child: bool = True) -> None:
    """Make this (worker) process exit within about ``poll_s`` of ``driver_pid``'s death.

    ``child=False``: the worker is not the driver's child but a forkserver's, which outlives a
    killed driver; then the watchdog also polls the driver's pid itself."""
    set_parent_death_signal()
    parent_pid = os.getppid()
    if (child and parent_pid != driver_pid) or not _alive(driver_pid):
        os._exit(EXIT_CODE)  # the driver died before the guard was set
    threading.Thread(
        target=_watch,
        args=(driver_pid, driver_pid if child else parent_pid, poll_s),
        name="sgdbench-lifeline",
        daemon=True,
    ).start()

"""One run per output folder: an exclusive OS lock on ``OUTPUT_DIR`` held while a run writes there.

Two runs into one folder would interleave ``log.txt`` and ``metrics.json`` and overwrite each other's checkpoints;
neither fast-reid nor detectron2 notices. The lock is ``flock`` on ``OUTPUT_DIR/.lf2_run.lock``: the OS releases it
when its process dies, however it dies, so a lock left by a dead run never blocks. The file keeps the holder's pid,
host and command line, for the message the second run stops with.
"""

import contextlib
import fcntl
import json
import os
import socket
import sys

__all__ = ["LOCK_NAME", "OutputDirInUse", "output_dir_lock"]

LOCK_NAME = ".lf2_run.lock"


class OutputDirInUse(RuntimeError):
    """Another live run holds the output folder."""


def _holder(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 65536).decode("utf-8", "replace")
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']}: {info['command']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not written its name yet"


@contextlib.contextmanager
def output_dir_lock(output_dir):
    """Hold ``output_dir`` for this process; raises :class:`OutputDirInUse` naming the holder if another has it."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputDirInUse(
                f"OUTPUT_DIR {os.path.abspath(output_dir)} is in use by another run ({_holder(fd)}); "
                "wait for it, stop it, or give this run another OUTPUT_DIR"
            ) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield path
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

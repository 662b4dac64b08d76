"""Multi-process launch for fast-reid jobs that works with and without GPUs.

fast-reid's ``fastreid.engine.launch`` asserts CUDA and hard-codes NCCL. This launch keeps its signature
(so ``tools/train_net.py`` reads like fast-reid's) and picks the backend from the machine: NCCL with one process
per GPU when CUDA is available, gloo on CPU, where ``--num-gpus N`` means N CPU processes sharing the cores.

Faults: SIGINT / SIGTERM to the launching process are passed on to the workers, which stop together with a
checkpoint (:class:`~lf2_plugin.engine.reliability.InterruptCheckpointHook`); the launcher waits for them and raises
:class:`~lf2_plugin.engine.reliability.TrainingInterrupted` (exit status 128 + the signal). A worker that dies
(killed, or an exception) stops the others (SIGTERM, then SIGKILL after a grace period) and the launcher raises
:class:`WorkerFailed` naming it. No worker outlives the launcher: if it is killed, they get SIGINT (torch's
``PR_SET_PDEATHSIG``) and stop with a checkpoint.
"""

import contextlib
import logging
import multiprocessing.connection
import os
import pickle
import signal
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fastreid.utils import comm

from ..compat import set_local_process_group
from .reliability import TrainingInterrupted

__all__ = ["launch", "distributed_backend", "WorkerFailed"]

logger = logging.getLogger(__name__)


# Seconds a failed worker's peers get to stop on SIGTERM before they are killed.
WORKER_STOP_GRACE_SECONDS = 30


class WorkerFailed(RuntimeError):
    """A worker process died or raised; the others were stopped."""


def distributed_backend():
    """'nccl' where CUDA is available, else 'gloo'."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def _free_local_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(main_func, num_gpus_per_machine, num_machines=1, machine_rank=0, dist_url=None, args=()):
    """Run ``main_func(*args)`` in ``num_gpus_per_machine`` processes on each of ``num_machines`` machines.

    With a world size of 1 the function is simply called. ``dist_url="auto"`` picks a free port on localhost
    (single machine only).
    """
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        return main_func(*args)
    backend = distributed_backend()
    if backend == "nccl" and num_gpus_per_machine > torch.cuda.device_count():
        raise ValueError(f"--num-gpus {num_gpus_per_machine} but only {torch.cuda.device_count()} GPUs are visible")
    if dist_url is None or dist_url == "auto":
        if num_machines != 1:
            raise ValueError("dist_url='auto' only works on a single machine; pass tcp://HOST:PORT")
        dist_url = f"tcp://127.0.0.1:{_free_local_port()}"
    context = mp.start_processes(
        _distributed_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, backend, args),
        daemon=False,
        join=False,
    )
    with _signals_passed_on(context.processes) as received:
        _wait_for_workers(context, received)


@contextlib.contextmanager
def _signals_passed_on(processes):
    """SIGINT / SIGTERM to this process are sent on to every live worker; yields the signals received."""
    received = []

    def pass_on(signum, frame):
        received.append(signum)
        logger.warning("Received %s: passing it on to the workers", signal.Signals(signum).name)
        for process in processes:
            if process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    previous = {signum: signal.signal(signum, pass_on) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _wait_for_workers(context, received):
    """Return when every worker has finished; raise TrainingInterrupted when they stopped on a signal passed on,
    WorkerFailed (after stopping the others) when one died or raised."""
    processes = context.processes
    while True:
        codes = [process.exitcode for process in processes]
        stopped = {128 + signum for signum in received}
        failed = [rank for rank, code in enumerate(codes) if code not in (None, 0) and code not in stopped]
        if failed:
            _stop_workers(processes)
            raise WorkerFailed(_failure_message(context, failed[0]))
        if None not in codes:
            if any(code in stopped for code in codes):
                signum = received[0]
                raise TrainingInterrupted(signum, "model_interrupted.pth in OUTPUT_DIR (written by rank 0)")
            return
        running = [process.sentinel for process in processes if process.exitcode is None]
        multiprocessing.connection.wait(running, timeout=1.0)


def _stop_workers(processes):
    for process in processes:
        if process.exitcode is None:
            process.terminate()
    for process in processes:
        process.join(WORKER_STOP_GRACE_SECONDS)
        if process.exitcode is None:
            logger.warning("Worker pid %d did not stop on SIGTERM; killing it", process.pid)
            process.kill()
            process.join()


def _failure_message(context, rank):
    process = context.processes[rank]
    code = process.exitcode
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
    error_file = context.error_files[rank]
    traceback = ""
    if os.path.isfile(error_file):
        with open(error_file, "rb") as f:
            traceback = ":\n" + pickle.load(f)
    return (
        f"worker rank {rank} (pid {process.pid}) {how}; the other workers were stopped. Checkpoints are written "
        f"atomically: --resume continues from the one OUTPUT_DIR/last_checkpoint names{traceback}"
    )


def _distributed_worker(local_rank, main_func, world_size, num_per_machine, machine_rank, dist_url, backend, args):
    global_rank = machine_rank * num_per_machine + local_rank
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    else:
        # N CPU processes share the machine's cores instead of each starting a thread per core.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_per_machine))
        # Spawned children inherit the 'spawn' start method, so every DataLoader worker would re-import torch and
        # fastreid (seconds each); without CUDA in the process, forking workers is safe and immediate.
        mp.set_start_method("fork", force=True)
    dist.init_process_group(backend=backend, init_method=dist_url, world_size=world_size, rank=global_rank)
    # Every rank creates every machine's group (new_group is collective); each keeps its own machine's.
    num_machines = world_size // num_per_machine
    for machine in range(num_machines):
        ranks = list(range(machine * num_per_machine, (machine + 1) * num_per_machine))
        group = dist.new_group(ranks)
        if machine == machine_rank:
            set_local_process_group(group)
    comm.synchronize()
    try:
        main_func(*args)
        comm.synchronize()  # no rank tears the group down while another still uses it
    except TrainingInterrupted as stop:  # every rank stopped at the same step; rank 0 wrote the checkpoint
        raise SystemExit(stop.exit_code) from None
    finally:
        dist.destroy_process_group()

"""Multi-process launch for fast-reid jobs that works with and without GPUs.

fast-reid's ``fastreid.engine.launch`` asserts CUDA and hard-codes NCCL. This launch keeps its signature
(so ``tools/train_net.py`` reads like fast-reid's) and picks the backend from the machine: NCCL with one process
per GPU when CUDA is available, gloo on CPU, where ``--num-gpus N`` means N CPU processes sharing the cores.
"""

import logging
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fastreid.utils import comm

from ..compat import set_local_process_group

__all__ = ["launch", "distributed_backend"]

logger = logging.getLogger(__name__)


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
    mp.spawn(
        _distributed_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, backend, args),
        daemon=False,
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
    finally:
        dist.destroy_process_group()

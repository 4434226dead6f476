"""Turning the ``device`` parameter into a ``torch.device`` that exists on this machine."""

import os

import torch


def available_devices():
    """Names of the devices torch can use here, best first (e.g. ``['cuda:0', 'cpu']``)."""
    names = (
        [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    )
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names + ["cpu"]


def resolve_device(device, dtype=None):
    """Return the ``torch.device`` for ``device`` or raise a ValueError naming what exists.

    ``"auto"`` picks the first of :func:`available_devices` that can compute in ``dtype``
    (MPS has no float64, so ``"auto"`` skips it for float64 fits). A ``torch.device`` is
    accepted too.
    """
    available = available_devices()
    if isinstance(device, str) and device.lower() == "auto":
        usable = [d for d in available if not (d == "mps" and dtype == torch.float64)]
        return torch.device(usable[0])
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a device name torch understands; "
            f"use 'auto' or one of: {', '.join(available)}."
        ) from exc
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available on this machine; "
                f"available: {', '.join(available)}."
            )
        index = 0 if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} was requested but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s); available: {', '.join(available)}."
            )
        return torch.device("cuda", index)
    if dev.type == "mps":
        if "mps" not in available:
            raise ValueError(
                f"device={device!r} was requested but MPS is not available on this machine; "
                f"available: {', '.join(available)}."
            )
        return dev
    raise ValueError(
        f"device={device!r} is not supported; use 'auto' or one of: {', '.join(available)}."
    )


def prediction_device(fitted):
    """The fitted device when it exists here, else the CPU (models move between machines)."""
    try:
        return resolve_device(fitted)
    except ValueError:
        return torch.device("cpu")


def available_memory(device):
    """Bytes a new allocation on ``device`` can get (infinite where this platform cannot tell).

    On a CUDA device: the driver's free memory plus what torch's caching allocator holds
    without using, since this process can reuse it. Elsewhere (CPU, and MPS, whose memory is
    the system's): what the operating system calls available, which counts the page cache and
    other reclaimable memory (``MemAvailable`` on Linux, psutil's ``available``), not only the
    free pages: a full page cache is not a shortage.
    """
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return system_available_memory()


def system_available_memory(meminfo="/proc/meminfo"):
    """Bytes of system memory available to a new allocation, or infinity where unknown.

    psutil's ``virtual_memory().available`` where psutil is installed; else Linux's
    ``MemAvailable`` from ``meminfo``; else the total physical memory, so that only a size no
    machine of this kind could hold is refused.
    """
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            return psutil.virtual_memory().available
        except (OSError, RuntimeError, AttributeError):  # pragma: no cover - exotic platforms
            pass
    try:
        with open(meminfo, encoding="ascii") as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the kernel reports kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on this platform: do not refuse
        return float("inf")

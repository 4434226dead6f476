"""Hardening of the estimator's helpers: memory check, optimizer lookup, input messages,
progress output and the loss-curve display, each against the input that used to break it."""

import collections
import os
import sys

import numpy as np
import pytest
import torch

from autopoly import TorchPolyRegressor
from autopoly._device import available_memory, system_available_memory

GiB = 2**30
_rng = np.random.default_rng(0)
X = _rng.standard_normal((30, 2))
Y = X[:, 0] + X[:, 1] ** 2 + 0.1 * _rng.standard_normal(30)


# ------------------------------------------------------------------------ available memory

_SYSCONF = {"SC_PAGE_SIZE": 4096, "SC_AVPHYS_PAGES": int(3.8 * GiB) // 4096,
            "SC_PHYS_PAGES": 32 * GiB // 4096}
_VirtualMemory = collections.namedtuple("svmem", "total available free")


def test_cpu_memory_counts_the_page_cache_as_available(monkeypatch):
    # A full page cache: 3.8 GiB of free pages, 22.7 GiB available. A fit needing 5.3 GiB fits.
    psutil = pytest.importorskip("psutil")
    monkeypatch.setattr(os, "sysconf", lambda name: _SYSCONF[name])
    monkeypatch.setattr(psutil, "virtual_memory",
                        lambda: _VirtualMemory(32 * GiB, int(22.7 * GiB), int(3.8 * GiB)))
    assert available_memory(torch.device("cpu")) == int(22.7 * GiB)


def test_without_psutil_memavailable_is_read(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "psutil", None)
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(
        "MemTotal:       32000000 kB\nMemFree:         3900000 kB\n"
        "MemAvailable:   23800000 kB\nBuffers:          100000 kB\n"
    )
    assert system_available_memory(str(meminfo)) == 23800000 * 1024


def test_without_psutil_or_meminfo_total_memory_is_the_bound(monkeypatch, tmp_path):
    # Free pages would refuse fits that the OS can serve; the total refuses only the impossible.
    monkeypatch.setitem(sys.modules, "psutil", None)
    monkeypatch.setattr(os, "sysconf", lambda name: _SYSCONF[name])
    assert system_available_memory(str(tmp_path / "absent")) == 32 * GiB

"""The thread budget: torch's intra-op threads must not multiply with outer parallelism.

What each kind of outer parallelism already does (measured on a 2-core machine, and stated in
the joblib and distributed docs; figures in ``docs/scaling.rst``):

* joblib's default ``loky`` backend starts its worker processes with ``OMP_NUM_THREADS`` (and
  the MKL/OpenBLAS variables) set to ``cpu_count() // n_jobs`` unless the parent already set
  them. torch reads ``OMP_NUM_THREADS`` when its thread pool starts, so ``n_jobs`` workers
  times torch's threads stay within the cores: nothing to do.
* ``dask.distributed`` starts worker processes with ``OMP_NUM_THREADS=1`` (the
  ``distributed.nanny.pre-spawn-environ`` setting), so torch runs single-threaded and the
  worker's task threads are the parallelism: nothing to do either. (The nanny also leaves
  those variables in the ``os.environ`` of the process that started a ``LocalCluster``.)
* Threads are the gap. joblib's ``threading`` backend and dask's local threaded scheduler run
  tasks on threads of one process, each of which would start a full team of torch threads
  (``n_jobs * cpu_count()`` busy threads). Inside those tasks torch is limited to one thread.

``torch.set_num_threads`` called on a thread other than the main one sets that thread's
OpenMP team size (and the default of threads started later), never the main thread's;
:func:`task_threads` restores the previous value on exit all the same.
"""

import contextlib
import threading
from contextlib import contextmanager

import torch


def off_main_thread():
    """Whether this is any thread but the main one (a task of dask's threaded scheduler, say).

    Returns
    -------
    off_main : bool
        True off the main thread.
    """
    return threading.current_thread() is not threading.main_thread()


def in_pool_thread():
    """Whether this is a thread of a joblib threading-backend pool (a ``Parallel`` task).

    joblib marks the tasks it runs with a nested backend (``nesting_level >= 1``); a loky
    worker runs them on its process's main thread, the threading backend on pool threads.

    Returns
    -------
    in_pool : bool
        True on a pool thread of joblib's threading backend.
    """
    if not off_main_thread():
        return False
    try:
        from joblib.parallel import get_active_backend
    except ImportError:  # joblib comes with scikit-learn; be safe anyway
        return False
    backend, _ = get_active_backend()
    return getattr(backend, "nesting_level", 0) >= 1


@contextmanager
def task_threads(limit=True, blas=False):
    """Run torch on one intra-op thread for the duration of the block when ``limit`` is true.

    Parameters
    ----------
    limit : bool, default=True
        Whether to limit; ``False`` makes the block a no-op, so that callers can write
        ``with task_threads(in_pool_thread()):``.
    blas : bool, default=False
        Whether to limit the BLAS libraries NumPy and SciPy call to one thread as well (about
        20 microseconds to switch, so only for blocks that do enough linear algebra). That
        limit is process-wide, so it is set on the main thread only (other threads' BLAS
        calls share it while the block runs) and restored when the block ends.

    Yields
    ------
    n_threads : int
        The number of torch intra-op threads in effect inside the block.
    """
    previous = torch.get_num_threads()
    # (Only the main thread sets the BLAS limit: OpenBLAS's setting from other threads does
    # not reliably take effect, and their fits would race to restore it.)
    with _blas_limit() if limit and blas and not off_main_thread() else contextlib.nullcontext():
        if not limit or previous <= 1:
            yield previous
            return
        torch.set_num_threads(1)
        try:
            yield 1
        finally:
            torch.set_num_threads(previous)


@contextmanager
def _blas_limit():
    """One thread for the BLAS libraries loaded in this process while any block holds it.

    The limit is process-wide, so concurrent fits (threads of one process) share it: the first
    to enter sets it, the last to leave restores what was there before (each restoring its
    own saved value would leave whichever value was restored last).
    """
    global _CONTROLLER, _BLAS_HOLDERS, _BLAS_LIMITER
    with _BLAS_LOCK:
        if _BLAS_HOLDERS == 0:
            if _CONTROLLER is None:
                from threadpoolctl import ThreadpoolController

                _CONTROLLER = ThreadpoolController()
            _BLAS_LIMITER = _CONTROLLER.limit(limits=1, user_api="blas")
        _BLAS_HOLDERS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_HOLDERS -= 1
            if _BLAS_HOLDERS == 0:
                _BLAS_LIMITER.restore_original_limits()
                _BLAS_LIMITER = None


_CONTROLLER = None
_BLAS_LOCK = threading.Lock()
_BLAS_HOLDERS = 0
_BLAS_LIMITER = None


def few_cores_for_torch():
    """Whether torch's thread team is two threads or fewer, where one thread does better.

    On two cores torch's element-wise work (the expansion, the scalings) gains little from a
    second thread, and loses many times over whenever another process holds a core: every
    operation waits at a barrier for the descheduled thread (a 1e5 x 5 degree-3 fit measured
    0.04 s on one thread, 0.2 to 1.2 s on two, on a shared two-core machine). The matrix
    products that do gain from threads run in NumPy's BLAS there (see
    :func:`autopoly._data_pass.gram_factor`).

    Returns
    -------
    few : bool
        True when ``torch.get_num_threads() <= 2``.
    """
    return torch.get_num_threads() <= 2


def fit_threads():
    """One torch thread on a joblib threading-backend pool thread, the default elsewhere.

    The estimator applies the same rule (with its size threshold) itself; this is the rule
    alone, for benchmarks and tests that run fits in pools.

    Returns
    -------
    context : context manager
        Use as ``with fit_threads(): ...``.
    """
    return task_threads(in_pool_thread())


def thread_report():
    """What this process would use: torch threads, the environment caps and the core count.

    Returns
    -------
    report : dict
        ``torch_threads``, ``omp_num_threads`` (the environment variable or None), ``cpu_count``
        and ``pool_thread`` (whether :func:`in_pool_thread` holds here).
    """
    import os

    return {
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "pool_thread": in_pool_thread(),
    }

"""Scaling out: in memory, out-of-core on one machine, and a Dask LocalCluster.

The same squared-error fit (degree 3 on 5 features: 55 terms) of a large array, timed four
ways in one run, interleaved:

* **in memory**: X and y NumPy arrays in RAM, ``TorchPolyRegressor.fit`` (with torch's
  default threads, and again on one torch thread: on a shared machine a team of threads
  waiting on each other can cost more than it brings);
* **out-of-core, dask threads**: X and y in ``.npy`` chunk files on disk
  (``dask.array.from_npy_stack``), ``fit`` on the dask arrays with dask's default threaded
  scheduler: chunks are read, reduced to their QR factor and dropped;
* **out-of-core, partial_fit loop**: the same files read chunk by chunk on one thread, one
  ``partial_fit`` per chunk (exact for the squared error);
* **LocalCluster**: the same files read by the worker processes of a
  ``dask.distributed.LocalCluster`` (2 workers x 1 thread), ``fit`` on the dask arrays.

Every method must reach the in-memory coefficients to 1e-8 relative (checked). The client's
memory for a fit is the data it holds (X and y, for the in-memory fit only) plus the growth of
its peak resident memory during the fit (``VmHWM`` after a ``clear_refs`` reset). A second,
smaller table times a Huber fit (iterative: one cluster round trip per loss evaluation), and
a third the thread policy of ``GridSearchCV``
with ``n_jobs=-1`` on each joblib backend: torch's threads per worker, and the time with and
without autopoly's guard on joblib's thread pool.

Run ``python benchmarks/bench_dask.py`` (about 5 minutes on 2 cores; ``--quick`` for a
smoke run of well under a minute, most of it starting the cluster and importing torch); writes
``results/dask.md``, ``results/dask_*.csv`` and ``results/dask.png``.
"""

import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import _common as C
import numpy as np

TITLE = "bench_dask: in memory vs out-of-core vs a Dask LocalCluster"
N_FEATURES = 5
DEGREE = 3


def make_data(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, size=(n, N_FEATURES)) * np.array([1.0, 10.0, 100.0, 0.1, 1.0])
    y = (
        1.0
        + X[:, 0]
        - 0.02 * X[:, 1] ** 2
        + 3e-4 * X[:, 2] * X[:, 1]
        - 5.0 * X[:, 3] ** 3
        + X[:, 4] * X[:, 0]
        + 0.1 * rng.standard_normal(n)
    )
    return X, y


def _status_mib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return None


def peak_growth_during(fn):
    """Run ``fn``; return its result and by how much (MiB) the process's peak resident memory
    rose above its resident memory at the start (None where ``/proc`` cannot tell).
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
        start = _status_mib("VmRSS")
    except OSError:
        return None
    result = fn()
    peak = _status_mib("VmHWM")
    return result, (None if start is None or peak is None else max(0.0, peak - start))


def thread_policy(quick, client):
    """GridSearchCV(n_jobs=-1) over lr x degree on each joblib backend, and torch's threads."""
    import joblib
    from sklearn.model_selection import GridSearchCV

    from autopoly import TorchPolyRegressor
    from autopoly._threads import task_threads

    class Unguarded(TorchPolyRegressor):
        """The estimator without its thread guard: torch's default threads on any thread."""

        def _threads(self, shape):
            return task_threads(False)

    n = 20_000 if quick else 300_000
    X, y = make_data(n, seed=1)
    X = X[:, :4] / np.array([1.0, 10.0, 100.0, 0.1])
    grid = {"lr": [0.5, 1.0], "degree": [2, 3] if quick else [2, 3, 4]}
    runs = {
        "sequential (n_jobs=1)": (TorchPolyRegressor, "loky", 1),
        "loky (joblib's default)": (TorchPolyRegressor, "loky", -1),
        "threading, autopoly's guard": (TorchPolyRegressor, "threading", -1),
        "threading, guard disabled": (Unguarded, "threading", -1),
        "dask (LocalCluster 2 x 1)": (TorchPolyRegressor, "dask", -1),
    }

    def searcher(cls, backend, n_jobs):
        def run():
            with joblib.parallel_backend(backend):
                return GridSearchCV(cls(), grid, cv=3, n_jobs=n_jobs).fit(X, y)

        return run

    def threads_seen(cls, backend, n_jobs):
        """Torch's intra-op threads where the fits run (inside the guard, if the class has it)."""
        probe = _report if cls is Unguarded else _guarded_report
        if n_jobs == 1:
            return [probe()]
        with joblib.parallel_backend(backend):
            return joblib.Parallel(n_jobs=n_jobs)(joblib.delayed(probe)() for _ in range(8))

    timed = C.interleaved({name: searcher(*spec) for name, spec in runs.items()}, 1 if quick else 3)
    rows = []
    best = {}
    for name, (cls, backend, n_jobs) in runs.items():
        per_worker = sorted({r["torch_threads"] for r in threads_seen(cls, backend, n_jobs)})
        workers = (
            1
            if n_jobs == 1
            else (
                len(client.scheduler_info()["workers"])
                if backend == "dask"
                else joblib.effective_n_jobs(n_jobs)
            )
        )
        search = timed[name]["result"]
        best[name] = search.best_params_
        rows.append(
            (
                name,
                workers,
                "/".join(map(str, per_worker)),
                workers * max(per_worker),
                min(timed[name]["times"]),
                ", ".join(f"{k}={v}" for k, v in sorted(search.best_params_.items())),
            )
        )
    header = [
        "backend",
        "workers",
        "torch threads per worker",
        "busy threads",
        "GridSearchCV time (s, best)",
        "best parameters",
    ]
    times = {name: r["times"] for name, r in timed.items()}
    return header, rows, best, n, grid, times


def _report():
    from autopoly._threads import thread_report

    return thread_report()


def _guarded_report():
    """What a fit sees inside the estimator's guard (a large problem: only pool threads)."""
    from autopoly._threads import fit_threads, thread_report

    with fit_threads():
        return thread_report()


def timed_with_memory(methods, repeat):
    """Interleaved timing as ``_common.interleaved``, with each run's client memory growth."""
    out = {name: {"times": [], "growth": [], "result": None} for name in methods}
    for fn in methods.values():
        fn()  # warm-up: imports, the workers' first tasks
    for _ in range(repeat):
        for name, fn in methods.items():
            start = time.perf_counter()
            result, growth = peak_growth_during(fn)
            out[name]["times"].append(time.perf_counter() - start)
            out[name]["growth"].append(growth)
            out[name]["result"] = result
    return out


def _against_memory(timed, checks, check_name, tol):
    """Per method: ``(name, run, best time, time / in memory, coefficient difference)``.

    Appends to ``checks`` that each method's coefficients are within ``tol`` (relative) of the
    in-memory fit's.
    """
    ref = timed["in memory (NumPy)"]["result"]
    base = min(timed["in memory (NumPy)"]["times"])
    out = []
    for name, r in timed.items():
        err = np.abs(r["result"].coef_ - ref.coef_).max() / np.abs(ref.coef_).max()
        checks.append(
            (check_name.format(name), err <= tol, f"max relative difference {err:.2e} (<= {tol:g})")
        )
        out.append((name, r, min(r["times"]), min(r["times"]) / base, err))
    return out


def main():
    import dask
    import dask.array as da
    import distributed
    import torch

    from autopoly import TorchPolyRegressor

    args = C.parser(__doc__.split("\n")[0]).parse_args()
    out = C.prepare_out(args.out)
    quick = args.quick
    repeat = args.repeat or (1 if quick else 3)
    n = 40_000 if quick else 2_000_000
    chunk = 10_000 if quick else 250_000
    n_huber = 20_000 if quick else 400_000
    env = C.environment()
    print(C.environment_markdown(env))

    X, y = make_data(n)
    tmp = Path(tempfile.mkdtemp(prefix="autopoly-bench-dask-"))
    checks = []
    try:
        da.to_npy_stack(tmp / "X", da.from_array(X, chunks=(chunk, N_FEATURES)))
        da.to_npy_stack(tmp / "y", da.from_array(y, chunks=chunk))
        X_disk, y_disk = da.from_npy_stack(tmp / "X"), da.from_npy_stack(tmp / "y")
        start = time.perf_counter()
        environ = dict(os.environ)
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = distributed.Client(cluster, set_as_default=False)
        startup = time.perf_counter() - start
        # The nanny leaves OMP_NUM_THREADS=1 (its pre-spawn-environ) in this process's
        # environment, where loky would pass it on to its workers: put ours back, so that the
        # other methods run as they would without a cluster.
        polluted = {k: v for k, v in os.environ.items() if environ.get(k) != v}
        os.environ.clear()
        os.environ.update(environ)

        def in_memory():
            return TorchPolyRegressor(degree=DEGREE).fit(X, y)

        def in_memory_one_thread():
            previous = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return TorchPolyRegressor(degree=DEGREE).fit(X, y)
            finally:
                torch.set_num_threads(previous)

        def dask_threads():
            with dask.config.set(scheduler="threads"):
                return TorchPolyRegressor(degree=DEGREE).fit(X_disk, y_disk)

        def partial_fit_loop():
            model = TorchPolyRegressor(degree=DEGREE)
            files = sorted((tmp / "X").glob("*.npy"), key=lambda p: int(p.stem))
            for path in files:
                X_chunk = np.load(path)
                y_chunk = np.load(tmp / "y" / path.name)
                model.partial_fit(X_chunk, y_chunk)
            return model

        def local_cluster():
            with dask.config.set(scheduler=client.get):
                return TorchPolyRegressor(degree=DEGREE).fit(X_disk, y_disk)

        methods = {
            "in memory (NumPy)": in_memory,
            "in memory, 1 torch thread": in_memory_one_thread,
            "out-of-core, dask threads": dask_threads,
            "out-of-core, partial_fit loop": partial_fit_loop,
            "LocalCluster (2 workers x 1 thread)": local_cluster,
        }
        timed = timed_with_memory(methods, repeat)
        growth = {
            name: None if None in r["growth"] else max(r["growth"]) for name, r in timed.items()
        }
        data_mib = (X.nbytes + y.nbytes) / 2**20
        held = {name: data_mib if name.startswith("in memory") else 0.0 for name in methods}
        ref = timed["in memory (NumPy)"]["result"]
        rows = []
        for name, _r, best, ratio, err in _against_memory(
            timed, checks, "{}: coefficients equal the in-memory fit", 1e-8
        ):
            client_mib = None if growth[name] is None else held[name] + growth[name]
            rows.append((name, best, ratio, held[name], growth[name], client_mib, err))
        header = [
            "method",
            "fit time (s, best)",
            "time / in memory",
            "data held by the client (MiB)",
            "client peak growth during fit (MiB)",
            "client memory for the fit (MiB)",
            "max coef difference (rel.)",
        ]

        # Huber: one round trip per loss evaluation, in memory vs the cluster.
        Xh, yh = X[:n_huber], y[:n_huber]
        Xh_disk, yh_disk = X_disk[:n_huber], y_disk[:n_huber]
        huber = {"degree": 2, "loss": "huber", "tol": 1e-8, "max_iter": 300}

        def huber_memory():
            return TorchPolyRegressor(**huber).fit(Xh, yh)

        def huber_cluster():
            with dask.config.set(scheduler=client.get):
                return TorchPolyRegressor(**huber).fit(Xh_disk, yh_disk)

        htimed = C.interleaved(
            {
                "in memory (NumPy)": huber_memory,
                "LocalCluster (2 workers x 1 thread)": huber_cluster,
            },
            repeat,
        )
        hrows = [
            (name, best, ratio, r["result"].n_iter_, err)
            for name, r, best, ratio, err in _against_memory(
                htimed, checks, "Huber, {}: coefficients match the in-memory fit", 1e-6
            )
        ]
        hheader = [
            "method",
            "fit time (s, best)",
            "time / in memory",
            "iterations",
            "max coef difference (rel.)",
        ]

        with client.as_current(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theader, trows, best, n_grid, grid, ttimes = thread_policy(quick, client)
        first = next(iter(best.values()))
        checks.append(
            (
                "GridSearchCV finds the same best parameters on every backend",
                all(b == first for b in best.values()),
                str(best),
            )
        )
        client.close()
        cluster.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    env["load average at end"] = C.loadavg()
    env["LocalCluster start-up (s)"] = f"{startup:.2f}"
    env["set in this process by the nanny (undone here)"] = (
        ", ".join(f"{k}={v}" for k, v in sorted(polluted.items())) or "nothing"
    )
    md = [
        f"# {TITLE}",
        "",
        "Generated by `benchmarks/bench_dask.py`"
        + (" --quick" if quick else "")
        + f": {n:,} rows x {N_FEATURES} features (X {X.nbytes / 2**20:.0f} MiB), degree "
        f"{DEGREE} ({ref.coef_.shape[0]} terms), squared error; chunks of {chunk:,} rows in "
        f"`.npy` files on disk for the out-of-core and cluster methods; best of {repeat} "
        "interleaved runs after a warm-up.",
        "",
        C.environment_markdown(env),
        "",
        "## Squared error: exact statistics",
        "",
        C.markdown_table(header, rows),
        "",
        f"## Huber ({n_huber:,} rows, degree 2): one round trip per evaluation",
        "",
        C.markdown_table(hheader, hrows),
        "",
        f"## GridSearchCV(n_jobs=-1) threads: {n_grid:,} rows, grid {grid}, 3 folds",
        "",
        "`busy threads` is workers x torch intra-op threads per worker; above the core count "
        "the threads oversubscribe the CPU.",
        "",
        C.markdown_table(theader, trows),
        "",
        "## Checks",
        "",
        C.checks_markdown(checks),
        "",
    ]
    (out / "dask.md").write_text("\n".join(md))
    C.write_csv(out / "dask_fit.csv", header, rows)
    C.write_csv(out / "dask_huber.csv", hheader, hrows)
    C.write_csv(out / "dask_threads.csv", theader, trows)
    C.dump_json(
        out / "dask.json",
        {
            "env": env,
            "checks": checks,
            "times": {k: v["times"] for k, v in timed.items()},
            "huber_times": {k: v["times"] for k, v in htimed.items()},
            "gridsearch_times": ttimes,
        },
    )
    plot(out / "dask.png", rows, trows)
    print("\n".join(md))
    C.finish(checks)


def plot(path, rows, trows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    names = [r[0] for r in rows][::-1]
    axes[0].barh(names, [r[1] for r in rows][::-1], color="tab:blue")
    axes[0].set_xlabel("fit time (s, best)")
    axes[0].set_title("squared error, exact statistics")
    axes[1].barh(names, [r[5] or 0 for r in rows][::-1], color="tab:orange")
    axes[1].set_xlabel("client memory for the fit: data held + peak growth (MiB)")
    axes[1].set_title("memory held by the client")
    tnames = [r[0] for r in trows][::-1]
    axes[2].barh(tnames, [r[4] for r in trows][::-1], color="tab:green")
    axes[2].set_xlabel("GridSearchCV(n_jobs=-1) time (s, best)")
    axes[2].set_title("joblib backends")
    for ax in axes[1:]:
        ax.tick_params(axis="y", labelsize=8)
    axes[0].tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    C.save_figure(fig, path)


if __name__ == "__main__":
    main()

"""Where autopoly's fit time goes: cProfile of the benchmark scenarios and micro-benchmarks.

Not a comparison with peers (the ``bench_*`` scripts do that) but the diagnosis behind them:

1. cProfile of one fit per scenario (after an untimed warm-up fit): the autopoly functions by
   cumulative time and the most expensive calls overall (torch kernels show as built-ins such
   as ``linalg_qr``).
2. Micro-benchmarks that size the candidate optimizations: the per-chunk QR against a Gram
   (``syrk``) update and against the expansion; the raw-basis change; the per-step bookkeeping
   of the optimizer loop, added piece by piece to the hand-written loop; one torch thread
   against the default.

Run ``python benchmarks/profile_fit.py`` (``--quick`` for small sizes); writes
``benchmarks/results/profile.md``. The micro-benchmarks import two private helpers of
autopoly (``_features.binomial_basis_change``, ``_features.Expansion``) and skip themselves if
those move.
"""

import cProfile
import os
import pstats
import time
import warnings

import _common as C
import numpy as np


def best_of(fn, repeat=5):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# ------------------------------------------------------------------------------ scenarios


def scenarios(quick):
    from sklearn.datasets import load_diabetes
    from sklearn.preprocessing import StandardScaler

    from autopoly import TorchPolyRegressor

    rng = np.random.default_rng(0)
    n1 = 5_000 if quick else 100_000
    X1 = rng.standard_normal((n1, 5))
    y1 = X1[:, 0] ** 3 - X1[:, 1] * X1[:, 2] + rng.standard_normal(n1)
    Xd, yd = load_diabetes(return_X_y=True)
    Xd = StandardScaler().fit_transform(Xd)[:353]  # one training fold of the grid search
    yd = yd[:353]
    x = 5 * np.random.default_rng(0).standard_normal(20)
    steps = 50 if quick else 1000
    n2 = 20_000 if quick else 200_000
    X2 = rng.standard_normal((n2, 10))
    y2 = X2[:, 0] - 2 * X2[:, 1] * X2[:, 2] + 0.1 * rng.standard_normal(n2)

    def fit(X, y, **params):
        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                TorchPolyRegressor(**params).fit(X, y)

        return run

    return [
        (f"bench_fit poly: {n1:,} x 5, degree 3, defaults", fit(X1, y1, degree=3)),
        (
            "bench_gridsearch cell: diabetes fold (353 x 10), degree 3, defaults",
            fit(Xd, yd, degree=3),
        ),
        (
            "bench_gridsearch cell: diabetes fold (353 x 10), degree 1, defaults",
            fit(Xd, yd, degree=1),
        ),
        (
            f"bench_fit overhead: tutorial, {steps} NAdam steps, conditioning=False",
            fit(
                x.reshape(-1, 1),
                x**2 + 2 * x + 3,
                degree=2,
                optimizer="nadam",
                lr=0.01,
                max_iter=steps,
                tol=0.0,
                n_iter_no_change=steps,
                conditioning=False,
            ),
        ),
        (f"bench_memory: {n2:,} x 10, degree 3, defaults", fit(X2, y2, degree=3)),
    ]


def profile(fn, top):
    fn()  # warm-up: imports, lazy initialization
    wall = best_of(fn, 3)
    pr = cProfile.Profile()
    pr.enable()
    fn()
    pr.disable()
    stats = pstats.Stats(pr)
    total = max(stats.total_tt, 1e-12)
    own, cum = [], []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():
        where = _where(filename, line, func)
        own.append((tt, nc, where))
        if "/autopoly/" in filename.replace("\\", "/"):
            cum.append((ct, nc, where))
    own.sort(reverse=True)
    cum.sort(reverse=True)
    own_rows = [(w, n, t * 1e3, t / total) for t, n, w in own[:top]]
    cum_rows = [(w, n, t * 1e3, t / total) for t, n, w in cum[:top]]
    return wall, total, own_rows, cum_rows


def _where(filename, line, func):
    path = filename.replace("\\", "/")
    if "/autopoly/" in path:
        return f"autopoly/{path.split('/autopoly/')[-1]}:{line} {func}"
    if "/site-packages/" in path:
        return f"{path.split('/site-packages/')[-1]}:{line} {func}"
    if filename == "~":
        return func.strip("<>").replace("built-in method ", "")
    return f"{path.rsplit('/', 1)[-1]}:{line} {func}"


# ----------------------------------------------------------------------- micro-benchmarks


def micro_chunk(quick):
    """Per 32 MiB chunk of the 10-feature degree-3 design: QR updates vs Gram vs expansion."""
    import torch

    cols = 286 + 1  # design with the constant, plus the target column
    rows = (32 * 2**20) // (cols * 8)
    if quick:
        rows //= 8
    g = torch.Generator().manual_seed(0)
    B = torch.randn(rows, cols, dtype=torch.float64, generator=g)
    B_colmajor = B.T.contiguous().T  # how _accumulate now lays the chunk out (LAPACK's order)
    R = torch.linalg.qr(B[: 2 * cols], mode="r").R
    G = torch.zeros(cols, cols, dtype=torch.float64)

    def two_stage():
        Rc = torch.linalg.qr(B_colmajor, mode="r").R
        return torch.linalg.qr(torch.cat([R, Rc]), mode="r").R

    out = [
        (
            "qr(cat([R, chunk])), chunk row-major",
            best_of(lambda: torch.linalg.qr(torch.cat([R, B]), mode="r")),
        ),
        (
            "qr(cat([R, chunk])), chunk column-major (cat makes it row-major again)",
            best_of(lambda: torch.linalg.qr(torch.cat([R, B_colmajor]), mode="r")),
        ),
        ("qr(chunk) alone, column-major", best_of(lambda: torch.linalg.qr(B_colmajor, mode="r"))),
        (
            "two-stage: qr(chunk), then qr(cat([R, R_chunk])) (no copy of the chunk)",
            best_of(two_stage),
        ),
        (
            "Gram update G.addmm_(chunk.T, chunk), column-major",
            best_of(lambda: G.addmm_(B_colmajor.T, B_colmajor)),
        ),
        (
            "NumPy chunk.T @ chunk (what Ridge's cholesky solver does)",
            best_of(lambda: B.numpy().T @ B.numpy()),
        ),
    ]
    try:
        from autopoly._features import Expansion

        exp = Expansion(10, 0, 3, False)
        Z = torch.rand(rows, 10, dtype=torch.float64, generator=g) * 2 - 1
        out.append(("Expansion of the chunk (10 features -> 285 terms)", best_of(lambda: exp(Z))))
    except Exception as exc:  # a private helper moved: say so, do not fail
        out.append((f"Expansion: skipped ({type(exc).__name__}: {exc})", float("nan")))
    return rows, cols, out


def slice_expansion(ZT, degree):
    """PolynomialFeatures' recurrence on a ``(n_features, n)`` buffer: no gathers.

    Terms of degree ``d`` that end in feature ``j`` are the contiguous block of degree ``d - 1``
    terms from feature ``j``'s first one on, times row ``j`` (scikit-learn's ``_polynomial.py``
    computes its dense output this way). Same terms, same order as ``Expansion``.
    """
    n_features, n = ZT.shape
    from math import comb

    n_terms = comb(n_features + degree, degree) - 1
    out = ZT.new_empty((n_terms, n))
    out[:n_features] = ZT
    index = list(range(n_features)) + [n_features]
    current = n_features
    for _ in range(2, degree + 1):
        new_index, end = [], index[-1]
        for j in range(n_features):
            start = index[j]
            new_index.append(current)
            stop = current + end - start
            torch_mul(out[start:end], ZT[j], out[current:stop])
            current = stop
        new_index.append(current)
        index = new_index
    return out


def torch_mul(a, row, out):
    import torch

    torch.mul(a, row, out=out)


def micro_target1(quick):
    """Target 1's shape (1e5 x 5, degree 3): each stage of autopoly's pass against its rivals."""
    import torch
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures

    n = 5_000 if quick else 100_000
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 5))
    y = rng.standard_normal(n)
    Z = torch.tensor(X)
    ZT = Z.T.contiguous()
    out = []
    try:
        from autopoly._features import Expansion

        exp = Expansion(5, 0, 3, False)
        ref = exp(Z)
        out.append(("autopoly Expansion (gather + multiply per degree)", best_of(lambda: exp(Z))))
        ok = torch.allclose(slice_expansion(ZT, 3).T, ref)
    except Exception as exc:  # a private helper moved: say so, do not fail
        out.append((f"autopoly Expansion: skipped ({type(exc).__name__})", float("nan")))
        ok = None
    out.append(
        (
            f"slice recurrence, no gathers (same terms and order: {ok})",
            best_of(lambda: slice_expansion(ZT, 3)),
        )
    )
    pf = PolynomialFeatures(3, include_bias=True).fit(X[:10])
    out.append(
        (
            "sklearn PolynomialFeatures.transform (with the constant)",
            best_of(lambda: pf.transform(X)),
        )
    )
    D = torch.tensor(pf.transform(X))
    A = torch.cat([D, torch.tensor(y)[:, None]], 1).T.contiguous().T  # column-major [D, t]
    rows = (32 * 2**20) // (A.shape[1] * 8)

    def chunked_qr(two_stage):
        R = None
        for i in range(0, n, rows):
            C = A[i : i + rows]
            if two_stage:
                C = torch.linalg.qr(C, mode="r").R
            R = torch.linalg.qr(C if R is None else torch.cat([R, C]), mode="r").R
        return R

    out += [
        (
            f"QR pass as _accumulate does it (qr(cat([R, chunk])), {rows:,}-row chunks)",
            best_of(lambda: chunked_qr(False)),
        ),
        (
            "QR pass, two-stage (qr(chunk), then qr(cat([R, R_chunk])))",
            best_of(lambda: chunked_qr(True)),
        ),
        (
            "Gram pass in torch (A.T @ A) + Cholesky",
            best_of(lambda: torch.linalg.cholesky(A.T @ A)),
        ),
        ("Gram in NumPy (A.T @ A)", best_of(lambda: A.numpy().T @ A.numpy())),
        (
            "the peer: PolynomialFeatures + Ridge(cholesky) fit",
            best_of(
                lambda: make_pipeline(
                    PolynomialFeatures(3, include_bias=False), Ridge(alpha=0.0, solver="cholesky")
                ).fit(X, y),
                3,
            ),
        ),
    ]
    return n, out


PAGE_FAULT_CHILD = """
import json, resource, sys, time
import numpy as np
import torch
n, f, chunk, repeat, threads = (int(a) for a in sys.argv[1:6])
if threads > 0:
    torch.set_num_threads(threads)
import autopoly._data_pass as regressor
from autopoly import TorchPolyRegressor
regressor.CHUNK_BYTES = chunk
rng = np.random.default_rng(0)
X = rng.standard_normal((n, f))
y = X[:, 0] ** 3 + rng.standard_normal(n)
TorchPolyRegressor(degree=3).fit(X[:2000], y[:2000])  # imports and plans, not the big buffers
rows = []
for _ in range(repeat):
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    TorchPolyRegressor(degree=3).fit(X, y)
    t = time.perf_counter() - start
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    rows.append((t, r1.ru_minflt - r0.ru_minflt, (r1.ru_stime - r0.ru_stime) * 1e3))
print(json.dumps(rows))
"""


def micro_page_faults(quick):
    """The fit with the current row-chunk size against smaller chunks: time and page faults.

    Each configuration runs in a fresh process (a long-lived process's heap has often grown
    enough to hide the effect): the first fit there and the best of the next ones. Buffers over
    glibc's largest dynamic mmap threshold (32 MiB on 64-bit Linux) are mapped fresh on every
    allocation and unmapped on free, so every chunk's buffers page-fault anew. The child patches
    ``autopoly._data_pass.CHUNK_BYTES``.
    """
    import json
    import subprocess
    import sys

    import torch

    import autopoly._data_pass as regressor

    if not hasattr(regressor, "CHUNK_BYTES"):
        return [
            (
                "skipped: autopoly._data_pass.CHUNK_BYTES is gone",
                "",
                float("nan"),
                0,
                0.0,
                float("nan"),
            )
        ]
    current = regressor.CHUNK_BYTES
    threads = torch.get_num_threads()
    cases = [(5_000 if quick else 100_000, 5), (20_000 if quick else 200_000, 10)]
    out = []
    # The last configuration keeps the chunk size but lets glibc serve every buffer from its
    # heap (no mmap/munmap per buffer): what reusing preallocated buffers would save.
    reuse = {
        **os.environ,
        "MALLOC_MMAP_THRESHOLD_": str(2**30),
        "MALLOC_TRIM_THRESHOLD_": str(2**31),
    }
    configs = [
        (c, None, f"{c / 2**20:g} MiB") for c in dict.fromkeys([current, 16 * 2**20, 8 * 2**20])
    ]
    configs.append((current, reuse, f"{current / 2**20:g} MiB, MALLOC_MMAP_THRESHOLD_=1 GiB"))
    for n, f in cases:
        for chunk, env, label in configs:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    PAGE_FAULT_CHILD,
                    str(n),
                    str(f),
                    str(chunk),
                    "1" if quick else "3",
                    str(threads),
                ],
                capture_output=True,
                text=True,
                env=env,
            )
            if proc.returncode != 0:
                out.append(
                    (
                        f"{n:,} x {f}: failed ({proc.stderr.strip()[-200:]})",
                        "",
                        float("nan"),
                        0,
                        0.0,
                        float("nan"),
                    )
                )
                continue
            runs = json.loads(proc.stdout.strip().splitlines()[-1])
            first = runs[0]
            best = min(runs)
            out.append(
                (f"{n:,} x {f}, degree 3", label, first[0] * 1e3, first[1], first[2], best[0] * 1e3)
            )
    return out


def micro_basis_change():
    """The raw-basis change matrix, built twice per fit (penalty map and _store)."""
    out = []
    try:
        from autopoly._features import binomial_basis_change, monomial_powers
    except ImportError as exc:
        return [(f"skipped ({exc})", float("nan"), "")]
    for n_features, degree in ((5, 3), (10, 2), (10, 3)):
        powers = monomial_powers(n_features, 1, degree, False)
        offset = np.full(n_features, 0.1)
        scale = np.full(n_features, 2.0)
        t = best_of(lambda: binomial_basis_change(powers, offset, scale), 3)
        out.append(
            (
                f"{n_features} features, degree {degree} ({powers.shape[0]} terms)",
                t,
                f"{powers.shape[0] + 1}x{powers.shape[0] + 1}",
            )
        )
    return out


def micro_step_overhead(quick):
    """The hand loop, then the estimator's per-step bookkeeping added piece by piece."""
    import torch

    from autopoly import TorchPolyRegressor

    steps = 50 if quick else 1000
    x = 5 * np.random.default_rng(0).standard_normal(20)
    y = x**2 + 2 * x + 3
    xt, yt = torch.tensor(x), torch.tensor(y)
    F = torch.stack([torch.ones_like(xt), xt, xt**2], 1)
    w_t = torch.ones(20, dtype=torch.float64)

    def loop(clone=False, syncs=False, weighted=False, closure=False):
        w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.NAdam([w], lr=0.01)
        for _ in range(steps):
            if clone:
                before = w.detach().clone()  # noqa: F841  (the estimator's best-V candidate)

            def step_closure():
                opt.zero_grad()
                if weighted:
                    r = (F @ w).reshape(-1, 1) - yt.reshape(-1, 1)
                    per_output = (w_t @ (r * r)) / w_t.sum()
                    loss = (per_output / 1.0).sum()
                else:
                    per_output = None
                    loss = torch.mean((F @ w - yt) ** 2)
                loss.backward()
                if syncs:
                    float(loss)
                    if per_output is not None:
                        float(per_output.detach().mean())
                return loss

            if closure:
                opt.step(step_closure)
            else:
                step_closure()
                opt.step()
            if syncs:
                bool(torch.isfinite(w).all())

    def estimator():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            TorchPolyRegressor(
                degree=2,
                optimizer="nadam",
                lr=0.01,
                max_iter=steps,
                tol=0.0,
                n_iter_no_change=steps,
                conditioning=False,
            ).fit(x.reshape(-1, 1), y)

    variants = [
        ("hand loop (tutorial)", lambda: loop()),
        ("+ optimizer.step(closure)", lambda: loop(closure=True)),
        ("+ clone V every step (best-V candidate)", lambda: loop(clone=True, closure=True)),
        (
            "+ host syncs: float(loss), isfinite(V).all()",
            lambda: loop(clone=True, syncs=True, closure=True),
        ),
        (
            "+ weighted per-output loss graph and its float (w @ r**2 / sum(w), / J0, mean)",
            lambda: loop(clone=True, syncs=True, closure=True, weighted=True),
        ),
        ("TorchPolyRegressor (tutorial loop config)", estimator),
    ]
    repeat = 1 if quick else 7
    timed = C.interleaved(dict(variants), repeat)
    base = min(timed[variants[0][0]]["times"])
    return steps, [
        (name, min(r["times"]) / steps * 1e6, min(r["times"]) / base) for name, r in timed.items()
    ]


def micro_threads(quick):
    """Kernels of a fit with torch's default threads and with one, on the machine as it is
    and beside one competing CPU-bound process (a busy loop this function starts and stops).

    LAPACK's QR synchronizes its threads at every column panel: when another process holds a
    core, each of those barriers waits for a descheduled thread.
    """
    import subprocess
    import sys

    import torch

    default = torch.get_num_threads()
    cols = 287
    rows = (32 * 2**20) // (cols * 8) // (8 if quick else 1)
    g = torch.Generator().manual_seed(0)
    B = torch.randn(rows, cols, dtype=torch.float64, generator=g).T.contiguous().T
    S = torch.linalg.qr(B[: 2 * cols], mode="r").R
    kernels = [
        (f"qr of a {rows}x{cols} chunk (column-major)", lambda: torch.linalg.qr(B, mode="r")),
        ("Gram of the chunk (chunk.T @ chunk)", lambda: B.T @ B),
        (
            f"solve_triangular with the {cols - 1}x{cols - 1} factor (Whitening)",
            lambda: torch.linalg.solve_triangular(
                S[:-1, :-1], torch.eye(cols - 1, dtype=S.dtype), upper=True
            ),
        ),
    ]
    burner_code = "import time\nend = time.time() + 300\nwhile time.time() < end:\n    pass\n"
    out = []
    for condition in ("machine as it is", "plus one busy loop"):
        burner = None
        if condition != "machine as it is":
            burner = subprocess.Popen([sys.executable, "-c", burner_code])
            time.sleep(0.5)
        try:
            for name, fn in kernels:
                # Interleaved, so that a burst of outside load hits both thread counts alike.
                t_default, t_one = [], []
                fn()
                for _ in range(3 if quick else 7):
                    for n_threads, times in ((default, t_default), (1, t_one)):
                        torch.set_num_threads(n_threads)
                        try:
                            start = time.perf_counter()
                            fn()
                            times.append(time.perf_counter() - start)
                        finally:
                            torch.set_num_threads(default)
                med_d, med_1 = float(np.median(t_default)), float(np.median(t_one))
                out.append(
                    (
                        condition,
                        name,
                        min(t_default) * 1e3,
                        med_d * 1e3,
                        min(t_one) * 1e3,
                        med_1 * 1e3,
                        med_d / med_1,
                    )
                )
        finally:
            if burner is not None:
                burner.terminate()
                burner.wait()
    return default, out


def main():
    args = C.parser(__doc__.split("\n")[0]).parse_args()
    out = C.prepare_out(args.out)
    C.apply_threads(args.threads)
    quick = args.quick
    top = 12
    md = [
        "# profile_fit: where autopoly's fit time goes",
        "",
        "Generated by `benchmarks/profile_fit.py`"
        + (" --quick" if quick else "")
        + ". Times in milliseconds; *share* is of the profiled run's total.",
        "",
    ]
    import torch  # before the environment table, so that it shows the thread count

    env = C.environment()
    md += [C.environment_markdown(env), ""]

    summary = []
    for title, fn in scenarios(quick):
        print("profiling:", title, flush=True)
        wall, total, own_rows, cum_rows = profile(fn, top)
        summary.append((title, wall * 1e3))
        md += [
            f"## {title}",
            "",
            f"Best of 3 without the profiler: {wall * 1e3:.1f} ms; profiled run "
            f"{total * 1e3:.1f} ms.",
            "",
            "autopoly functions by cumulative time:",
            "",
            C.markdown_table(["function", "calls", "cumulative (ms)", "share"], cum_rows),
            "",
            "Most expensive calls (own time):",
            "",
            C.markdown_table(["function", "calls", "own (ms)", "share"], own_rows),
            "",
        ]

    print("micro-benchmarks", flush=True)
    rows, cols, chunk = micro_chunk(quick)
    md += [
        "## Micro: one 32 MiB chunk of the 10-feature, degree-3 design",
        "",
        f"Chunk of {rows:,} rows x {cols} columns (design, constant and target).",
        "",
        C.markdown_table(["operation", "time (ms)"], [(n, t * 1e3) for n, t in chunk]),
        "",
    ]
    n_t1, t1 = micro_target1(quick)
    md += [
        f"## Micro: target 1's shape ({n_t1:,} x 5, degree 3), stage by stage",
        "",
        C.markdown_table(["stage", "time (ms)"], [(n, t * 1e3) for n, t in t1]),
        "",
    ]
    md += [
        "## Micro: row-chunk size, page faults and system time",
        "",
        "Buffers larger than glibc's largest dynamic mmap threshold (32 MiB) are mapped "
        "fresh at every allocation, so each chunk's buffers fault their pages in again.",
        "",
        C.markdown_table(
            [
                "fit (fresh process)",
                "CHUNK_BYTES",
                "first fit (ms)",
                "its minor page faults",
                "its system time (ms)",
                "best later fit (ms)",
            ],
            micro_page_faults(quick),
        ),
        "",
    ]
    md += [
        "## Micro: raw-basis change (`binomial_basis_change`, built twice per fit)",
        "",
        C.markdown_table(
            ["terms", "time (ms)", "matrix"], [(n, t * 1e3, s) for n, t, s in micro_basis_change()]
        ),
        "",
    ]
    steps, over = micro_step_overhead(quick)
    md += [
        f"## Micro: per-step cost of {steps} NAdam steps on the tutorial task",
        "",
        C.markdown_table(["variant", "us per step", "ratio to hand loop"], over),
        "",
    ]
    default, threads = micro_threads(quick) if torch.get_num_threads() > 1 else (1, [])
    if threads:
        md += [
            f"## Micro: torch threads ({default} by default) against one",
            "",
            "With another CPU-bound process on the machine (here a busy loop started for "
            "the measurement), torch's OpenMP threads wait at every barrier for a "
            "descheduled thread.",
            "",
            "*Machine as it is* includes whatever other processes were running (see the "
            "load average above); the busy loop adds one more.",
            "",
            C.markdown_table(
                [
                    "condition",
                    "kernel",
                    f"{default} threads: best (ms)",
                    "median (ms)",
                    "1 thread: best (ms)",
                    "median (ms)",
                    "median ratio",
                ],
                threads,
            ),
            "",
        ]
    else:
        md += ["## Micro: torch threads", "", "Skipped: this run is limited to one thread.", ""]
    md += [
        "## Summary of the scenarios",
        "",
        C.markdown_table(["scenario", "fit (ms, best of 3)"], summary),
        "",
    ]
    (out / "profile.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()

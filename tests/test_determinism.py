"""Same ``random_state``, same bits on the CPU; threads give what a loop gives."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import threadpoolctl
import torch
from joblib import Parallel, delayed

from autopoly import TorchPolyRegressor

# Short runs of the stochastic optimizers are the point here, not their convergence.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

_rng = np.random.default_rng(2)
X = _rng.uniform(-1, 1, (120, 3))
Y = 2 - X[:, 0] + 3 * X[:, 1] * X[:, 2] - X[:, 2] ** 3 + 0.1 * _rng.standard_normal(120)
Y2 = np.c_[Y, np.sin(3 * X[:, 0])]

CONFIGS = {
    "lbfgs": dict(),
    "adam-mini-batches": dict(optimizer="adam", lr=0.05, batch_size=8, max_iter=30),
    "early-stopping": dict(degree=3, early_stopping=True),
    "early-stopping-mini-batches": dict(
        degree=3, early_stopping=True, optimizer="adam", lr=0.05, batch_size=8, max_iter=30
    ),
    "huber-sgd-momentum": dict(
        loss="huber", optimizer="sgd", lr=0.1, optimizer_kwargs={"momentum": 0.9}, max_iter=40
    ),
    "multi-output-float32": dict(degree=3, dtype="float32"),
}
STOCHASTIC = ["adam-mini-batches", "early-stopping", "early-stopping-mini-batches"]


def _fit(config, random_state):
    y = Y2 if config.startswith("multi-output") else Y
    return TorchPolyRegressor(**CONFIGS[config], random_state=random_state).fit(X, y)


def _bits(est):
    """Everything a fit produces that randomness could change, as exact bytes."""
    return (
        np.asarray(est.coef_).tobytes(),
        np.asarray(est.intercept_).tobytes(),
        est.n_iter_,
        np.asarray(est.loss_curve_).tobytes(),
        np.asarray(est.validation_scores_ or [], dtype=float).tobytes(),
    )


@pytest.mark.parametrize("config", CONFIGS)
def test_same_random_state_gives_bit_identical_fits(config):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        first = _bits(_fit(config, random_state=42))
        # Another global seed, global draws and other fits in between change nothing.
        torch.manual_seed(12345)
        torch.rand(1000)
        np.random.seed(7)  # noqa: NPY002 - the legacy global state is what is checked
        for other in ("adam-mini-batches", config):
            _fit(other, random_state=None)
            _fit(other, random_state=1)
        torch.manual_seed(99)
        assert _bits(_fit(config, random_state=42)) == first


@pytest.mark.parametrize("config", CONFIGS)
def test_equal_random_state_instances_give_bit_identical_fits(config):
    first = _bits(_fit(config, random_state=np.random.RandomState(3)))
    assert _bits(_fit(config, random_state=np.random.RandomState(3))) == first


@pytest.mark.parametrize("config", STOCHASTIC)
def test_random_state_drives_the_draws(config):
    # Guards the tests above against a random_state that is silently ignored.
    assert _bits(_fit(config, random_state=0))[0] != _bits(_fit(config, random_state=1))[0]


@pytest.mark.parametrize("random_state", [0, np.random.RandomState(0), None])
@pytest.mark.parametrize("config", STOCHASTIC)
def test_fit_never_touches_the_global_torch_generator(config, random_state):
    torch_state = torch.get_rng_state()
    numpy_state = np.random.get_state()  # noqa: NPY002 - the global state sklearn uses
    _fit(config, random_state=random_state)
    assert torch.equal(torch.get_rng_state(), torch_state)
    if random_state is not None:  # None means numpy's global generator, as in scikit-learn
        after = np.random.get_state()  # noqa: NPY002
        assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1])
        assert after[2:] == numpy_state[2:]


def test_partial_fit_is_bit_identical_across_runs():
    def run():
        est = TorchPolyRegressor(optimizer="adam", lr=0.05, batch_size=8, random_state=5)
        for rows in np.array_split(np.arange(len(X)), 4):
            est.partial_fit(X[rows], Y[rows])
        return _bits(est)

    first = run()
    _fit("adam-mini-batches", random_state=0)
    assert run() == first


# ------------------------------------------------------------------------------ threads

JOBS = [(config, seed) for config in CONFIGS for seed in (0, 1)]


def test_fits_in_threads_equal_fits_one_after_another():
    sequential = [_bits(_fit(config, seed)) for config, seed in JOBS]
    threaded = Parallel(n_jobs=4, backend="threading")(
        delayed(_fit)(config, seed) for config, seed in JOBS
    )
    assert [_bits(est) for est in threaded] == sequential


def test_partial_fits_in_threads_equal_partial_fits_one_after_another():
    chunks = np.array_split(np.arange(len(X)), 3)

    def run(seed):
        est = TorchPolyRegressor(
            degree=3, loss="huber", optimizer="adam", lr=0.1, random_state=seed
        )
        for rows in chunks:
            est.partial_fit(X[rows], Y[rows])
        return est

    sequential = [_bits(run(seed)) for seed in range(8)]
    threaded = Parallel(n_jobs=4, backend="threading")(delayed(run)(seed) for seed in range(8))
    assert [_bits(est) for est in threaded] == sequential


def _blas_threads():
    return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


def test_many_term_fits_run_blas_on_one_thread_and_threads_of_them_restore_it(monkeypatch):
    import autopoly._fitting as fitting

    inside = []
    original = fitting.fit

    def spy(*args, **kwargs):
        inside.append(max(_blas_threads()))
        return original(*args, **kwargs)

    monkeypatch.setattr(fitting, "fit", spy)
    rng = np.random.default_rng(0)
    X6 = rng.uniform(-1, 1, (200, 4))  # degree 6: 210 terms, a small problem
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        TorchPolyRegressor(degree=6).fit(X6, X6[:, 0] ** 2)
        assert inside == [1]
        assert _blas_threads() == before
        # Fits on pool threads leave the process-wide limit alone (no race to restore it),
        # also while the main thread fits.
        Parallel(n_jobs=4, backend="threading")(
            delayed(TorchPolyRegressor(degree=6).fit)(X6, X6[:, 0] + s) for s in range(16)
        )
        assert _blas_threads() == before
        with ThreadPoolExecutor(2) as pool:
            side = pool.submit(
                lambda: [TorchPolyRegressor(degree=6).fit(X6, X6[:, 1]) for _ in range(8)]
            )
            for s in range(8):
                TorchPolyRegressor(degree=6).fit(X6, X6[:, 0] + s)
            side.result()
        assert _blas_threads() == before


def test_one_model_predicts_the_same_from_many_threads():
    est = _fit("multi-output-float32", random_state=0)
    blocks = [np.roll(X, k, axis=0) for k in range(8)]
    sequential = [est.predict(block) for block in blocks]
    threaded = Parallel(n_jobs=4, backend="threading")(
        delayed(est.predict)(block) for block in blocks
    )
    for got, expected in zip(threaded, sequential):
        assert np.array_equal(got, expected)

"""What importing autopoly and its first fit cost: no optional dependency, no compiler stack.

Timings are the benchmarks' business (``benchmarks/bench_startup.py``); these tests check what
a fresh process imports, and that the default fit's closed-form L-BFGS step is the loop's.
"""

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.preprocessing import PolynomialFeatures

from autopoly import TorchPolyRegressor

# The Dask paths (``_dask``, ``_dask_reduce``) load with the first dask collection fitted.
OPTIONAL = [
    "dask",
    "matplotlib",
    "skops",
    "autopoly._cli",
    "autopoly.plotting",
    "autopoly._dask",
    "autopoly._dask_reduce",
]


def _fresh(code):
    """Run ``code`` in a fresh interpreter; it prints one JSON line, returned parsed."""
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=300
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # a fresh interpreter: seconds of importing torch
def test_import_autopoly_imports_no_optional_dependency_nor_the_compiler_stack():
    found = _fresh(
        "import json, sys\n"
        "import torch, sklearn.base\n"
        "before = 'pandas' in sys.modules\n"
        "import autopoly\n"
        f"watched = {OPTIONAL + ['torch._dynamo', 'sympy']!r}\n"
        "print(json.dumps({'imported': [m for m in watched if m in sys.modules],\n"
        "    'pandas_before': before, 'pandas_after': 'pandas' in sys.modules}))"
    )
    assert found["imported"] == []
    # scikit-learn imports pandas by itself where it is installed; autopoly adds no import of it.
    assert found["pandas_after"] == found["pandas_before"]


@pytest.mark.slow  # a fresh interpreter: seconds of importing torch
def test_default_fit_does_not_import_the_compiler_stack():
    # torch.optim imports torch._dynamo (sympy, torch.distributed: about a second) when the
    # first optimizer is built; the default squared-error fit builds none.
    found = _fresh(
        "import json, sys\n"
        "import numpy as np\n"
        "from autopoly import TorchPolyRegressor\n"
        "X = np.linspace(-3, 3, 20).reshape(-1, 1)\n"
        "for kw in ({}, {'alpha': 1.0}, {'warm_start': True}):\n"
        "    TorchPolyRegressor(**kw).fit(X, X.ravel() ** 2).partial_fit(X, X.ravel())\n"
        "print(json.dumps('torch._dynamo' in sys.modules))"
    )
    assert found is False


@pytest.mark.parametrize("n_outputs", [1, 2])
@pytest.mark.parametrize(
    "params",
    [{}, {"alpha": 0.5}, {"max_iter": 2}, {"tol": 0.0}, {"dtype": "float32"}, {"warm_start": True}],
)
def test_closed_form_lbfgs_step_records_what_the_loop_records(params, n_outputs):
    # verbose=1 runs the optimizer loop around the same closed-form step; the default takes
    # the step directly. Both must report the same fit.
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 3, (80, 2))
    Y = np.c_[X[:, 0] ** 2 - X[:, 1], X[:, 1] ** 3] + 0.1 * rng.standard_normal((80, 2))
    y = Y[:, 0] if n_outputs == 1 else Y
    direct = TorchPolyRegressor(degree=3, **params).fit(X, y)
    with contextlib.redirect_stdout(io.StringIO()):
        loop = TorchPolyRegressor(degree=3, verbose=1, **params).fit(X, y)
    if params.get("warm_start"):
        direct.fit(X, y)
        with contextlib.redirect_stdout(io.StringIO()):
            loop.fit(X, y)
    rtol = 1e-5 if params.get("dtype") == "float32" else 1e-12
    assert direct.n_iter_ == loop.n_iter_
    assert_allclose(direct.loss_curve_, loop.loss_curve_, rtol=rtol)
    assert_allclose(direct.best_loss_, loop.best_loss_, rtol=rtol)
    assert_allclose(direct.coef_, loop.coef_, rtol=rtol, atol=rtol * np.abs(loop.coef_).max())


def test_closed_form_lbfgs_step_is_torch_lbfgs_optimum():
    # Any optimizer_kwargs keep torch.optim.LBFGS itself (here its own default history_size).
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 3))
    y = X[:, 0] * X[:, 1] - X[:, 2] ** 3 + 0.1 * rng.standard_normal(200)
    direct = TorchPolyRegressor(degree=3).fit(X, y)
    torch_lbfgs = TorchPolyRegressor(degree=3, optimizer_kwargs={"history_size": 100}).fit(X, y)
    P = np.c_[np.ones(200), PolynomialFeatures(3, include_bias=False).fit_transform(X)]
    exact = np.linalg.lstsq(P, y, rcond=None)[0]
    assert_allclose(direct.intercept_, exact[0], rtol=1e-12, atol=1e-12)
    assert_allclose(direct.coef_, exact[1:], rtol=1e-11, atol=1e-12)
    assert_allclose(torch_lbfgs.coef_, exact[1:], rtol=1e-8, atol=1e-8)
    assert direct.n_iter_ <= torch_lbfgs.n_iter_

import os

# scikit-learn's array-API checks (torch inputs under array_api_dispatch) need SciPy's
# array-API mode, which is read when SciPy is first imported: set it before anything imports it.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np
import pytest

# scikit-learn checks that cost many seconds by their nature (the sample-weight check fits a
# degree-3 polynomial of 30 features: 5456 terms) run in the full suite only.
SLOW_CHECKS = ("check_sample_weight_equivalence_on_dense_data",)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` what the fast loop leaves out besides the tests marked by hand.

    A test that starts a Dask ``LocalCluster`` (the ``client`` fixture: seconds of process
    start-up) and the checks in ``SLOW_CHECKS``. Runs before ``-m`` deselects.
    """
    for item in items:
        uses_cluster = "client" in getattr(item, "fixturenames", ())
        if uses_cluster or any(check in item.name for check in SLOW_CHECKS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def rng():
    return np.random.default_rng(0)

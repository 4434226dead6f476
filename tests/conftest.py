import os

# scikit-learn's array-API checks (torch inputs under array_api_dispatch) need SciPy's
# array-API mode, which is read when SciPy is first imported: set it before anything imports it.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(0)

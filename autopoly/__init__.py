"""autopoly: polynomial regression as a scikit-learn estimator, fitted with PyTorch."""

from ._regressor import TorchPolyRegressor
from ._train import DivergenceError
from ._version import __version__

# Tracebacks and reprs name the public path.
DivergenceError.__module__ = __name__

__all__ = ["TorchPolyRegressor", "DivergenceError", "__version__"]

"""autopoly: polynomial regression as a scikit-learn estimator, fitted with PyTorch."""

from ._regressor import TorchPolyRegressor
from ._train import DivergenceError
from ._version import __version__

__all__ = ["TorchPolyRegressor", "DivergenceError", "__version__"]

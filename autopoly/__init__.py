"""autopoly: polynomial regression as a scikit-learn estimator, fitted with PyTorch."""

from ._cv import TorchPolyRegressorCV
from ._module import PolynomialModule
from ._rank import RankDeficiencyWarning
from ._regressor import TorchPolyRegressor
from ._train import DivergenceError
from ._version import __version__

# Tracebacks and reprs name the public path.
DivergenceError.__module__ = __name__
PolynomialModule.__module__ = __name__
RankDeficiencyWarning.__module__ = __name__

__all__ = [
    "TorchPolyRegressor",
    "TorchPolyRegressorCV",
    "PolynomialModule",
    "RankDeficiencyWarning",
    "DivergenceError",
    "__version__",
]

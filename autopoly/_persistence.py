"""Checks on a saved estimator state (pickle, joblib, skops) when it is loaded."""

from ._version import __version__


def check_state_version(state):
    """Raise a clear error when ``state`` was saved by an incompatible autopoly version."""
    saved = state.get("_autopoly_version")
    if saved is None:
        return
    if saved.split(".")[:2] != __version__.split(".")[:2]:
        raise ValueError(
            f"This TorchPolyRegressor was saved by autopoly {saved} and cannot be loaded by "
            f"autopoly {__version__}: the fitted state changed between these versions. "
            f"Install autopoly=={saved} to load it, or refit the model."
        )

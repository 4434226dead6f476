"""The estimator's fitted state: kept whole when a fit fails, checked when it is loaded."""

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


class restore_on_error:
    """Put the estimator's attributes back as they were if the block raises."""

    def __init__(self, est):
        self.est = est

    def __enter__(self):
        self.saved = dict(vars(self.est))

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            current = vars(self.est)
            current.clear()
            current.update(self.saved)
        return False

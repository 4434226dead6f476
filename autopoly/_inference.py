"""Statistical inference for squared-error fits, from the stored triangular factor."""


class InferenceMixin:
    """Coefficient covariance, standard errors, intervals and a summary (squared error only)."""

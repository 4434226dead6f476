"""scikit-learn's own estimator checks over several configurations."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from autopoly import TorchPolyRegressor

CONFIGS = [
    TorchPolyRegressor(),
    TorchPolyRegressor(degree=3, dtype="float32"),
    TorchPolyRegressor(batch_size=16, optimizer="adam", lr=0.05, max_iter=300, random_state=0),
    TorchPolyRegressor(optimizer="adam", lr=0.1, max_iter=500),
    TorchPolyRegressor(degree=3, optimizer="sgd", lr=0.25, alpha=1e-3),
    TorchPolyRegressor(degree=(1, 2), interaction_only=True, loss="huber", alpha=0.1),
    TorchPolyRegressor(early_stopping=True, random_state=0),
]


def _expected_failed_checks(estimator):
    reason = None
    if estimator.batch_size is not None:
        reason = "mini-batches shuffle rows, so repeated rows and weights see other batches"
    elif estimator.early_stopping:
        reason = "the validation split draws rows, so repeated rows and weights split differently"
    elif estimator.dtype == "float32":
        reason = "float32 compute agrees to ~1e-6; the check compares at rtol=1e-7"
    elif estimator.optimizer == "adam":
        reason = "constant-lr Adam stops ~1e-4 from the optimum, where rounding can shift the stop"
    return {} if reason is None else {"check_sample_weight_equivalence_on_dense_data": reason}


@parametrize_with_checks(CONFIGS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)

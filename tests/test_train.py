"""The step loop's parts on their own: step, epoch, stopper and the last-step rule, no estimator.

The objectives are small fakes with the methods of ``autopoly._objective``: a quadratic
``||V - C||**2`` (Hessian twice the identity) and a row-wise least squares for mini-batches.
"""

import dataclasses
import math

import pytest
import torch
from numpy.testing import assert_allclose

from autopoly._train import (
    DIVERGENCE_FACTOR,
    DivergenceError,
    LoopSettings,
    Stopper,
    full_batch_step,
    keep_last_step_if_no_worse,
    last_step_converged,
    minibatch_epoch,
    train,
)

USER_SCALE = 3.0  # the fakes report the user's loss as this times the normalized one


class Quadratic:
    """``J(V) = ||V - C||**2``, reported in the user's units as ``USER_SCALE * J``."""

    def __init__(self, C):
        self.C = torch.as_tensor(C, dtype=torch.float64).reshape(-1, 1)
        self.constant_model = float((self.C * self.C).sum())
        self.evaluations = 0

    def value(self, V):
        diff = V - self.C
        return (diff * diff).sum()

    def evaluate(self, V, rows=None):
        self.evaluations += 1
        value = self.value(V)
        value.backward()
        return value.detach(), None

    def evaluate_value(self, V):
        return self.value(V), None

    def user_units(self, value, per_output):
        return value * USER_SCALE


class LeastSquares(Quadratic):
    """``J(V) = mean_i (a_i @ V - b_i)**2`` over all rows or the given ones."""

    def __init__(self, A, b):
        self.A = torch.as_tensor(A, dtype=torch.float64)
        self.b = torch.as_tensor(b, dtype=torch.float64).reshape(-1, 1)
        self.batches = []
        with torch.no_grad():
            self.constant_model = float(self.value(torch.zeros(self.A.shape[1], 1)))

    def value(self, V, rows=None):
        A, b = (self.A, self.b) if rows is None else (self.A[rows], self.b[rows])
        r = A @ V.to(A.dtype) - b
        return (r * r).mean()

    def evaluate(self, V, rows=None):
        self.batches.append(None if rows is None else rows.tolist())
        value = self.value(V, rows)
        value.backward()
        return value.detach(), None


def _params(values):
    return torch.tensor(values, dtype=torch.float64).reshape(-1, 1).requires_grad_(True)


def _settings(**changes):
    base = dict(max_iter=100, tol=1e-3, n_iter_no_change=3, lr=0.1)
    return LoopSettings(**{**base, **changes})


def _train(V, objective, optimizer, generator=None, validation=None, **changes):
    kw = dict(lr=optimizer.defaults["lr"], max_iter=100, tol=1e-6, n_iter_no_change=5)
    return train(
        V,
        objective,
        optimizer,
        LoopSettings(**{**kw, **changes}),
        generator=generator,
        validation=validation,
    )


# ------------------------------------------------------------------------ settings and step


def test_loop_settings_are_frozen_with_stream_defaults():
    s = _settings()
    stream = (s.batch_size, s.n_rows, s.keep_best, s.smooth, s.verbose)
    assert stream == (None, None, True, False, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.tol = 0.0


def test_full_batch_step_reports_the_starting_point_and_steps():
    objective = Quadratic([1.0, -2.0])
    V = _params([0.0, 0.0])
    optimizer = torch.optim.SGD([V], lr=0.25)
    loss, user, grad_max = full_batch_step(V, objective, optimizer, tol=1e-6)
    assert loss == 5.0 and user == 5.0 * USER_SCALE
    assert grad_max == 4.0  # max |2 (V - C)|
    assert_allclose(V.detach().reshape(-1), [0.5, -1.0])  # V - lr * 2 (V - C)


def test_full_batch_step_skips_the_gradient_reduction_without_a_positive_tol():
    V = _params([0.0, 0.0])
    _, _, grad_max = full_batch_step(V, Quadratic([1.0, 1.0]), torch.optim.SGD([V], lr=0.1), 0.0)
    assert grad_max == math.inf


def test_full_batch_step_records_only_the_first_evaluation_of_a_line_search():
    objective = Quadratic([1.0, -2.0, 0.5])
    V = _params([0.0, 0.0, 0.0])
    loss, _, grad_max = full_batch_step(V, objective, torch.optim.LBFGS([V]), tol=1e-6)
    assert objective.evaluations > 1
    assert loss == 5.25 and grad_max == 4.0  # the start's, not the line search's later points
    assert_allclose(V.detach().reshape(-1), [1.0, -2.0, 0.5], atol=1e-8)


def test_minibatch_epoch_covers_all_rows_once_in_shuffled_batches():
    A = torch.arange(1.0, 11.0).reshape(-1, 1)
    objective = LeastSquares(A, 2 * A)
    V = _params([0.0])
    optimizer = torch.optim.SGD([V], lr=0.0)  # lr=0: every batch is scored at the start
    loss, user, grad_max = minibatch_epoch(
        V, objective, optimizer, batch_size=4, n_rows=10, generator=torch.Generator().manual_seed(0)
    )
    assert [len(rows) for rows in objective.batches] == [4, 4, 2]
    assert sorted(sum(objective.batches, [])) == list(range(10))
    assert objective.batches != [list(range(4)), list(range(4, 8)), [8, 9]]  # shuffled
    assert_allclose(loss, objective.constant_model)  # the row-weighted mean of the batches
    assert_allclose(user, USER_SCALE * loss)
    assert grad_max == math.inf


def test_minibatch_epochs_follow_the_generator():
    A = torch.linspace(-1, 1, 12).reshape(-1, 1)

    def run(seed):
        V = _params([0.0])
        optimizer = torch.optim.SGD([V], lr=0.3)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(3):
            minibatch_epoch(V, LeastSquares(A, 3 * A - 1), optimizer, 5, 12, generator)
        return V.detach().clone()

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


# ---------------------------------------------------------------------------------- stopper


def _stopper(V=None, objective=None, validation=None, **changes):
    V = _params([0.0, 0.0]) if V is None else V
    objective = Quadratic([1.0, 1.0]) if objective is None else objective
    return Stopper(_settings(**changes), objective, V, validation=validation)


def test_stopper_converges_when_the_gradient_is_within_tol():
    stopper = _stopper()
    assert not stopper.update(1, 2.0, 6.0, grad_max=1.0)
    assert stopper.update(2, 1.0, 3.0, grad_max=1e-3)  # grad_max <= tol
    assert stopper.converged and stopper.stalled_gradient is None
    assert stopper.n_iter == 2 and stopper.loss_curve == [6.0, 3.0] and stopper.best_user == 3.0


def test_stopper_stall_counter_resets_on_an_improvement_by_more_than_tol():
    stopper = _stopper()
    for it, loss in enumerate([1.0, 0.9995, 0.9991, 0.5, 0.4999], start=1):
        assert not stopper.update(it, loss, loss, grad_max=1.0)
    # 0.9995 and 0.9991 improve by less than tol; 0.5 resets the count; 0.4999 stalls again.
    assert stopper.stall == 1 and stopper.best == 0.4999


def test_stopper_full_batch_stall_needs_a_flat_loss():
    stopper = _stopper()
    # Momentum overshoot: no new best for 3 iterations, but the losses are far apart.
    for it, loss in enumerate([1.0, 1.5, 2.0, 1.2, 1.4], start=1):
        assert not stopper.update(it, loss, loss, grad_max=0.5)
    assert stopper.stall == 4
    # Three losses within tol of each other: flat, and a non-smooth loss has converged.
    assert not stopper.update(6, 1.0004, 1.0004, grad_max=0.5)
    assert not stopper.update(7, 1.0002, 1.0002, grad_max=0.5)
    assert stopper.update(8, 1.0003, 1.0003, grad_max=0.5)
    assert stopper.converged and stopper.stalled_gradient is None


def test_stopper_minibatch_stall_needs_no_flat_loss():
    stopper = _stopper(batch_size=4, n_rows=10)
    for it, loss in enumerate([1.0, 1.5, 2.0], start=1):
        assert not stopper.update(it, loss, loss, grad_max=math.inf)
    assert stopper.update(4, 1.2, 1.2, grad_max=math.inf)
    assert stopper.converged


@pytest.mark.parametrize(
    "first_grad, grad_max, stalled",
    [(1.0, 0.5, True), (1.0, 0.009, False), (10.0, 0.2, True), (10.0, 0.05, False)],
)
def test_stopper_smooth_stall_far_from_the_optimum_records_the_gradient(
    first_grad, grad_max, stalled
):
    """A smooth loss that stalls with its gradient above sqrt(tol) and 1% of the first one."""
    stopper = _stopper(smooth=True, tol=1e-4)  # sqrt(tol) = 0.01
    for it in (1, 2, 3):
        assert not stopper.update(it, 1.0, 1.0, grad_max=first_grad)
    assert stopper.update(4, 1.0, 1.0, grad_max=grad_max)
    assert stopper.converged is not stalled
    assert stopper.stalled_gradient == (grad_max if stalled else None)


def test_sgd_at_lr_1_oscillates_on_a_quadratic_and_stops_unconverged():
    # With Hessian 2I, V <- V - 1 * 2 (V - C) = 2C - V: the loss never moves, the gradient stays.
    C = [1.0, -2.0]
    V = _params([0.0, 0.0])
    result = _train(V, Quadratic(C), torch.optim.SGD([V], lr=1.0), smooth=True)
    assert not result.converged
    assert result.stalled_gradient == 4.0
    assert result.n_iter == 6  # the first loss, then n_iter_no_change=5 without progress
    assert result.loss_curve == [5.0 * USER_SCALE] * 6
    # The same stall on a non-smooth objective counts as convergence.
    V = _params([0.0, 0.0])
    result = _train(V, Quadratic(C), torch.optim.SGD([V], lr=1.0), smooth=False)
    assert result.converged and result.stalled_gradient is None


@pytest.mark.parametrize("loss", [math.nan, math.inf])
def test_stopper_raises_on_a_non_finite_loss(loss):
    stopper = _stopper()
    stopper.update(1, 1.0, 1.0, grad_max=1.0)
    with pytest.raises(DivergenceError, match="non-finite or grew a millionfold at iteration 2"):
        stopper.update(2, loss, loss, grad_max=1.0)


def test_stopper_ceiling_is_a_millionfold_the_start_or_the_constant_model():
    objective = Quadratic([1.0, 1.0])  # constant model: 2
    stopper = _stopper(objective=objective)
    stopper.update(1, 4.0, 4.0, grad_max=1.0)  # a start worse than the constant model
    assert stopper.ceiling == DIVERGENCE_FACTOR * 4.0
    assert not stopper.update(2, 3.9e6, 3.9e6, grad_max=1.0)
    with pytest.raises(DivergenceError, match="iteration 3"):
        stopper.update(3, 4.1e6, 4.1e6, grad_max=1.0)
    # One partial_fit call: from the constant model alone, whatever its start.
    stopper = _stopper(objective=objective, keep_best=False)
    assert stopper.ceiling == DIVERGENCE_FACTOR * 2.0
    # Mini-batches: from the start's loss, measured before any step.
    stopper = _stopper(V=_params([4.0, 1.0]), objective=objective, batch_size=2, n_rows=4)
    assert stopper.ceiling == DIVERGENCE_FACTOR * 9.0


def test_train_raises_when_the_loss_grows_a_millionfold():
    # lr=10 multiplies V - C by -19 per step: the loss by 361.
    V = _params([0.0, 0.0])
    optimizer = torch.optim.SGD([V], lr=10.0)
    with pytest.raises(DivergenceError, match=r"iteration 4 with optimizer=SGD and lr=10.*lr=1\b"):
        _train(V, Quadratic([1.0, 1.0]), optimizer)


def test_stopper_keeps_the_parameters_a_full_batch_step_started_from():
    V = _params([0.0])
    stopper = _stopper(V=V, objective=Quadratic([1.0]))
    points = [1.0, 2.0, 3.0, 4.0]  # V after each step
    for it, (loss, after) in enumerate(zip([3.0, 1.0, 2.0, 1.5], points), start=1):
        with torch.no_grad():
            V.fill_(after)
        stopper.update(it, loss, loss, grad_max=1.0)
    # The loss 1.0 of iteration 2 was measured before its step, at V = 1.0.
    assert stopper.best == 1.0 and stopper.best_V.item() == 1.0


def test_stopper_keeps_the_parameters_after_the_best_epoch():
    V = _params([0.0])
    stopper = _stopper(V=V, objective=Quadratic([1.0]), batch_size=1, n_rows=2)
    for it, (loss, after) in enumerate(zip([3.0, 1.0, 2.0], [1.0, 2.0, 3.0]), start=1):
        with torch.no_grad():
            V.fill_(after)
        stopper.update(it, loss, loss, grad_max=math.inf)
    assert stopper.best_V.item() == 2.0


def test_stopper_tracks_the_validation_score_for_early_stopping():
    V = _params([0.0])
    scores = iter([0.1, 0.5, 0.4, 0.505, 0.3])
    seen = []

    def validation(params):
        seen.append(params.item())
        return next(scores)

    stopper = _stopper(V=V, objective=Quadratic([1.0]), validation=validation, tol=0.01)
    stops = []
    for it in range(1, 6):
        with torch.no_grad():
            V.fill_(float(it))
        stops.append(stopper.update(it, 1.0 / it, 1.0 / it, grad_max=1e-9))
    # The gradient test does not apply; 0.505 is a new best but not by tol, so it stalls.
    assert stops == [False, False, False, False, True]
    assert stopper.converged and seen == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert stopper.validation_scores == [0.1, 0.5, 0.4, 0.505, 0.3]
    assert stopper.best_validation_score == 0.505 and stopper.best_V.item() == 4.0
    assert stopper.best == 0.2  # the training loss is still tracked


# ------------------------------------------------------------------------- after the loop


def test_the_last_step_is_kept_only_if_no_worse():
    objective = Quadratic([1.0])
    V = _params([0.0])
    stopper = _stopper(V=V, objective=objective)
    stopper.update(1, 1.0, 1.0 * USER_SCALE, grad_max=2.0)  # at V = 0
    with torch.no_grad():
        V.fill_(3.0)  # loss 4: worse than the best
        assert keep_last_step_if_no_worse(stopper, objective, V).item() == 0.0
        V.fill_(0.5)  # loss 0.25: better
        assert keep_last_step_if_no_worse(stopper, objective, V).item() == 0.5
    assert stopper.best == 0.25 and stopper.best_user == 0.25 * USER_SCALE


def test_without_keep_best_the_last_step_is_kept_but_must_be_finite():
    objective = Quadratic([1.0])
    V = _params([0.0])
    stopper = _stopper(V=V, objective=objective, keep_best=False)
    stopper.update(1, 1.0, 1.0, grad_max=2.0)
    with torch.no_grad():
        V.fill_(3.0)
        assert keep_last_step_if_no_worse(stopper, objective, V).item() == 3.0
        V.fill_(math.nan)
        with pytest.raises(DivergenceError, match="The parameters became non-finite"):
            keep_last_step_if_no_worse(stopper, objective, V)


def test_last_step_converged_tests_the_gradient_at_the_last_parameters():
    objective = Quadratic([1.0, 2.0])
    V = _params([1.0, 2.0 + 1e-4])
    optimizer = torch.optim.SGD([V], lr=0.1)
    converged, (value, _) = last_step_converged(V, objective, optimizer, tol=1e-3)
    assert converged and value.item() == pytest.approx(1e-8)
    assert not last_step_converged(V, objective, optimizer, tol=1e-5)[0]


def test_train_with_one_lbfgs_iteration_converges_at_its_last_step():
    V = _params([0.0, 0.0, 0.0])
    result = _train(V, Quadratic([1.0, -2.0, 0.5]), torch.optim.LBFGS([V]), max_iter=1)
    assert result.n_iter == 1 and result.converged
    assert_allclose(V.detach().reshape(-1), [1.0, -2.0, 0.5], atol=1e-8)
    assert result.best_loss < 1e-12 and result.loss_curve == [5.25 * USER_SCALE]


# -------------------------------------------------------------------------------- the loop


class Scripted:
    """An optimizer that scores the current point, then moves ``V`` to the next scripted one."""

    def __init__(self, V, points):
        self.V, self.points, self.defaults = V, iter(points), {"lr": 0.1}

    def zero_grad(self):
        self.V.grad = None

    def step(self, closure):
        closure()
        with torch.no_grad():
            self.V.fill_(next(self.points))


def test_train_returns_the_best_parameters_not_the_last():
    V = _params([0.0])
    # Scored at 0, 0.9, 3 and 1.5 (losses 1, 0.01, 4, 0.25); the last step lands on 4 (loss 9).
    result = _train(V, Quadratic([1.0]), Scripted(V, [0.9, 3.0, 1.5, 4.0]), max_iter=4, tol=0.0)
    assert not result.converged and result.n_iter == 4
    assert_allclose(result.loss_curve, [3.0, 0.03, 12.0, 0.75])
    assert V.item() == 0.9 and result.best_loss == pytest.approx(0.03)


def test_train_without_keep_best_returns_the_last_step():
    V = _params([0.0])
    result = _train(
        V,
        Quadratic([1.0]),
        Scripted(V, [0.9, 3.0, 1.5, 4.0]),
        max_iter=4,
        tol=0.0,
        keep_best=False,
    )
    assert V.item() == 4.0 and result.best_loss == pytest.approx(0.03)


def test_train_keeps_an_unscored_last_step_that_is_better():
    V = _params([0.0])
    result = _train(V, Quadratic([1.0]), Scripted(V, [0.9, 3.0, 1.5, 1.05]), max_iter=4, tol=0.0)
    assert V.item() == 1.05 and result.best_loss == pytest.approx(0.0025 * USER_SCALE)


def test_train_on_minibatches_stops_on_the_epoch_loss():
    A = torch.linspace(-1, 1, 16).reshape(-1, 1)
    V = _params([0.0])
    result = _train(
        V,
        LeastSquares(A, 2 * A),
        torch.optim.SGD([V], lr=0.5),
        batch_size=5,
        n_rows=16,
        generator=torch.Generator().manual_seed(0),
        tol=1e-4,
        n_iter_no_change=2,
    )
    assert result.converged and result.n_iter < 100
    assert result.stalled_gradient is None and result.validation_scores == []
    assert_allclose(V.item(), 2.0, atol=1e-3)


def test_train_prints_progress_and_the_stalled_state(capsys):
    V = _params([0.0, 0.0])
    result = _train(
        V,
        Quadratic([1.0, -2.0]),
        torch.optim.SGD([V], lr=1.0),
        verbose=1,
        smooth=True,
        n_iter_no_change=12,
    )
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines[:-1]] == ["Iteration 1", "Iteration 10"]
    assert lines[-1] == (
        "stopped unconverged (the loss stalled, its gradient did not vanish) after "
        f"{result.n_iter} iterations, best loss = {result.best_loss:.8g}"
    )

"""
==========================================
The fitted surface as a PyTorch module
==========================================

:meth:`~autopoly.TorchPolyRegressor.to_torch` turns a fitted polynomial into a
``torch.nn.Module`` that computes what ``predict`` computes, in float64, and is differentiable
with respect to its input. Here a cubic surface in two features is fitted to noisy samples,
exported with ``torch.export``, and its gradient at every point of a grid is taken with
``torch.func.vmap(torch.func.jacrev(...))`` and checked against the derivative written out
from ``coef_`` and against finite differences.
"""

# %%
# Fit a cubic surface to noisy samples
# ------------------------------------
import matplotlib.pyplot as plt
import numpy as np
import torch

from autopoly import TorchPolyRegressor

rng = np.random.default_rng(0)
X = rng.uniform(-2, 2, size=(400, 2))


def surface(x0, x1):
    return 1 + x0 - 0.5 * x1 + 0.3 * x0**2 * x1 - 0.2 * x0**3 + 0.1 * x1**3


y = surface(X[:, 0], X[:, 1]) + 0.1 * rng.standard_normal(len(X))
model = TorchPolyRegressor(degree=3).fit(X, y)
for name, c in zip(model.get_feature_names_out(["x0", "x1"]), model.coef_):
    print(f"{name:8}{c:+.3f}")

# %%
# The module, and an exported program
# -----------------------------------
# The module takes raw rows ``(n, 2)`` and returns ``(n,)``. ``torch.export`` traces it into a
# standalone program (here with a dynamic number of rows) that gives the same numbers.
module = model.to_torch()
print(module)
grid_1d = np.linspace(-2, 2, 41)
G0, G1 = np.meshgrid(grid_1d, grid_1d)
grid = torch.as_tensor(np.column_stack([G0.ravel(), G1.ravel()]))

rows = torch.export.Dim("rows")
exported = torch.export.export(module, (grid,), dynamic_shapes={"x": {0: rows}})
with torch.no_grad():
    values = exported.module()(grid).numpy()
print("largest difference from predict:", np.abs(values - model.predict(grid.numpy())).max())

# %%
# The gradient of every grid point at once
# ----------------------------------------
# A 1-D input is one row, for which the module returns a scalar: ``jacrev`` of it is the
# gradient of that row, and ``vmap`` maps it over all rows.
gradient = torch.func.vmap(torch.func.jacrev(module))(grid).numpy()  # (n, 2)

# The exported program is differentiable too. It was traced for batches, not single rows, so
# there the per-row gradient comes from autograd: rows are independent, so the gradient of the
# sum over rows is each row's gradient.
grid_var = grid.clone().requires_grad_(True)
exported.module()(grid_var).sum().backward()
print("exported program vs vmap(jacrev):", np.abs(grid_var.grad.numpy() - gradient).max())

# The same derivative written out from the raw-basis coefficients: d/dx_j of
# sum_i coef_i * prod_k x_k ** p_ik.
Xg = grid.numpy()
analytic = np.zeros_like(Xg)
for j in range(2):
    lowered = model.powers_.copy()
    lowered[:, j] -= 1
    has = model.powers_[:, j] > 0
    terms = np.prod(Xg[:, None, :] ** lowered[has][None], axis=-1) * model.powers_[has, j]
    analytic[:, j] = terms @ model.coef_[has]

# Central finite differences of predict, for a reference that needs no formula.
h = 1e-5
finite = np.column_stack(
    [(model.predict(Xg + h * e) - model.predict(Xg - h * e)) / (2 * h) for e in np.eye(2)]
)
scale = np.abs(analytic).max()
print(f"autodiff vs analytic, relative: {np.abs(gradient - analytic).max() / scale:.1e}")
print(f"finite differences vs analytic, relative: {np.abs(finite - analytic).max() / scale:.1e}")

# %%
# The surface with its gradient
# -----------------------------
# Arrows point uphill; their length is the slope. The right panel shows how far the
# autodiff gradient and finite differences are from the analytic derivative: autodiff is
# exact to rounding, finite differences carry truncation and cancellation errors.
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
contour = left.contourf(G0, G1, values.reshape(G0.shape), levels=20, cmap="viridis")
fig.colorbar(contour, ax=left, label="fitted surface")
every = (slice(None, None, 4), slice(None, None, 4))
left.quiver(
    G0[every],
    G1[every],
    gradient[:, 0].reshape(G0.shape)[every],
    gradient[:, 1].reshape(G0.shape)[every],
    color="white",
)
left.scatter(X[:, 0], X[:, 1], s=4, color="black", alpha=0.3, label="samples")
left.set_xlabel("x0")
left.set_ylabel("x1")
left.set_title("Fitted surface and its gradient (vmap(jacrev))")
left.legend(loc="lower left")

errors = {
    "autodiff (vmap(jacrev))": np.abs(gradient - analytic).ravel() / scale,
    "central finite differences": np.abs(finite - analytic).ravel() / scale,
}
bins = np.logspace(-18, -8, 41)
for label, err in errors.items():
    right.hist(np.maximum(err, bins[0]), bins=bins, alpha=0.7, label=label)
right.set_xscale("log")
right.set_xlabel("|gradient − analytic| / max |analytic|  (zeros in the first bin)")
right.set_ylabel("grid points × components")
right.set_title("Gradient error against the derivative from coef_")
right.legend()
plt.show()

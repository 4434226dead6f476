"""
==========================================
Robust losses against outliers
==========================================

The squared error lets a few gross outliers pull the whole curve towards them. The Huber loss
(quadratic for small residuals, linear beyond ``epsilon``) and the absolute error grow only
linearly with the residual, so the same outliers move them much less. All three are fitted
through torch autograd by the same optimizer loop; only ``loss`` changes.
"""

# %%
# Data: a quadratic, mild noise, and 10% of the points shifted far up
# -------------------------------------------------------------------
import matplotlib.pyplot as plt
import numpy as np

from autopoly import TorchPolyRegressor

rng = np.random.default_rng(0)
n = 100
X = rng.uniform(-3, 3, size=(n, 1))
true_coef = {"1": 1.0, "x": -1.0, "x^2": 0.5}
y = true_coef["x^2"] * X[:, 0] ** 2 + true_coef["x"] * X[:, 0] + true_coef["1"]
y += rng.normal(scale=0.3, size=n)
outliers = rng.choice(n, size=10, replace=False)
y[outliers] += rng.uniform(8, 12, size=10)

# %%
# One model per loss
# ------------------
# ``epsilon`` is in the units of ``y``: residuals beyond 1.0 count linearly in the Huber loss.
models = {
    "squared_error": TorchPolyRegressor(degree=2, loss="squared_error"),
    "huber": TorchPolyRegressor(degree=2, loss="huber", epsilon=1.0),
    "absolute_error": TorchPolyRegressor(degree=2, loss="absolute_error"),
}
for model in models.values():
    model.fit(X, y)
    print(f"{model.loss:15} converged in {model.n_iter_} L-BFGS iterations")

print(f"{'term':6}{'true':>8}" + "".join(f"{name:>16}" for name in models))
for i, name in enumerate(["1", "x", "x^2"]):
    values = [m.intercept_ if i == 0 else m.coef_[i - 1] for m in models.values()]
    print(f"{name:6}{true_coef[name]:8.3f}" + "".join(f"{v:16.3f}" for v in values))

# %%
# The fits over the data
# ----------------------
grid = np.linspace(-3, 3, 200).reshape(-1, 1)
inliers = np.setdiff1d(np.arange(n), outliers)
fig, ax = plt.subplots()
ax.scatter(X[inliers, 0], y[inliers], s=12, color="black", label="data")
ax.scatter(X[outliers, 0], y[outliers], s=30, marker="x", color="red", label="outliers")
ax.plot(
    grid[:, 0],
    0.5 * grid[:, 0] ** 2 - grid[:, 0] + 1,
    color="grey",
    lw=4,
    alpha=0.4,
    label="true curve",
)
for name, model in models.items():
    ax.plot(grid[:, 0], model.predict(grid), label=name)
ax.set_xlabel("x")
ax.set_ylabel("y")
ax.legend()
plt.show()

# %%
# The outliers lift and flatten the squared-error fit (its intercept is off by more than 1.5),
# while the Huber and absolute-error fits stay within about 0.15 of every true coefficient.

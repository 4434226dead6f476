"""
=============================================
Choosing the degree with TorchPolyRegressorCV
=============================================

:class:`~autopoly.TorchPolyRegressorCV` searches degrees and penalties by cross-validation as
:class:`~sklearn.model_selection.GridSearchCV` over :class:`~autopoly.TorchPolyRegressor`
would, with the same scores, but from one pass over the rows: per-fold statistics at the
largest degree give every candidate's fit and test score. Here it picks the degree and the
ridge penalty of a noisy curve, and the validation curve is drawn from ``cv_results_``.
"""

# %%
# Data: a noisy curve
# -------------------
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV, KFold

from autopoly import TorchPolyRegressor, TorchPolyRegressorCV

rng = np.random.default_rng(0)
X = rng.uniform(-3, 3, size=(300, 1))
y = np.sin(1.5 * X[:, 0]) + 0.1 * X[:, 0] ** 2 + rng.normal(scale=0.3, size=300)

# %%
# The search
# ----------
# Degrees 1 to 12 and four penalties, shuffled 5-fold: 48 candidates, 240 fits' worth of
# scores from one pass over the rows.
cv = KFold(5, shuffle=True, random_state=0)
degrees = list(range(1, 13))
alphas = [0.0, 1e-3, 1e-1, 10.0]
start = time.perf_counter()
search = TorchPolyRegressorCV(degrees=degrees, alphas=alphas, cv=cv).fit(X, y)
search_time = time.perf_counter() - start
print(f"best: degree={search.degree_}, alpha={search.alpha_}, R^2={search.best_score_:.4f}")

# %%
# The same scores as GridSearchCV
# -------------------------------
# GridSearchCV fits each candidate on each training fold; the scores agree to rounding.
start = time.perf_counter()
grid = GridSearchCV(TorchPolyRegressor(), {"degree": degrees, "alpha": alphas}, cv=cv).fit(X, y)
grid_time = time.perf_counter() - start
difference = np.abs(search.cv_results_["mean_test_score"] - grid.cv_results_["mean_test_score"])
print(f"largest score difference: {difference.max():.1e}")
print(f"TorchPolyRegressorCV {search_time:.2f} s, GridSearchCV {grid_time:.2f} s")

# %%
# The validation curve, from ``cv_results_``
# ------------------------------------------
# Too low a degree underfits; without a penalty a high degree starts to overfit, which a
# small ridge penalty holds back.
results = search.cv_results_
fig, (ax_curve, ax_fit) = plt.subplots(1, 2, figsize=(11, 4))
for alpha in alphas:
    keep = np.asarray(results["param_alpha"]) == alpha
    mean = results["mean_test_score"][keep]
    std = results["std_test_score"][keep]
    ax_curve.plot(degrees, mean, marker="o", label=f"alpha={alpha:g}")
    ax_curve.fill_between(degrees, mean - std, mean + std, alpha=0.15)
ax_curve.axvline(search.degree_, color="k", ls=":", lw=1, label="chosen degree")
ax_curve.set_xlabel("degree")
ax_curve.set_ylabel("mean test R^2 (5 folds, ± std)")
ax_curve.set_ylim(0.5, 1.0)
ax_curve.set_title("validation curve")
ax_curve.legend(fontsize=8)

# %%
# The refitted model
# ------------------
# After the search the estimator is the best candidate fitted on all rows: a plain
# TorchPolyRegressor with those parameters, with predict, the inference methods and
# to_torch.
grid_x = np.linspace(-3, 3, 200).reshape(-1, 1)
ax_fit.scatter(X[:, 0], y, s=8, color="0.6", label="data")
ax_fit.plot(grid_x[:, 0], search.predict(grid_x), color="tab:red", label="chosen fit")
ax_fit.set_xlabel("x")
ax_fit.set_ylabel("y")
ax_fit.set_title(f"degree={search.degree_}, alpha={search.alpha_:g}")
ax_fit.legend(fontsize=8)
fig.tight_layout()
plt.show()

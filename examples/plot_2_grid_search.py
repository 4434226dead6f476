"""
=====================================================
Choosing the degree and learning rate by grid search
=====================================================

:class:`~autopoly.TorchPolyRegressor` is an ordinary scikit-learn estimator, so it goes into a
:class:`~sklearn.pipeline.Pipeline` and is tuned with
:class:`~sklearn.model_selection.GridSearchCV`. Here an Adam optimizer's learning rate and the
polynomial degree are searched together, and
:class:`~sklearn.model_selection.ValidationCurveDisplay` shows the training and validation
scores as the degree grows: too low a degree underfits, too high a degree starts to overfit.
"""

# %%
# Data: a noisy cubic
# -------------------
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold, ValidationCurveDisplay
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from autopoly import TorchPolyRegressor

rng = np.random.default_rng(0)
X = rng.uniform(-3, 3, size=(40, 1))
y = 0.5 * X[:, 0] ** 3 - X[:, 0] ** 2 + 2 + rng.normal(scale=2.0, size=40)

# %%
# A pipeline and a grid
# ---------------------
# TorchPolyRegressor conditions its inputs itself, so the scaler is not needed for
# convergence; it stands for whatever preprocessing a real pipeline has. A short Adam run
# (300 steps) makes the learning rate matter: too small and the fit stops before the optimum.
pipe = Pipeline(
    [
        ("scale", StandardScaler()),
        ("poly", TorchPolyRegressor(optimizer="adam", max_iter=300, random_state=0)),
    ]
)
grid = {"poly__lr": [0.001, 0.01, 0.1], "poly__degree": [1, 2, 3, 4, 6]}
cv = KFold(n_splits=5, shuffle=True, random_state=0)
search = GridSearchCV(pipe, grid, cv=cv)
with warnings.catch_warnings():
    # Small learning rates stop at max_iter: that is what the search is meant to find out.
    warnings.simplefilter("ignore", ConvergenceWarning)
    search.fit(X, y)

print("best parameters:", search.best_params_)
print(f"best cross-validated R^2: {search.best_score_:.3f}")

# %%
# Mean cross-validated R^2 for every pair: the small learning rate loses, whatever the degree.
results = pd.DataFrame(search.cv_results_)
table = results.pivot(
    index="param_poly__degree", columns="param_poly__lr", values="mean_test_score"
)
table.round(3)

# %%
# Validation curve over the degree
# --------------------------------
# With the best learning rate fixed, the training score keeps rising with the degree while
# the validation score peaks at the true degree, 3.
best = search.best_estimator_
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    display = ValidationCurveDisplay.from_estimator(
        best,
        X,
        y,
        param_name="poly__degree",
        param_range=[1, 2, 3, 4, 5, 6, 8, 10],
        cv=cv,
        score_name="R^2",
    )
display.ax_.set_title("Validation curve of TorchPolyRegressor over degree")
plt.show()

# %%
# The chosen model's coefficients, in the basis of the scaled input (the pipeline scales
# first), named as :class:`~sklearn.preprocessing.PolynomialFeatures` names them:
poly = best[-1]
for name, value in zip(
    ["1", *poly.get_feature_names_out(["x_scaled"])], [poly.intercept_, *poly.coef_]
):
    print(f"{name:12} {value: .3f}")

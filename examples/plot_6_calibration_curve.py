"""
==============================================
A calibration curve with its prediction band
==============================================

An instrument's response is calibrated against standards of known concentration: measure each
standard a few times, fit a curve, then read unknown samples off it. The fit alone says nothing
about how far to trust a reading. After a least-squares fit,
:class:`~autopoly.TorchPolyRegressor` gives the coefficients' standard errors and p values
(``coef_table``), confidence and prediction intervals (``predict_interval``) and a
statsmodels-style report (``summary``), all from the statistics the fit kept, without another
pass over the data.
"""

# %%
# The standards
# -------------
# Seven standards from 0 to 12 mg/L, each measured three times. The detector saturates
# slightly, so the response bends down at high concentrations: a quadratic calibration.
import matplotlib.pyplot as plt
import numpy as np

from autopoly import TorchPolyRegressor

rng = np.random.default_rng(3)
standards = np.array([0.0, 1.0, 2.0, 4.0, 6.0, 9.0, 12.0])
concentration = np.repeat(standards, 3)
response = (
    0.02
    + 0.115 * concentration
    - 0.0018 * concentration**2
    + rng.normal(scale=0.012, size=concentration.size)
)
X = concentration.reshape(-1, 1)

# %%
# Fit and coefficient table
# -------------------------
# Every coefficient comes with its standard error, t statistic, two-sided p value and 95%
# confidence interval. The small p value of the squared term says the curvature is real, not
# noise: a straight line would be the wrong calibration.
model = TorchPolyRegressor(degree=2).fit(X, response)
table = model.coef_table(level=0.95)
print(table.to_string(float_format=lambda v: f"{v:.4g}"))

# %%
# The report
# ----------
# ``summary()`` adds the residual standard deviation, R², the F test, the log-likelihood with
# AIC and BIC, and the condition number of the raw design.
print(model.summary())

# %%
# Confidence and prediction bands
# -------------------------------
# The confidence band covers the mean response (where the true curve lies); the prediction
# band covers a single new measurement, so it also holds the measurement noise and is wider.
grid = np.linspace(0, 12, 400).reshape(-1, 1)
mean_band = model.predict_interval(grid, kind="confidence")
new_band = model.predict_interval(grid, kind="prediction")
width = new_band[:, 1] - new_band[:, 0]
print(
    f"prediction band width: {width.min():.3f} to {width.max():.3f} "
    "(narrowest near the middle of the standards)"
)

# %%
# Reading an unknown sample
# -------------------------
# An unknown sample reads 0.80. Its concentration is where the curve reaches 0.80, and the
# concentrations whose prediction band contains 0.80 form its 95% interval (the classical
# inverse-prediction interval).
reading = 0.80
estimate = grid[np.argmin(np.abs(model.predict(grid) - reading)), 0]
inside = grid[(new_band[:, 0] <= reading) & (reading <= new_band[:, 1]), 0]
print(
    f"reading {reading}: {estimate:.2f} mg/L, 95% interval [{inside.min():.2f}, "
    f"{inside.max():.2f}] mg/L"
)

# %%
# The picture
# -----------
# Left, the calibration with its bands and the unknown sample's reading; right, the same bands
# relative to the fitted curve, with the standards' residuals: the bands widen towards the
# ends of the calibrated range, and about one reading in twenty falls outside the prediction
# band.
fit = model.predict(grid)
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
left.fill_between(grid[:, 0], *new_band.T, color="C0", alpha=0.15, label="95% prediction band")
left.fill_between(grid[:, 0], *mean_band.T, color="C0", alpha=0.35, label="95% confidence band")
left.plot(grid[:, 0], fit, color="C0", label="fitted calibration")
left.scatter(concentration, response, color="black", s=14, zorder=3, label="standards (3 each)")
left.axhline(reading, color="C3", lw=0.8, ls="--")
left.axvspan(inside.min(), inside.max(), color="C3", alpha=0.15, label="unknown's interval")
left.set_xlabel("concentration (mg/L)")
left.set_ylabel("response")
left.legend(loc="lower right")
right.fill_between(grid[:, 0], *(new_band - fit[:, None]).T, color="C0", alpha=0.15)
right.fill_between(grid[:, 0], *(mean_band - fit[:, None]).T, color="C0", alpha=0.35)
right.axhline(0, color="C0")
right.scatter(concentration, response - model.predict(X), color="black", s=14, zorder=3)
right.set_xlabel("concentration (mg/L)")
right.set_ylabel("response − fitted calibration")
plt.show()

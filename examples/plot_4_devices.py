"""
==============================
Devices: CPU, GPU and ``auto``
==============================

``device`` says where the optimizer loop and the chunked statistics are computed: ``"cpu"``,
``"cuda"``, ``"cuda:N"``, ``"mps"``, or ``"auto"`` for the best device this machine has. This
example runs anywhere: without a GPU, ``"auto"`` is the CPU and the comparison below simply
times the CPU twice. Fitted attributes are NumPy arrays, so a model fitted on a GPU predicts and
unpickles on a machine without one.
"""

# %%
# What this machine has
# ---------------------
import pickle
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from autopoly import TorchPolyRegressor

print("CUDA available:", torch.cuda.is_available())
mps = getattr(torch.backends, "mps", None)
print("MPS available:", bool(mps is not None and mps.is_available()))

# %%
# A larger problem: 100,000 rows, 3 features, degree 3 (19 terms)
# ----------------------------------------------------------------
rng = np.random.default_rng(0)
X = rng.normal(size=(100_000, 3))
y = (
    1
    + X @ [1.0, -2.0, 0.5]
    + 0.3 * X[:, 0] * X[:, 1] * X[:, 2]
    + rng.normal(scale=0.1, size=len(X))
)

# %%
# Fit on each device, in float64 and float32
# ------------------------------------------
# ``device="auto"`` resolves at fit time; the device used is reported in ``device_``. float32
# is the fast choice on GPUs (MPS supports nothing else) and agrees with float64 to about 1e-5.
timings = {}
models = {}
for device in ["cpu", "auto"]:
    for dtype in ["float64", "float32"]:
        model = TorchPolyRegressor(degree=3, device=device, dtype=dtype)
        model.fit(X[:1000], y[:1000])  # warm up: the first fit on a device pays a start-up cost
        start = time.perf_counter()
        model.fit(X, y)
        elapsed = time.perf_counter() - start
        print(f"device={device!r:7} -> device_={model.device_!r:9} {dtype}: {elapsed:.3f} s")
        timings[f"{device} ({model.device_})\n{dtype}"] = elapsed
        models[device, dtype] = model

fig, ax = plt.subplots()
ax.bar(list(timings), list(timings.values()))
ax.set_ylabel("fit time (s)")
ax.set_title(f"Fit of {len(X):,} rows, degree 3")
plt.show()

# %%
# The answers agree across devices and precisions
# -----------------------------------------------
reference = models["cpu", "float64"].coef_
for key, model in models.items():
    print(
        key,
        f"largest coefficient difference from cpu/float64: "
        f"{np.abs(model.coef_ - reference).max():.1e}",
    )

# %%
# Moving a model between machines
# -------------------------------
# Fitted attributes are NumPy arrays on the CPU. ``predict`` computes on the fitted device when
# it exists on the machine that loads the model, and on the CPU otherwise, so a model fitted
# with ``device="cuda"`` unpickles and predicts on a laptop without a GPU.
restored = pickle.loads(pickle.dumps(models["auto", "float32"]))
print("fitted on:", restored.device_)
print("predictions:", np.round(restored.predict(X[:3]), 4))

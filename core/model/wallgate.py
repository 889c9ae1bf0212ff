"""The wall gate: is a tile a wall surface the classifier can judge, or something else?

The defect classifier was trained on close-ups of wall surfaces only. Shown a tile of
sky, foliage, a car, a person, a shop window, the street or a whole facade seen from
across the street, it still answers "crack" or "salt damage" with some probability, and
on whole survey photos those answers are its false alarms. The gate decides per tile
whether the classifier's answer counts: a tile that fails it can never raise a flag, and
a photo none of whose tiles pass it is ``not_assessable`` (no wall surface in view at a
distance the model can judge).

:class:`WallGate` is a logistic regression on the stage-1 network's pooled features
(standardised, projected on their leading principal components): positives are the
training patches of every class (the surfaces the model knows), negatives are tiles of
whole-scene photos without defects (street photos of facades, vegetation, sky, people).
Its threshold is a low quantile of the scores of the *validation* patches, so a known,
small share of real wall patches is given up (recorded in the model card). Two other
gates were compared on the same tiles and refused (an out-of-distribution Mahalanobis
score and colour rules for vegetation and sky): ``research/scene/README.md``.

The gate's arrays are stored with the model (safetensors, sha256 in the card) and loaded
without unpickling. numpy only at import time.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from heritage.kernel.errors import ModelError

GATE_METHODS = ("logistic",)
_ARRAYS = ("mean", "scale", "components", "coef", "intercept")


@dataclass(frozen=True, eq=False)
class WallGate:
    """P(tile is a wall surface the model knows) from stage-1 pooled features.

    ``z = components @ ((x - mean) / scale)``; score = sigmoid(coef · z + intercept); a
    tile is a wall tile when its score is at least ``threshold``.
    """

    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Score in [0, 1] of each row of ``features`` (N×D), float64 (N,)."""
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"features must be N×{self.mean.shape[0]}, got {tuple(np.shape(features))}"
            )
        z = ((f - self.mean) / self.scale) @ self.components.T
        logit = np.clip(z @ self.coef + self.intercept, -50.0, 50.0)
        return 1.0 / (1.0 + np.exp(-logit))

    def is_wall(self, features: np.ndarray) -> np.ndarray:
        """Boolean (N,): the tile is a wall surface at a scale the model can judge."""
        return self.scores(features) >= self.threshold

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to store (float32), by name."""
        return {
            "mean": self.mean.astype(np.float32),
            "scale": self.scale.astype(np.float32),
            "components": self.components.astype(np.float32),
            "coef": self.coef.astype(np.float32),
            "intercept": np.array([self.intercept], dtype=np.float32),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any], threshold: float) -> WallGate:
        """Rebuild a gate from :meth:`arrays` (shapes and finite values checked)."""
        missing = [k for k in _ARRAYS if k not in arrays]
        if missing:
            raise ModelError(f"the wall gate lacks the array(s) {', '.join(missing)}; re-fit it")
        a = {k: np.asarray(arrays[k], dtype=np.float64) for k in _ARRAYS}
        comps = a["components"]
        k, d = comps.shape if comps.ndim == 2 else (0, 0)
        ok = (
            d > 0
            and a["mean"].shape == (d,)
            and a["scale"].shape == (d,)
            and a["coef"].shape == (k,)
            and a["intercept"].shape == (1,)
        )
        if not ok:
            raise ModelError("the wall gate's arrays do not fit together; re-fit it")
        if not all(np.isfinite(v).all() for v in a.values()) or (a["scale"] <= 0).any():
            raise ModelError("the wall gate holds non-finite numbers or a zero scale; re-fit it")
        if not (isinstance(threshold, int | float) and math.isfinite(threshold)):
            raise ModelError(f"the wall gate's threshold must be a finite number: {threshold!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ModelError(f"the wall gate's threshold must lie in [0, 1]: {threshold}")
        return cls(
            a["mean"], a["scale"], comps, a["coef"], float(a["intercept"][0]), float(threshold)
        )


def fit_wall_gate(
    wall_features: np.ndarray,
    scene_features: np.ndarray,
    n_components: int = 64,
    c: float = 0.1,
) -> WallGate:
    """Fit the gate: ``wall_features`` (training patches, N×D) against ``scene_features``
    (tiles of whole-scene photos without defects, M×D), both classes weighted equally.

    scikit-learn's StandardScaler, PCA and LogisticRegression (inverse regularisation
    ``c``). The threshold is left at 0.5: set it with :func:`with_quantile_threshold` on
    patches held apart from the fit.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = np.vstack([wall_features, scene_features]).astype(np.float64)
    y = np.r_[np.ones(len(wall_features)), np.zeros(len(scene_features))]
    if len(wall_features) < 2 or len(scene_features) < 2:
        raise ValueError("the gate needs at least two wall and two scene examples")
    weights = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1.0 - y.mean()))
    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    xs = (x - scaler.mean_) / scale
    k = min(n_components, xs.shape[1], xs.shape[0] - 1)
    pca = PCA(n_components=k, random_state=0).fit(xs)
    # fold PCA's own centring into the mean (z = components @ (xs - pca.mean_))
    mean = scaler.mean_ + pca.mean_ * scale
    z = pca.transform(xs)
    lr = LogisticRegression(C=c, max_iter=5000).fit(z, y, sample_weight=weights)
    return WallGate(mean, scale, pca.components_, lr.coef_[0], float(lr.intercept_[0]), 0.5)


def with_quantile_threshold(gate: WallGate, wall_features: np.ndarray, quantile: float) -> WallGate:
    """The gate with its threshold at the ``quantile`` of the scores of ``wall_features``
    (real wall patches held apart from the fit): ``quantile`` 0.01 lets 99 % of them pass."""
    if not 0.0 <= quantile < 1.0:
        raise ValueError(f"quantile must lie in [0, 1), got {quantile}")
    thr = float(np.quantile(gate.scores(wall_features), quantile))
    return WallGate(gate.mean, gate.scale, gate.components, gate.coef, gate.intercept, thr)


def save_gate(gate: WallGate, path: str | Path) -> str:
    """Write the gate's arrays as safetensors; returns the file's sha256."""
    from safetensors.numpy import save

    data = save({k: np.ascontiguousarray(v) for k, v in gate.arrays().items()})
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def load_gate(data: bytes, threshold: float) -> WallGate:
    """A gate from safetensors bytes already checked against the card's sha256."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        arrays = load(data)
    except (SafetensorError, ValueError) as exc:
        raise ModelError(f"the wall gate file is not readable safetensors ({exc})") from exc
    return WallGate.from_arrays(arrays, threshold)

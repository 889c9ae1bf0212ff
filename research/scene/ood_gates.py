"""Refused wall gates (research/scene/README.md): Mahalanobis OOD and colour rules.

Kept to reproduce the comparison; the shipped gate is heritage.model.wallgate.WallGate.
The original module text follows.

The wall gate: is a tile a wall surface the classifier can judge, or something else?

The defect classifier was trained on close-ups of wall surfaces only. Shown a tile of
sky, foliage, a car, a person, a shop window or the street, it still answers "crack" or
"salt damage" with some probability, and on whole survey photos those answers are most
of its false alarms. The gate decides per tile whether the classifier's answer counts:
a tile that fails it can never raise a flag, and a photo none of whose tiles pass it is
``not_assessable``.

Two signals, both measured on tiles the project holds (``research/scene/``):

* **Out of distribution** (:class:`FeatureGate`): the Mahalanobis distance of the tile's
  stage-1 pooled features to the nearest class centre of the training patches (class
  means, one shared covariance with Ledoit-Wolf shrinkage, in the space of the leading
  principal components; Lee et al. 2018, "A simple unified framework for detecting
  out-of-distribution samples"). A tile farther than ``threshold`` from every class of
  wall patch is not a wall surface for this model. The threshold is a quantile of the
  distances of the validation patches, so a known fraction of real wall patches is
  given up (recorded in the model card).
* **Colour** (:func:`colour_fractions`): the share of a tile's pixels that look like
  vegetation (excess green) or open sky (bright, blue-leaning, smooth). Cheap and
  readable, but blind to cars, people and glass.

The gate's arrays are stored with the model (safetensors, sha256 in the card) and loaded
without unpickling. numpy only at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from heritage.kernel.errors import ModelError

GATE_METHODS = ("mahalanobis",)


@dataclass(frozen=True, eq=False)
class FeatureGate:
    """Mahalanobis out-of-distribution score on stage-1 pooled features.

    ``center`` (D) and ``components`` (K×D) project a feature vector onto the training
    patches' leading principal components; ``means`` (C×K) are the class centres there and
    ``precision`` (K×K) the inverse of their shared covariance. ``threshold`` is the
    largest squared distance that still counts as a wall surface.
    """

    center: np.ndarray
    components: np.ndarray
    means: np.ndarray
    precision: np.ndarray
    threshold: float

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each row of ``features`` (N×D) to the nearest
        class centre, float64 (N,)."""
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != self.center.shape[0]:
            raise ValueError(
                f"features must be N×{self.center.shape[0]}, got {tuple(np.shape(features))}"
            )
        z = (f - self.center) @ self.components.T  # N×K
        d = z[:, None, :] - self.means[None, :, :]  # N×C×K
        m = np.einsum("nck,kl,ncl->nc", d, self.precision, d)
        return m.min(axis=1)

    def is_wall(self, features: np.ndarray) -> np.ndarray:
        """Boolean (N,): the tile is close enough to the training wall patches."""
        return self.distances(features) <= self.threshold

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to store (float32), by name."""
        return {
            "center": self.center.astype(np.float32),
            "components": self.components.astype(np.float32),
            "means": self.means.astype(np.float32),
            "precision": self.precision.astype(np.float32),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any], threshold: float) -> FeatureGate:
        """Rebuild a gate from :meth:`arrays` (checked for shapes and finite values)."""
        try:
            center = np.asarray(arrays["center"], dtype=np.float64)
            comps = np.asarray(arrays["components"], dtype=np.float64)
            means = np.asarray(arrays["means"], dtype=np.float64)
            prec = np.asarray(arrays["precision"], dtype=np.float64)
        except KeyError as exc:
            raise ModelError(f"the wall gate lacks the array {exc}; re-fit it") from exc
        k, d = comps.shape if comps.ndim == 2 else (0, 0)
        ok = (
            center.shape == (d,)
            and d > 0
            and means.ndim == 2
            and means.shape[1] == k
            and prec.shape == (k, k)
        )
        if not ok:
            raise ModelError("the wall gate's arrays do not fit together; re-fit it")
        if not all(np.isfinite(a).all() for a in (center, comps, means, prec)):
            raise ModelError("the wall gate holds non-finite numbers; re-fit it")
        if not np.isfinite(threshold) or threshold <= 0:
            raise ModelError(f"the wall gate's threshold must be a positive number: {threshold}")
        return cls(center, comps, means, prec, float(threshold))


def fit_feature_gate(
    features: np.ndarray,
    labels: np.ndarray,
    n_components: int = 64,
) -> FeatureGate:
    """Fit the gate on training patches' features (N×D) and class labels (N,).

    PCA to ``n_components`` (scikit-learn), class means, Ledoit-Wolf shared covariance of
    the within-class residuals. The threshold is left at +inf: set it with
    :func:`with_quantile_threshold` on held-apart patches.
    """
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA

    f = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    k = min(n_components, f.shape[1], f.shape[0] - 1)
    pca = PCA(n_components=k, random_state=0).fit(f)
    z = pca.transform(f)
    classes = sorted(set(labels.tolist()))
    means = np.stack([z[labels == c].mean(axis=0) for c in classes])
    resid = z - means[np.searchsorted(classes, labels)]
    lw = LedoitWolf().fit(resid)
    return FeatureGate(pca.mean_, pca.components_, means, lw.precision_, float("inf"))


def with_quantile_threshold(
    gate: FeatureGate, features: np.ndarray, quantile: float
) -> FeatureGate:
    """The gate with its threshold at the ``quantile`` of the distances of ``features``
    (patches of real walls held apart from the fit, e.g. the validation split)."""
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must lie in (0, 1], got {quantile}")
    thr = float(np.quantile(gate.distances(features), quantile))
    return FeatureGate(gate.center, gate.components, gate.means, gate.precision, thr)


def save_gate(gate: FeatureGate, path: str | Path) -> str:
    """Write the gate's arrays as safetensors; returns the file's sha256."""
    import hashlib

    from safetensors.numpy import save

    data = save({k: np.ascontiguousarray(v) for k, v in gate.arrays().items()})
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def load_gate(data: bytes, threshold: float) -> FeatureGate:
    """A gate from safetensors bytes already checked against the card's sha256."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        arrays = load(data)
    except (SafetensorError, ValueError) as exc:
        raise ModelError(f"the wall gate file is not readable safetensors ({exc})") from exc
    return FeatureGate.from_arrays(arrays, threshold)


# ------------------------------------------------------------------ colour


def colour_fractions(rgb: np.ndarray) -> tuple[float, float]:
    """``(vegetation, sky)``: shares of the pixels of ``rgb`` (uint8 H×W×3) that look like
    foliage or open sky.

    Vegetation: excess green ``2g - r - b`` above 0.08 (on 0..1 values) with green the
    largest channel (Woebbecke et al. 1995). Sky: bright (mean above 0.55), blue at least
    as strong as red, low saturation or blue-leaning, and smooth (4-neighbour gradient
    below 0.03).
    """
    x = np.asarray(rgb, dtype=np.float32) / 255.0
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"rgb must be H×W×3, got {x.shape}")
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    exg = 2 * g - r - b
    veg = (exg > 0.08) & (g >= r) & (g >= b)
    bright = (r + g + b) / 3
    gy = np.abs(np.diff(bright, axis=0, append=bright[-1:, :]))
    gx = np.abs(np.diff(bright, axis=1, append=bright[:, -1:]))
    smooth = (gx + gy) < 0.03
    sky = (bright > 0.55) & (b >= r) & smooth
    return float(veg.mean()), float(sky.mean())

"""Scene mode's settings: the ``scene`` section of the model card.

How :mod:`heritage.model.scene` cuts a photo into tiles, gates them and decides; read
and checked with the card (:func:`heritage.model.card.load_model`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from heritage.kernel.errors import ModelError
from heritage.model.tiling import tile_windows

log = logging.getLogger(__name__)

#: ``precision`` choices of the tile pass (:mod:`heritage.model.fold`)
PRECISIONS = ("auto", "float32", "bfloat16")


@dataclass(frozen=True, slots=True)
class SceneSettings:
    """How scene mode cuts, gates and decides (the model card's ``scene`` section).

    ``tile_threshold`` ``None`` means the card's ``threshold``. ``gate_file`` /
    ``gate_sha256`` / ``gate_threshold`` name the wall gate stored beside the weights
    (``None``: no gate, every tile counts as wall).
    """

    tile_size: int = 224
    overlap: float = 0.5
    max_side: int = 2016
    close_up_side: int = 448
    max_tiles: int = 64
    tile_threshold: float | None = None
    min_flagged_tiles: int = 1
    explain_tiles: int = 4
    #: most tiles per batch of the tile pass (a photo's tiles in near-equal batches)
    batch_size: int = 12
    gate_method: str | None = None
    gate_file: str | None = None
    gate_sha256: str | None = None
    gate_threshold: float | None = None
    gate_quantile: float | None = None
    #: how the gate was fitted (counts, date, script): documentation only
    gate_fit: dict | None = None
    #: whether the gate also judges close-ups (a photo of at most one tile)
    gate_close_ups: bool = False
    #: "auto" (bfloat16 on a CPU with native bfloat16, else float32), "float32", "bfloat16"
    precision: str = "auto"
    #: how many of the strongest tiles get 8 shifted neighbours scored (0: none)
    refine_candidates: int = 0
    #: a tile needs this stage-1 probability to be refined
    refine_min_p: float = 0.3

    def __post_init__(self) -> None:
        problems = []
        if not 32 <= self.tile_size <= 4096:
            problems.append(f"tile_size must lie in [32, 4096], got {self.tile_size}")
        if not 0.0 <= self.overlap < 0.9:
            problems.append(f"overlap must lie in [0, 0.9), got {self.overlap}")
        if self.max_side < 2 * self.tile_size:
            problems.append(f"max_side must be at least two tiles, got {self.max_side}")
        if self.close_up_side < self.tile_size:
            problems.append(f"close_up_side must be at least one tile, got {self.close_up_side}")
        t = self.tile_threshold
        if t is not None and not (math.isfinite(t) and 0.0 <= t <= 1.0):
            problems.append(f"tile_threshold must lie in [0, 1], got {t}")
        if min(self.min_flagged_tiles, self.explain_tiles, self.batch_size, self.max_tiles) < 1:
            problems.append(
                "min_flagged_tiles, explain_tiles, batch_size and max_tiles must be >= 1"
            )
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.refine_candidates < 0 or not 0.0 <= self.refine_min_p <= 1.0:
            problems.append("refine_candidates must be >= 0 and refine_min_p in [0, 1]")
        if self.gate_file is not None and (
            not self.gate_sha256 or self.gate_threshold is None or self.gate_method is None
        ):
            problems.append("a gate_file needs gate_method, gate_sha256 and gate_threshold")
        if problems:
            raise ModelError("invalid scene settings in model.json: " + "; ".join(problems))

    def windows(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """The tiles of a ``width`` × ``height`` working image: with ``overlap`` when that
        gives at most ``max_tiles`` tiles, else with half of it, else without overlap
        (large photos: the tile budget keeps about one photo per second on two cores)."""
        for overlap in (self.overlap, self.overlap / 2):
            windows = tile_windows(width, height, self.tile_size, overlap)
            if len(windows) <= self.max_tiles:
                return windows
        return tile_windows(width, height, self.tile_size, 0.0)

    def neighbours(
        self, window: tuple[int, int, int, int], width: int, height: int
    ) -> list[tuple[int, int, int, int]]:
        """The 8 windows shifted by a quarter tile around ``window``, kept inside the
        ``width`` × ``height`` image (duplicates, e.g. at the border, dropped)."""
        left, top, right, bottom = window
        step = self.tile_size // 4
        out: list[tuple[int, int, int, int]] = []
        for dy in (-step, 0, step):
            for dx in (-step, 0, step):
                if dx == dy == 0:
                    continue
                x = min(max(0, left + dx), width - (right - left))
                y = min(max(0, top + dy), height - (bottom - top))
                w = (x, y, x + right - left, y + bottom - top)
                if w != window and w not in out:
                    out.append(w)
        return out

    @classmethod
    def from_card(cls, scene: Any) -> SceneSettings:
        """Settings from the card's ``scene`` dict (missing keys take the defaults); a
        card's :class:`SceneSettings` as it is."""
        if isinstance(scene, cls):
            return scene
        if scene is None or scene == {}:
            return cls()
        if not isinstance(scene, dict):
            raise ModelError("model.json: 'scene' must be an object; fix or remove it")
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(scene) - names)
        if unknown:
            log.warning("model.json: ignoring unknown scene keys %s", unknown)
        try:
            return cls(**{k: v for k, v in scene.items() if k in names})
        except TypeError as exc:
            raise ModelError(f"model.json: malformed scene settings ({exc})") from exc

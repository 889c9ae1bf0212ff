"""The model folder: ``model.json`` (the model card) plus safetensors weights.

A model folder holds ``model.json`` and ``stage1.safetensors`` (and
``stage2.safetensors`` for a two-stage model). The card names each weights file and its
sha256; :func:`load_model` checks the hash of the bytes it read before it parses them,
so a tampered, truncated or swapped file is refused. Weights are only ever read with
safetensors: nothing is unpickled.

torch, safetensors and :mod:`heritage.model.zoo` are imported inside the functions that
need them; the dataclasses and JSON handling are standard library only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heritage.io.fileio import atomic_write_bytes
from heritage.kernel.errors import ModelError, OutputNotWritableError
from heritage.model.cardcheck import (
    CAM_METHOD_NAMES,
    CAM_TARGETS,
    INPUT_SIZE_RANGE,
    card_problems,
    is_int,
    is_number,
)
from heritage.model.provenance import without_machine_paths
from heritage.model.scenesettings import SceneSettings

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

CARD_FILE = "model.json"
#: the card's schema: /2 holds every setting inference reads as a typed field
#: (``cam_target``, ``pruning``, ``scene``) and no machine paths; /1 cards (up to model
#: 0.7.0 as first shipped) kept ``cam_target`` and ``pruning`` in ``training`` and still load
CARD_FORMAT = "heritage-model-card/2"
CARD_FORMAT_V1 = "heritage-model-card/1"
DECISION_STAGES = ("stage1", "stage2")

#: the model shipped with heritage: a folder of the data-only package ``heritage_models``
#: (``models/`` in the source tree, installed with the wheel)
SHIPPED_MODEL = "heritage-default"
MODELS_PACKAGE = "heritage_models"


def default_model_dir() -> Path:
    """The model used when no ``--model`` is given: ``$HERITAGE_MODEL_DIR`` if set, else
    the shipped model, found as package data (``heritage_models/heritage-default``),
    in a source checkout and in an installed wheel alike."""
    env = os.environ.get("HERITAGE_MODEL_DIR")
    if env:
        return Path(env).expanduser()
    import importlib.util

    spec = importlib.util.find_spec(MODELS_PACKAGE)
    folders = [Path(p) for p in spec.submodule_search_locations or ()] if spec else []
    for folder in folders:  # a namespace package: the first folder that holds the model
        if (folder / SHIPPED_MODEL / CARD_FILE).is_file():
            return folder / SHIPPED_MODEL
    # not installed: read_card and load_model say where it was looked for and what to do
    return (folders[0] if folders else Path(MODELS_PACKAGE)) / SHIPPED_MODEL


_HOW_TO_TRAIN = (
    "train one with 'heritage train DATA_DIR... --out MODEL_DIR' and pass it with "
    "--model MODEL_DIR (or set HERITAGE_MODEL_DIR)"
)


@dataclass(frozen=True)
class StageCard:
    """One stage's network: architecture, weights file (name inside the model folder),
    its sha256, the number of outputs and the output labels (stage 2: one logit).
    ``size``: the weights file's size in bytes (written by :func:`save_model`; older
    cards have none and are bounded by the architecture's size instead)."""

    arch: str
    weights: str
    sha256: str
    num_outputs: int
    labels: tuple[str, ...]
    size: int | None = None


@dataclass(frozen=True)
class PruningRecord:
    """Stage 1 is a pruned network (the card's ``pruning``; ``None``: not pruned).

    Loading needs only to know that it is pruned: the network is rebuilt from the
    shapes of its stored tensors (:func:`heritage.model.pruned.rebuild_pruned`, with the
    card's ``stage1.arch`` and ``num_outputs``). The rest documents how it was made:
    the channel ratio removed, the method, the sha256 of the stage-1 weights it was
    pruned from and the model they belonged to, each layer's ``[out, in]`` widths and
    the ratios tried.
    """

    ratio: float
    method: str = ""
    source_model: str = ""
    source_sha256: str = ""
    stage1_layer_widths: dict[str, list[int]] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: Any) -> PruningRecord:
        """From the card's ``pruning`` object (keys this version does not know are ignored:
        version-1 cards also held the architecture and machine paths there)."""
        if isinstance(d, PruningRecord):
            return d
        if not isinstance(d, dict):
            raise ModelError(f"model.json: pruning must be an object (got {type(d).__name__})")
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "ratio" not in kw:
            raise ModelError("model.json: pruning lacks its ratio")
        return cls(**kw)


@dataclass(frozen=True)
class ModelCard:
    """What a trained model is and how to use it (``model.json``).

    Everything inference reads is a typed field: ``input_size``, ``mean``, ``std``, the
    stages, ``positive_labels``; ``decision_stage`` ("stage1" or "stage2") names the
    stage whose probability the user-facing decision uses, with ``threshold``;
    ``cam_layer`` is a module path in the stage-1 network, ``cam_method`` the CAM method
    and ``cam_target`` what it explains ("predicted": the winning class, "positive": the
    sum of the positive classes); ``stage2_cam_alpha`` is the heat-map weight of the
    overlays stage 2 sees; ``pruning`` marks a pruned stage 1; ``scene`` how scene mode
    tiles, gates and decides. ``training`` (data sets by name and fingerprint, counts,
    licences, settings) and ``metrics`` (held-out results) are documentation: nothing
    reads them to classify. ``created`` is an ISO 8601 time.

    Built with a ``scene`` or ``pruning`` dict, the card converts it to its type.
    """

    model_id: str
    version: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    positive_labels: tuple[str, ...]
    stage1: StageCard
    stage2: StageCard | None
    cam_layer: str
    cam_method: str
    threshold: float
    decision_stage: str
    stage2_cam_alpha: float = 0.5
    cam_target: str = "predicted"
    pruning: PruningRecord | None = None
    #: how scene mode tiles, gates and decides
    scene: SceneSettings = field(default_factory=SceneSettings)
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    created: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.scene, SceneSettings):
            object.__setattr__(self, "scene", SceneSettings.from_card(self.scene))
        if self.pruning is not None and not isinstance(self.pruning, PruningRecord):
            object.__setattr__(self, "pruning", PruningRecord.from_dict(self.pruning))

    @property
    def positive_indices(self) -> list[int]:
        """Indices of the stage-1 outputs whose labels mean "conservation needed"."""
        return [i for i, lab in enumerate(self.stage1.labels) if lab in self.positive_labels]

    def to_json(self) -> str:
        """The card as pretty JSON text (with a ``format`` marker)."""
        d = {"format": CARD_FORMAT, **dataclasses.asdict(self)}
        return json.dumps(d, indent=2, ensure_ascii=False, default=str) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Parse and validate ``model.json`` text; ModelError when it is not a valid card."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(
                f"model.json is not valid JSON ({exc}); restore it from the model's "
                f"original copy or {_HOW_TO_TRAIN}"
            ) from exc
        if not isinstance(d, dict):
            raise ModelError("model.json must hold a JSON object; " + _HOW_TO_TRAIN)
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        """Build a card from a parsed dict (unknown keys are ignored with a warning)."""
        d = dict(d)
        fmt = d.pop("format", CARD_FORMAT_V1)
        if fmt == CARD_FORMAT_V1:
            d = _from_v1(d)
        elif fmt != CARD_FORMAT:
            log.warning("model.json: unknown format %r, read as %s", fmt, CARD_FORMAT)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            log.warning("model.json: ignoring unknown keys %s", unknown)
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(d))
        if missing:
            raise ModelError(f"model.json lacks {', '.join(missing)}; " + _HOW_TO_TRAIN)
        problems = card_problems(d)  # the whole card, before any conversion
        if problems:
            raise ModelError(
                "invalid model card: "
                + "; ".join(problems)
                + "; fix model.json or "
                + _HOW_TO_TRAIN
            )
        try:
            kw = {k: d[k] for k in names if k in d}
            kw["stage1"] = _stage(kw["stage1"])
            kw["stage2"] = _stage(kw["stage2"]) if kw.get("stage2") is not None else None
            kw["mean"] = tuple(float(v) for v in kw["mean"])
            kw["std"] = tuple(float(v) for v in kw["std"])
            kw["positive_labels"] = tuple(str(v) for v in kw["positive_labels"])
            kw["input_size"] = int(kw["input_size"])
            kw["threshold"] = float(kw["threshold"])
            if "stage2_cam_alpha" in kw:
                kw["stage2_cam_alpha"] = float(kw["stage2_cam_alpha"])
            card = cls(**kw)
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise ModelError(f"model.json has a malformed field ({exc}); " + _HOW_TO_TRAIN) from exc
        card.validate()
        return card

    def validate(self) -> None:
        """Raise ModelError when the card's fields contradict each other."""
        problems = []
        lo, hi = INPUT_SIZE_RANGE
        if not (is_int(self.input_size) and lo <= self.input_size <= hi):
            problems.append(
                f"input_size must be a whole number in {lo}..{hi} (got {self.input_size})"
            )
        finite = all(is_number(v) for v in (*self.mean, *self.std))
        if len(self.mean) != 3 or len(self.std) != 3 or not finite or min(self.std) <= 0:
            problems.append("mean and std need 3 finite values each, std > 0")
        if self.cam_method.lower() not in CAM_METHOD_NAMES:
            problems.append(
                f"cam_method {self.cam_method!r} is unknown (known: {', '.join(CAM_METHOD_NAMES)})"
            )
        if not is_number(self.threshold) or not 0.0 <= self.threshold <= 1.0:
            problems.append(f"threshold must lie in [0, 1] (got {self.threshold})")
        if not is_number(self.stage2_cam_alpha) or not 0.0 <= self.stage2_cam_alpha <= 1.0:
            problems.append(f"stage2_cam_alpha must lie in [0, 1] (got {self.stage2_cam_alpha})")
        if self.cam_target not in CAM_TARGETS:
            problems.append(
                f"cam_target must be one of {', '.join(CAM_TARGETS)} (got {self.cam_target!r})"
            )
        if self.decision_stage not in DECISION_STAGES:
            problems.append(
                f"decision_stage must be 'stage1' or 'stage2' (got {self.decision_stage!r})"
            )
        if self.decision_stage == "stage2" and self.stage2 is None:
            problems.append("decision_stage is 'stage2' but the card has no stage2")
        if self.stage1.num_outputs != len(self.stage1.labels):
            problems.append(
                f"stage1 has {self.stage1.num_outputs} outputs but {len(self.stage1.labels)} labels"
            )
        if not set(self.positive_labels) & set(self.stage1.labels):
            problems.append(
                f"none of the positive labels {list(self.positive_labels)} is a stage-1 label "
                f"{list(self.stage1.labels)}"
            )
        if self.stage2 is not None and self.stage2.num_outputs != 1:
            problems.append(f"stage2 must have 1 output (got {self.stage2.num_outputs})")
        if problems:
            raise ModelError("invalid model card: " + "; ".join(problems))


def _from_v1(d: dict[str, Any]) -> dict[str, Any]:
    """A version-1 card's fields as version 2 has them: ``cam_target`` and ``pruning``
    move from the free-form ``training`` section to their typed fields."""
    training = d.get("training")
    if not isinstance(training, dict):
        return d
    moved = {k: training[k] for k in ("cam_target", "pruning") if k in training}
    out = {**d, "training": {k: v for k, v in training.items() if k not in moved}}
    for key, value in moved.items():
        out.setdefault(key, value)
    return out


def _stage(d: Any) -> StageCard:
    if isinstance(d, StageCard):
        return d
    if not isinstance(d, dict):
        raise TypeError(f"a stage must be an object, got {type(d).__name__}")
    return StageCard(
        arch=str(d["arch"]),
        weights=str(d.get("weights", "")),
        sha256=str(d.get("sha256", "")),
        num_outputs=int(d["num_outputs"]),
        labels=tuple(str(v) for v in d["labels"]),
        size=None if d.get("size") is None else int(d["size"]),
    )


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A verified model: its card and the networks, in eval mode."""

    card: ModelCard
    stage1: torch.nn.Module
    stage2: torch.nn.Module | None
    model_dir: Path | None = None


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def round_to_fp16(model: torch.nn.Module) -> torch.nn.Module:
    """Round every floating-point weight and buffer of ``model`` to float16 precision, in
    place (the tensors stay float32).

    Afterwards the model computes exactly what it will compute once saved with
    ``save_model(..., fp16=True)`` and loaded back, so metrics measured on it are the
    metrics of the float16 files.
    """
    import torch

    with torch.no_grad():
        for t in (*model.parameters(), *model.buffers()):
            if t.is_floating_point():
                t.copy_(t.to(torch.float16).to(t.dtype))
    return model


def _state_bytes(model: torch.nn.Module, fp16: bool) -> bytes:
    import torch
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        t = t.detach().to("cpu")
        if fp16 and t.is_floating_point():
            t = t.to(torch.float16)
        tensors[name] = t.contiguous().clone()  # clone: no shared storage for safetensors
    return save(tensors, metadata={"format": "pt", "dtype": "float16" if fp16 else "native"})


def save_model(
    model_dir: str | Path,
    card: ModelCard,
    stage1_model: torch.nn.Module,
    stage2_model: torch.nn.Module | None = None,
    fp16: bool = False,
) -> ModelCard:
    """Write the weights (safetensors) and ``model.json``; return the card as written.

    ``card`` gives everything but the weights file names and hashes, which are filled
    in here (``stage1.safetensors``, ``stage2.safetensors``); ``created`` is set to now
    when empty. ``fp16`` stores floating-point tensors as float16 (half the size); they
    are loaded back into float32 networks. Absolute paths in ``training`` and
    ``metrics`` are cut to their last part (see
    :func:`heritage.model.provenance.without_machine_paths`): the card travels to other
    machines. The card is written last, so a folder with a ``model.json`` is complete.
    """
    model_dir = Path(model_dir)
    if stage2_model is not None and card.stage2 is None:
        raise ModelError("a stage-2 network was given but the card has no 'stage2' entry")
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        s1_name = "stage1.safetensors"
        s1_bytes = _state_bytes(stage1_model, fp16)
        atomic_write_bytes(model_dir / s1_name, s1_bytes)
        stage1 = dataclasses.replace(
            card.stage1, weights=s1_name, sha256=sha256_bytes(s1_bytes), size=len(s1_bytes)
        )
        stage2 = None
        if stage2_model is not None:
            s2_name = "stage2.safetensors"
            s2_bytes = _state_bytes(stage2_model, fp16)
            atomic_write_bytes(model_dir / s2_name, s2_bytes)
            stage2 = dataclasses.replace(
                card.stage2, weights=s2_name, sha256=sha256_bytes(s2_bytes), size=len(s2_bytes)
            )
        decision = card.decision_stage if stage2 is not None else "stage1"
        out = dataclasses.replace(
            card,
            stage1=stage1,
            stage2=stage2,
            decision_stage=decision,
            training=without_machine_paths(card.training),
            metrics=without_machine_paths(card.metrics),
            created=card.created or datetime.now(UTC).isoformat(timespec="seconds"),
        )
        out.validate()
        atomic_write_bytes(model_dir / CARD_FILE, out.to_json().encode("utf-8"))
    except OSError as exc:
        raise OutputNotWritableError(
            f"cannot write the model to {model_dir}: {exc}; choose a writable folder"
        ) from exc
    log.info("model %s %s written to %s", out.model_id, out.version, model_dir)
    return out


def read_card(model_dir: str | Path | None = None) -> ModelCard:
    """Read and validate ``model.json`` of a model folder (default: the shipped model)."""
    model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
    if not model_dir.is_dir():
        raise ModelError(f"no model folder at {model_dir}; " + _HOW_TO_TRAIN)
    card_path = model_dir / CARD_FILE
    if not card_path.is_file():
        raise ModelError(
            f"{model_dir} has no {CARD_FILE}: it is not a heritage model folder "
            "(an interrupted save leaves no card); " + _HOW_TO_TRAIN
        )
    try:
        text = card_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read {card_path}: {exc}") from exc
    return ModelCard.from_json(text)


#: bytes read at a time while hashing a model file
_CHUNK = 1 << 20
#: the most bytes of a model file whose card records no size and no architecture bounds
DEFAULT_FILE_LIMIT = 1 << 30


def weights_limit(stage: StageCard, model: torch.nn.Module | None) -> int:
    """The most bytes the weights file of ``stage`` may have: the card's ``size`` when it
    records one, else float32 tensors of every parameter and buffer of ``model`` (the
    architecture built from the card) plus 1 MiB of safetensors header, plus 5 %."""
    if stage.size is not None:
        return stage.size
    if model is None:
        return DEFAULT_FILE_LIMIT
    n = sum(t.numel() for t in (*model.parameters(), *model.buffers()))
    return int(n * 4 * 1.05) + (1 << 20)


def _verified_bytes(
    model_dir: Path, stage: StageCard, which: str, limit: int | None = None
) -> bytes:
    """A stage's weights, hashed while they are read, never more than ``limit``
    (default: :func:`weights_limit` of the stage's architecture)."""
    if limit is None:
        limit = weights_limit(stage, None if stage.size is not None else _network(stage))
    return verified_file_bytes(
        model_dir, stage.weights, stage.sha256, f"{which}.weights",
        limit=limit, size=stage.size, arch=stage.arch,
    )  # fmt: skip


def verified_file_bytes(
    model_dir: Path,
    name: str,
    sha256: str,
    what: str,
    *,
    limit: int = DEFAULT_FILE_LIMIT,
    size: int | None = None,
    arch: str = "",
) -> bytes:
    """The bytes of the file ``name`` of a model folder, hashed while they are read and
    checked against the card's ``sha256``. ModelError when it is missing, outside the
    folder, not ``size`` bytes (when the card records it), larger than ``limit`` (checked
    before a byte is read) or altered."""
    if not name or Path(name).name != name:
        raise ModelError(
            f"model.json: {what} must be a file name inside the model folder, got {name!r}"
        )
    path = model_dir / name
    if not path.is_file():
        raise ModelError(
            f"weights file {path} named in model.json is missing; copy the whole model "
            "folder again or " + _HOW_TO_TRAIN
        )
    digest = hashlib.sha256()
    data = bytearray()
    with open(path, "rb") as fh:
        have = os.fstat(fh.fileno()).st_size
        if size is not None and have != size:
            raise ModelError(
                f"{path} has {have} bytes, model.json says {size}: the file is tampered "
                "or truncated; copy the model folder again from its source or " + _HOW_TO_TRAIN
            )
        if have > limit:
            raise ModelError(
                f"{path} has {have} bytes, model.json allows at most {limit} bytes"
                + (f" for a {arch}" if arch else "")
                + ": the file is not this model's; copy the model folder again from its "
                "source or " + _HOW_TO_TRAIN
            )
        while block := fh.read(_CHUNK):
            data += block
            if len(data) > limit:  # grew while being read
                raise ModelError(f"{path} grew beyond {limit} bytes while being read; try again")
            digest.update(block)
    if digest.hexdigest() != sha256.lower():
        raise ModelError(
            f"sha256 mismatch for {path}: model.json says {sha256 or '(none)'}, the "
            f"file has {digest.hexdigest()} ({len(data)} bytes). The file is tampered or "
            "truncated; copy the model folder again from its source or " + _HOW_TO_TRAIN
        )
    return bytes(data)


def _check_arch(stage: StageCard, which: str) -> None:
    from heritage.model import zoo as modelzoo

    if stage.arch not in modelzoo.ARCHS:
        raise ModelError(
            f"model.json: {which} architecture {stage.arch!r} is unknown to this version of "
            f"heritage (known: {', '.join(modelzoo.ARCHS)}); update heritage or " + _HOW_TO_TRAIN
        )


def _network(stage: StageCard) -> torch.nn.Module:
    """The card's architecture with random weights (no download): for the layer check,
    the weights' size limit, and to load the weights into."""
    from heritage.model import zoo as modelzoo

    return modelzoo.build_model(stage.arch, stage.num_outputs, pretrained=None)


def _check_cam_layer(card: ModelCard, net: torch.nn.Module) -> None:
    try:
        net.get_submodule(card.cam_layer)
    except AttributeError as exc:
        raise ModelError(
            f"model.json: cam_layer {card.cam_layer!r} is not a layer of a {card.stage1.arch} "
            "(see heritage.model.zoo.cam_target_layer); fix model.json or " + _HOW_TO_TRAIN
        ) from exc


def _build(
    stage: StageCard,
    data: bytes,
    path: Path,
    model: torch.nn.Module | None = None,
) -> torch.nn.Module:
    """Load the verified safetensors ``data`` into ``model`` (the card's architecture) or,
    when ``None``, into a network rebuilt from the weights' shapes (a pruned model)."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        state = load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{path} is not a readable safetensors file ({exc})") from exc
    if model is None:  # non-standard channel counts: rebuild the network from the weights
        from heritage.model.pruned import rebuild_pruned

        shapes = {k: tuple(v.shape) for k, v in state.items()}
        model = rebuild_pruned(stage.arch, shapes, stage.num_outputs)
    target = model.state_dict()
    state = {
        k: (v.to(target[k].dtype) if k in target and v.is_floating_point() else v)
        for k, v in state.items()
    }
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(
            f"{path} does not fit a {stage.arch} with {stage.num_outputs} outputs: "
            f"{str(exc).splitlines()[0]}; the card and the weights do not belong together"
        ) from exc
    model.to(torch.float32)
    return model.eval()


def load_model(model_dir: str | Path | None = None, device: str = "cpu") -> LoadedModel:
    """Load a verified model folder (default: :func:`default_model_dir`) onto ``device``.

    The card is checked as a whole first (:mod:`heritage.model.cardcheck`, the architectures
    and the CAM layer); then each weights file is hashed while it is read, refused
    beyond its size limit (:func:`weights_limit`) before a byte is read, and parsed only
    when its sha256 matches the card. Raises ModelError when the folder, the card or a
    weights file is missing, the card is malformed or names an unknown architecture or
    layer, a file is too large, or a hash does not match.
    """
    model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
    card = read_card(model_dir)  # the whole card is checked here, before any weights
    _check_arch(card.stage1, "stage1")
    if card.stage2 is not None:
        _check_arch(card.stage2, "stage2")
    pruned = card.pruning is not None
    net1 = _network(card.stage1)
    _check_cam_layer(card, net1)
    net2 = _network(card.stage2) if card.stage2 is not None else None
    data1 = _verified_bytes(model_dir, card.stage1, "stage1", weights_limit(card.stage1, net1))
    s1 = _build(card.stage1, data1, model_dir / card.stage1.weights, None if pruned else net1)
    del data1
    s2 = None
    if card.stage2 is not None:
        limit2 = weights_limit(card.stage2, net2)
        data2 = _verified_bytes(model_dir, card.stage2, "stage2", limit2)
        s2 = _build(card.stage2, data2, model_dir / card.stage2.weights, net2)
    s1.to(device)
    if s2 is not None:
        s2.to(device)
    log.info("loaded model %s %s from %s", card.model_id, card.version, model_dir)
    return LoadedModel(card=card, stage1=s1, stage2=s2, model_dir=model_dir)

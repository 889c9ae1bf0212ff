"""Run the classification of ``heritage classify`` on a dask.distributed cluster.

``heritage classify ... --scheduler tcp://HOST:8786`` uses a cluster that is already
running (dask-jobqueue on HPC, Dask on Kubernetes, ``dask scheduler`` + ``dask worker``
by hand); ``--workers N`` starts a local one (N processes, one thread each). The
survey itself (:func:`heritage.survey.pipeline.run_survey`) is unchanged: the client hashes and
inspects the photos, hands batches to :class:`DaskExecutor` and writes the GeoPackage,
in input order, one transaction per batch. On a worker a batch goes through
:func:`heritage.survey.classify.classify_batch`, the same function the local path runs: decode,
stage 1, Grad-CAM, stage 2, and the overlay, heat map and thumbnail written into the
overlays folder beside the GeoPackage. Only the per-photo answers (scores, CAM fields
and the paths of those files) travel back.

What must be shared between the client and every worker, under the same paths:
the photo folders (photos travel as paths), the model folder and the output folder
(the overlays are written by the workers). Each worker process loads the model once
(cache keyed by the model folder and the sha256 of its weights).

Dask is imported only inside the functions of this module.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heritage.kernel.errors import HeritageError, ModelError
from heritage.survey.classify import ClassifyConfig, PhotoOutcome, classify_batch, make_classifier

if TYPE_CHECKING:
    from heritage.kernel.records import Photo
    from heritage.model.predict import TwoStageClassifier

logger = logging.getLogger(__name__)

#: batches in flight per worker thread (one computing, one queued)
IN_FLIGHT_PER_THREAD = 2

#: per worker process: (model folder, weights sha256, device, cam method) -> classifier
_CLASSIFIERS: dict[tuple[str, str, str, str | None], TwoStageClassifier] = {}


def model_key(model_dir: str | Path | None) -> tuple[str, str]:
    """``(resolved model folder, sha256 of its weights)``: the worker cache key."""
    from heritage.model.card import default_model_dir, read_card

    folder = Path(model_dir) if model_dir is not None else default_model_dir()
    card = read_card(folder)
    shas = card.stage1.sha256 + ("/" + card.stage2.sha256 if card.stage2 is not None else "")
    return str(folder.resolve()), shas


def worker_classifier(
    model_dir: str,
    sha: str,
    device: str = "auto",
    cam_method: str | None = None,
    torch_threads: int | None = None,
) -> TwoStageClassifier:
    """This process's classifier for the model, loaded on first use and then reused.

    ``torch_threads`` sets ``torch.set_num_threads`` (local clusters: 1 per worker).
    Raises ModelError when the weights found on this worker are not the client's.
    """
    import torch

    from heritage.model.card import load_model
    from heritage.model.preprocess import resolve_device

    if torch_threads:
        torch.set_num_threads(torch_threads)
    key = (model_dir, sha, device, cam_method)
    clf = _CLASSIFIERS.get(key)
    if clf is None:
        found = model_key(model_dir)[1]
        if found != sha:
            raise ModelError(
                f"the model folder {model_dir} on worker {os.uname().nodename} has other weights "
                "than the client's; give every worker the same model folder (shared storage)"
            )
        dev = resolve_device(device)
        clf = make_classifier(load_model(model_dir, device=dev), dev, cam_method)
        _CLASSIFIERS[key] = clf
        logger.info("worker %d loaded model %s", os.getpid(), model_dir)
    return clf


def classify_on_worker(
    cfg: ClassifyConfig,
    folder: str,
    key: tuple[str, str],
    photos: list[Photo],
    torch_threads: int | None = None,
) -> list[PhotoOutcome]:
    """The task run on a Dask worker: one batch through
    :func:`heritage.survey.classify.classify_batch`."""

    clf = worker_classifier(key[0], key[1], cfg.device, cfg.cam_method, torch_threads)
    return classify_batch(clf, photos, cfg, Path(folder))


@contextmanager
def local_cluster(n_workers: int, threads_per_worker: int = 1) -> Iterator[Any]:
    """A quiet ``LocalCluster`` of ``n_workers`` processes (no dashboard); yields it."""
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    try:
        yield cluster
    finally:
        cluster.close()


class DaskExecutor:
    """A :class:`heritage.survey.classify.BatchExecutor` on a dask.distributed cluster.

    Connects to ``cfg.scheduler`` or starts a local cluster of ``cfg.workers``
    processes (one thread and one torch thread each). Up to ``depth`` batches are
    submitted ahead; results are taken back in submission order, so the GeoPackage
    is written in input order.
    """

    def __init__(self, cfg: ClassifyConfig, folder: Path) -> None:
        from distributed import Client

        self.cfg = cfg
        self.folder = str(Path(folder).absolute())
        self.key = model_key(cfg.model_dir)
        self._cluster_cm = None
        self.torch_threads: int | None = None
        try:
            if cfg.scheduler:
                self.client = Client(cfg.scheduler, timeout="30s")
            else:
                self._cluster_cm = local_cluster(cfg.workers)
                cluster = self._cluster_cm.__enter__()
                self.client = Client(cluster)
                self.torch_threads = 1
        except (OSError, TimeoutError) as exc:
            self.close()
            raise HeritageError(
                f"cannot reach the Dask scheduler {cfg.scheduler!r} ({exc}); check the address "
                "(tcp://HOST:8786) and that the cluster is running"
            ) from exc
        threads = sum(self.client.nthreads().values()) or 1
        self.depth = IN_FLIGHT_PER_THREAD * threads
        logger.info(
            "classifying on %s (%d worker thread(s))", self.client.scheduler.address, threads
        )

    def submit(self, photos: list[Photo]) -> Any:
        """Send one batch (paths and EXIF records) to the cluster."""
        return self.client.submit(
            classify_on_worker,
            self.cfg,
            self.folder,
            self.key,
            photos,
            self.torch_threads,
            pure=False,
        )

    def result(self, handle: Any) -> list[PhotoOutcome]:
        """Wait for one batch's outcomes."""
        return handle.result()

    def close(self) -> None:
        """Disconnect; a local cluster is shut down."""
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
            self.client = None
        if self._cluster_cm is not None:
            self._cluster_cm.__exit__(None, None, None)
            self._cluster_cm = None


__all__ = [
    "DaskExecutor",
    "classify_on_worker",
    "local_cluster",
    "model_key",
    "worker_classifier",
]

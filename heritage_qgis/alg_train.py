"""Train a two-stage model from labelled image folders: heritage train."""

from __future__ import annotations

import os

from qgis.core import (
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
)

from .alg_base import HeritageAlgorithm
from .alg_survey import DEVICES
from .params import check_folder

ARCHS = ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_lite0")
STAGE2_ARCHS = ("resnet18", "resnet50")
#: training arithmetic (heritage train --precision)
PRECISIONS = ("fp32", "bf16")
#: backbones that are fine-tuned from ImageNet weights available offline. The stem and
#: first 9 blocks stay frozen (the first phase of the shipped models up to 0.3.1): fewer
#: weights to learn from the small folders users bring, and less backpropagation on a
#: CPU. The shipped 0.5.0 trains every layer on ~6,000 images (scripts/train_shipped.sh).
FINE_TUNE_ARGS = {
    "efficientnet_lite0": [
        "--pretrained", "imagenet", "--freeze", "11", "--stage2-pretrained", "none",
        "--scheduler", "cosine",
    ],
}  # fmt: skip


def _folder(name: str, description: str, optional: bool = False) -> QgsProcessingParameterFile:
    return QgsProcessingParameterFile(
        name, description, behavior=QgsProcessingParameterFile.Behavior.Folder, optional=optional
    )


def _int(name: str, description: str, default: int | None, minimum: int, optional: bool = False):
    return QgsProcessingParameterNumber(
        name,
        description,
        type=QgsProcessingParameterNumber.Type.Integer,
        defaultValue=default,
        minValue=minimum,
        optional=optional,
    )


class TrainModelAlgorithm(HeritageAlgorithm):
    """heritage train DATA_DIR... -o MODEL_DIR."""

    ALG_ID = "trainmodel"
    COMMAND = "train"
    GROUP_ID = "model"
    GROUP = "Model"
    DISPLAY = "Train a model from folders"
    HELP = (
        "Trains the two-stage classifier on labelled image folders (one sub-folder per class, "
        "e.g. crack/, no_crack/, salt_damage/; 'crack' and 'salt_damage' mean conservation "
        "needed). A second data folder and a folder whose images are all positives (e.g. "
        "defect patches) can be added. Writes a model folder (model.json + weights) that the "
        "classify algorithms take as their model. Training on a CPU takes a while: start "
        "with few epochs or a maximum number of images per class. efficientnet_lite0 is "
        "fine-tuned from ImageNet weights (like the shipped model's stage 1) and needs far fewer "
        "images and epochs than the MobileNetV3 backbones, which train from scratch. "
        "Cancelling stops after the current batch and keeps a checkpoint beside the model "
        "folder; run again with the same settings and 'Continue an interrupted run' ticked "
        "to go on from there."
    )
    #: one training batch plus writing the checkpoint (a ResNet-50 batch on a slow CPU)
    CANCEL_GRACE_S = 600.0

    def initAlgorithm(self, config=None):
        self.addParameter(_folder("INPUT", self.tr("Training images (class sub-folders)")))
        self.addParameter(_folder("INPUT2", self.tr("More training images"), optional=True))
        self.addParameter(
            _folder("EXTRA_POSITIVES", self.tr("Folder of defect images only"), optional=True)
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                "ARCH", self.tr("Stage-1 backbone"), options=list(ARCHS), defaultValue=0
            )
        )
        self.addParameter(_int("EPOCHS", self.tr("Stage-1 epochs"), 15, 1))
        self.addParameter(_int("STAGE2_EPOCHS", self.tr("Stage-2 epochs"), 10, 1))
        self.addParameter(
            _int("MAX_PER_CLASS", self.tr("At most N images per class"), None, 1, optional=True)
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                "SKIP_STAGE2", self.tr("Train stage 1 only"), defaultValue=False
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                "RESUME",
                self.tr("Continue an interrupted run (same model folder and settings)"),
                defaultValue=False,
            )
        )
        advanced = [
            QgsProcessingParameterEnum(
                "STAGE2_ARCH",
                self.tr("Stage-2 backbone"),
                options=list(STAGE2_ARCHS),
                defaultValue=0,
            ),
            _int("IMAGE_SIZE", self.tr("Image size (px)"), 224, 32),
            QgsProcessingParameterEnum(
                "DEVICE", self.tr("Device"), options=list(DEVICES), defaultValue=0
            ),
            QgsProcessingParameterEnum(
                "PRECISION",
                self.tr("Training arithmetic (bf16: faster on recent CPUs and GPUs)"),
                options=list(PRECISIONS),
                defaultValue=0,
            ),
        ]
        for param in advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
            self.addParameter(param)
        self.addParameter(
            QgsProcessingParameterFolderDestination("OUTPUT", self.tr("Model folder"))
        )

    def check_values(self, parameters, context):
        problems = []
        for name, what in (
            ("INPUT", self.tr("Training images")),
            ("INPUT2", self.tr("More training images")),
            ("EXTRA_POSITIVES", self.tr("Folder of defect images")),
        ):
            path = self.parameterAsFile(parameters, name, context)
            if name == "INPUT" or path:
                msg = check_folder(path, what)
                if msg:
                    problems.append(msg)
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        if out and os.path.isfile(out):
            problems.append(self.tr("Model folder {0} is a file: choose a folder.").format(out))
        return problems

    def build_args(self, parameters, context):
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        args = ["train", self.parameterAsFile(parameters, "INPUT", context)]
        more = self.parameterAsFile(parameters, "INPUT2", context)
        if more:
            args.append(more)
        args += ["-o", out]
        extra = self.parameterAsFile(parameters, "EXTRA_POSITIVES", context)
        if extra:
            args += ["--extra-positives", extra]
        arch = ARCHS[self.parameterAsEnum(parameters, "ARCH", context)]
        args += ["--arch", arch, *FINE_TUNE_ARGS.get(arch, [])]
        args += [
            "--stage2-arch",
            STAGE2_ARCHS[self.parameterAsEnum(parameters, "STAGE2_ARCH", context)],
        ]
        args += ["--epochs", str(self.parameterAsInt(parameters, "EPOCHS", context))]
        args += ["--stage2-epochs", str(self.parameterAsInt(parameters, "STAGE2_EPOCHS", context))]
        args += ["--image-size", str(self.parameterAsInt(parameters, "IMAGE_SIZE", context))]
        if parameters.get("MAX_PER_CLASS") not in (None, ""):
            args += [
                "--max-per-class",
                str(self.parameterAsInt(parameters, "MAX_PER_CLASS", context)),
            ]
        if self.parameterAsBoolean(parameters, "SKIP_STAGE2", context):
            args.append("--skip-stage2")
        if self.parameterAsBoolean(parameters, "RESUME", context):
            args.append("--resume")
        args += ["--device", DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)]]
        args += ["--precision", PRECISIONS[self.parameterAsEnum(parameters, "PRECISION", context)]]
        return [*args, "--json-progress"]

    def processAlgorithm(self, parameters, context, feedback):
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        os.makedirs(out, exist_ok=True)
        self.run_backend(self.build_args(parameters, context), feedback)
        return {"OUTPUT": out}

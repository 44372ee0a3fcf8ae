"""The configuration and names shared by training, serving and the web side.

Standard library only: the web process validates a training request and reads layer names
without loading TensorFlow. `ml.model` builds networks from these; `ml.augment` and
`ml.train` read their settings here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"

# The keys of ml.model.ARCHITECTURES (a test holds them equal).
ARCHS: tuple[str, ...] = ("resnet", "vgg")
# Narrower first stages crash TensorFlow's oneDNN convolutions (ml.model.build_model).
MIN_WIDTH = 16

# Every network, single or ensemble, names its layers so: Grad-CAM, calibration folding,
# the input gate and the ensemble spread find them by name, whatever the body.
INPUT_LAYER = "image"
TRIM_LAYER = "trim_borders"  # only in models that trim borders at serving
GRADCAM_LAYER = "gradcam_features"  # the last convolutional feature map before pooling
POOL_LAYER = "pool"
DROPOUT_LAYER = "dropout"
LOGIT_LAYER = "logit"
PROBABILITY_LAYER = "probability"
# The layers from the Grad-CAM features to the logit, in order.
HEAD_LAYERS = (POOL_LAYER, DROPOUT_LAYER, LOGIT_LAYER)


@dataclass
class ModelConfig:
    arch: str = "resnet"
    image_size: int = 224
    width: int = 24  # channels of the first stage; each stage doubles it
    stages: int = 4
    dropout: float = 0.3
    weight_decay: float = 1e-4
    # Per-image zero mean, unit variance at the input: exposure and contrast differences
    # between acquisition batches cancel before the first convolution.
    standardize: bool = True


@dataclass
class AugmentConfig:
    # "crop": a wide random-resized crop (area and aspect jitter, crops that reach past the
    # border are filled with air) -- the recipe that held up on held-out acquisition batches
    # (docs/model.md). "affine": the earlier rotation/zoom/translation layers.
    geometry: str = "crop"
    crop_area: tuple[float, float] = (0.55, 1.15)  # box area as a fraction of the image
    crop_aspect: float = 0.25  # log-uniform aspect ratio in [exp(-a), exp(a)]
    rotation_degrees: float = 7.0
    zoom: float = 0.12
    translate: float = 0.06
    gamma: float = 0.6  # log-uniform gamma in [exp(-g), exp(g)]
    contrast: float = 0.4
    brightness: float = 0.15
    noise: float = 0.02


@dataclass
class TrainConfig:
    data_root: str = str(DEFAULT_DATA)
    output: str = str(REPO_ROOT / "build" / "model.keras")
    version: str = ""  # default: date, architecture and input size
    seed: int = 1337  # initialisation, shuffling and augmentation
    split_seed: int = 1337  # which patients validate: ensemble members must share it
    # "batch": validate on held-out acquisition batches (ml.data.batch_split), which
    # predicted the official test split's shift; "patient": a random patient-level split.
    split: str = "batch"
    val_fraction: float = 0.15
    in_batch_fraction: float = 0.1  # batch split only: the in-batch comparison set
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_epochs: int = 1
    label_smoothing: float = 0.0
    # Operating point: favour sensitivity, a missed pneumonia costs more than a second look.
    target_sensitivity: float = 0.97
    limit_per_class: int = 0  # >0: a small subset, for smoke tests
    cache_dir: str = str(REPO_ROOT / ".cache" / "arrays")
    dataset_name: str = "chest_xray/train (Kermany et al. 2018)"
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

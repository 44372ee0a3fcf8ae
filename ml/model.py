"""Architecture factory. Every network ends in the same head, its layers named by
`ml.config`, so Grad-CAM and calibration can find them by name, whatever the body."""

from __future__ import annotations

import keras
from keras import layers

from ml.config import (
    DROPOUT_LAYER,
    GRADCAM_LAYER,
    INPUT_LAYER,
    LOGIT_LAYER,
    MIN_WIDTH,
    POOL_LAYER,
    PROBABILITY_LAYER,
    ModelConfig,
)


def build_model(config: ModelConfig) -> keras.Model:
    if config.width < MIN_WIDTH:
        # TensorFlow 2.21's oneDNN convolutions crash the process on stages this
        # narrow (segfaults at widths 4 and 8, heap corruption at 12 on 2-core x86 CPUs).
        raise ValueError(f"width must be at least {MIN_WIDTH}, got {config.width}.")
    try:
        body = ARCHITECTURES[config.arch]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"Unknown architecture {config.arch!r}; choose one of {known}.") from None
    inputs = keras.Input((config.image_size, config.image_size, 1), name=INPUT_LAYER)
    x = PerImageStandardization(name="standardize")(inputs) if config.standardize else inputs
    features = body(x, config)
    features = layers.Activation("relu", name=GRADCAM_LAYER)(features)
    pooled = layers.GlobalAveragePooling2D(name=POOL_LAYER)(features)
    pooled = layers.Dropout(config.dropout, name=DROPOUT_LAYER)(pooled)
    logit = layers.Dense(1, name=LOGIT_LAYER)(pooled)
    probability = layers.Activation("sigmoid", name=PROBABILITY_LAYER, dtype="float32")(logit)
    return keras.Model(inputs, probability, name=f"chestnet_{config.arch}")


@keras.saving.register_keras_serializable(package="chestnet")
class PerImageStandardization(layers.Layer):
    """(x - mean) / std over each image's pixels; the same at training and serving."""

    def call(self, inputs):
        mean = keras.ops.mean(inputs, axis=(1, 2, 3), keepdims=True)
        std = keras.ops.std(inputs, axis=(1, 2, 3), keepdims=True)
        return (inputs - mean) / keras.ops.maximum(std, 1e-3)


@keras.saving.register_keras_serializable(package="chestnet")
class TrimBorders(layers.Layer):
    """Test-time border trimming: the central square, `fraction` of the side in from each
    edge, resized back to the full input. Networks trained on random-resized crops see
    slightly zoomed-in chests; trimming shows them served images the same way."""

    def __init__(self, fraction: float = 0.05, **kwargs):
        super().__init__(**kwargs)
        self.fraction = float(fraction)

    def box(self, size: int) -> tuple[int, int]:
        """(offset, side) of the kept square in pixels of a `size` input."""
        inner = int(round(size * (1 - 2 * self.fraction)))
        return (size - inner) // 2, inner

    def call(self, inputs):
        size = inputs.shape[1]
        offset, inner = self.box(size)
        crop = inputs[:, offset : offset + inner, offset : offset + inner, :]
        return keras.ops.image.resize(crop, (size, size), interpolation="bilinear")

    def get_config(self):
        return {**super().get_config(), "fraction": self.fraction}


def _regularizer(config: ModelConfig) -> keras.regularizers.Regularizer | None:
    return keras.regularizers.L2(config.weight_decay) if config.weight_decay else None


def _conv_bn(x, filters: int, config: ModelConfig, *, stride: int = 1, kernel: int = 3, relu=True):
    x = layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_regularizer=_regularizer(config),
    )(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x) if relu else x


def _stem(inputs, config: ModelConfig):
    # Two stride-2 steps up front: 224 px becomes 56 px before the expensive stages,
    # which is what makes training from scratch fit in an hour on two cores.
    x = _conv_bn(inputs, config.width, config, stride=2, kernel=5)
    return layers.MaxPooling2D(3, strides=2, padding="same")(x)


def _vgg_body(inputs, config: ModelConfig):
    """Plain conv-BN-ReLU pairs with max pooling: the baseline."""
    x = _stem(inputs, config)
    for stage in range(config.stages):
        filters = config.width * 2**stage
        x = _conv_bn(x, filters, config)
        x = _conv_bn(x, filters, config, relu=stage < config.stages - 1)
        if stage < config.stages - 1:
            x = layers.MaxPooling2D(2)(x)
    return x


def _residual_block(x, filters: int, config: ModelConfig, *, stride: int):
    shortcut = x
    y = _conv_bn(x, filters, config, stride=stride)
    y = _conv_bn(y, filters, config, relu=False)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = _conv_bn(shortcut, filters, config, stride=stride, kernel=1, relu=False)
    return layers.Add()([shortcut, y])


def _resnet_body(inputs, config: ModelConfig):
    """ResNet-style basic blocks, one per stage, strided between stages."""
    x = _stem(inputs, config)
    for stage in range(config.stages):
        x = _residual_block(x, config.width * 2**stage, config, stride=1 if stage == 0 else 2)
        if stage < config.stages - 1:
            x = layers.ReLU()(x)
    return x


# ml.config.ARCHS lists these keys for code that must not load Keras.
ARCHITECTURES = {"resnet": _resnet_body, "vgg": _vgg_body}

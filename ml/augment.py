"""tf.data pipeline with augmentation chosen for radiographs.

The official test split was acquired differently (exposure, contrast), so intensity
augmentation matters as much as geometry. No horizontal flips: the heart is on the left,
and a mirrored chest is not an image the model will ever be shown.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from ml.config import AugmentConfig


def training_dataset(
    images: np.ndarray, targets: np.ndarray, *, batch_size: int, seed: int, augment: AugmentConfig
) -> tf.data.Dataset:
    geometry = _geometry(augment, seed) if augment.geometry == "affine" else None
    rotation = _rotation(augment, seed) if augment.rotation_degrees else None

    def transform(batch, labels):
        batch = tf.cast(batch, tf.float32) / 255.0
        if geometry is None:
            batch = _random_resized_crop(batch, augment)
            if rotation is not None:
                batch = rotation(batch, training=True)
        else:
            batch = geometry(batch, training=True)
        return _intensity(batch, augment), labels

    return (
        tf.data.Dataset.from_tensor_slices((images, targets))
        .shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(transform, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def evaluation_dataset(
    images: np.ndarray, targets: np.ndarray, *, batch_size: int
) -> tf.data.Dataset:
    return (
        tf.data.Dataset.from_tensor_slices((images, targets))
        .batch(batch_size)
        .map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y))
        .prefetch(tf.data.AUTOTUNE)
    )


def _geometry(augment: AugmentConfig, seed: int):
    fill = {"fill_mode": "constant", "fill_value": 0.0}
    return keras.Sequential(
        [
            layers.RandomRotation(augment.rotation_degrees / 360.0, seed=seed, **fill),
            layers.RandomZoom(augment.zoom, seed=seed + 1, **fill),
            layers.RandomTranslation(augment.translate, augment.translate, seed=seed + 2, **fill),
        ],
        name="geometry",
    )


def _rotation(augment: AugmentConfig, seed: int):
    return layers.RandomRotation(
        augment.rotation_degrees / 360.0, seed=seed, fill_mode="constant", fill_value=0.0
    )


def _random_resized_crop(batch: tf.Tensor, augment: AugmentConfig) -> tf.Tensor:
    """Each image resized from a random box back to full size; boxes larger than the image
    shrink it inside a black border, as a tighter or looser collimation would."""
    n = tf.shape(batch)[0]
    size = tf.shape(batch)[1:3]
    area = tf.random.uniform([n], *augment.crop_area)
    aspect = tf.exp(tf.random.uniform([n], -augment.crop_aspect, augment.crop_aspect))
    height = tf.sqrt(area / aspect)
    width = tf.sqrt(area * aspect)
    top = tf.random.uniform([n]) * (1.0 - height)
    left = tf.random.uniform([n]) * (1.0 - width)
    boxes = tf.stack([top, left, top + height, left + width], axis=1)
    return tf.image.crop_and_resize(
        batch, boxes, tf.range(n), size, method="bilinear", extrapolation_value=0.0
    )


def _intensity(batch: tf.Tensor, augment: AugmentConfig) -> tf.Tensor:
    n = tf.shape(batch)[0]

    def per_image(low: float, high: float) -> tf.Tensor:
        return tf.random.uniform([n, 1, 1, 1], low, high)

    batch = tf.pow(
        tf.clip_by_value(batch, 1e-6, 1.0), tf.exp(per_image(-augment.gamma, augment.gamma))
    )
    mean = tf.reduce_mean(batch, axis=[1, 2, 3], keepdims=True)
    batch = (batch - mean) * per_image(1 - augment.contrast, 1 + augment.contrast) + mean
    batch = batch + per_image(-augment.brightness, augment.brightness)
    batch = batch + tf.random.normal(tf.shape(batch)) * per_image(0.0, augment.noise)
    return tf.clip_by_value(batch, 0.0, 1.0)

"""Grad-CAM: where the network looked.

`gradcam` is the reference, computed with tf-keras-vis (the design card's library).
`CompiledExplainer` computes the same map inside one compiled TensorFlow function together
with the prediction; tests hold it to Pearson r >= 0.99 against the reference on the shipped
model. Rendering the maps is `ml.overlay`'s job, on plain arrays and without TensorFlow.
"""

from __future__ import annotations

import numpy as np

from ml.config import GRADCAM_LAYER, HEAD_LAYERS, TRIM_LAYER

_EPSILON = 1e-7  # the epsilon of keras.backend, which tf-keras-vis normalises with


def gradcam(model, model_input: np.ndarray, *, layer: str = GRADCAM_LAYER) -> np.ndarray:
    """Grad-CAM of P(pneumonia) for one input (H, W, 1): a 2-D float array in [0, 1] of
    size (H, W). Computed on the logit (sigmoid removed) so saturated outputs still explain."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

    explainer = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
    cam = explainer(
        lambda output: output[:, 0],
        model_input[np.newaxis].astype(np.float32),
        penultimate_layer=layer,
        seek_penultimate_conv_layer=False,
    )
    cam = np.clip(np.asarray(cam[0], dtype=np.float32), 0.0, 1.0)
    box = trim_box(model)
    return cam if box is None else _into_frame(cam, box, cam.shape)


def trim_box(model) -> tuple[int, int] | None:
    """(offset, side) of the square the network sees when the model trims borders."""
    try:
        layer = model.get_layer(TRIM_LAYER)
    except ValueError:
        return None
    return layer.box(int(model.input_shape[1]))


def _into_frame(cam: np.ndarray, box: tuple[int, int], shape: tuple[int, ...]) -> np.ndarray:
    """A map of the trimmed view placed back where that view lies in the input: the heatmap
    stays aligned with the radiograph (the trimmed border gets no heat)."""
    offset, side = box
    inner = _zoom_matrix(cam.shape[0], side) @ cam @ _zoom_matrix(cam.shape[1], side).T
    framed = np.zeros(shape, np.float32)
    framed[offset : offset + side, offset : offset + side] = inner
    return framed


class CompiledExplainer:
    """Probability and Grad-CAM for a batch in one compiled forward-and-backward pass."""

    def __init__(self, model, *, layer: str = GRADCAM_LAYER, with_pooled: bool = False) -> None:
        import keras
        import tensorflow as tf

        self._size = tuple(model.input_shape[1:3])
        self._box = trim_box(model)
        # The pooled features feed the input gate and the ensemble spread (ml.predictor).
        self._with_pooled = with_pooled
        features = model.get_layer(layer).output
        self._body = keras.Model(model.inputs, features)
        # The head is rebuilt on its own input so the tape sees features -> logit directly.
        head_input = keras.Input(features.shape[1:])
        pooled = model.get_layer(HEAD_LAYERS[0])(head_input)
        for name in HEAD_LAYERS[1:]:
            pooled = model.get_layer(name)(pooled)
        self._head = keras.Model(head_input, pooled)
        signature = [tf.TensorSpec((None, *self._size, 1), tf.float32)]
        self._explain = tf.function(self._explain_graph, input_signature=signature)

    def _explain_graph(self, batch):
        import tensorflow as tf

        features = self._body(batch, training=False)
        with tf.GradientTape() as tape:
            tape.watch(features)
            logits = self._head(features, training=False)[:, 0]
        grads = tape.gradient(logits, features)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cams = tf.nn.relu(tf.reduce_sum(features * weights, axis=-1))
        return tf.sigmoid(logits), cams, tf.reduce_mean(features, axis=(1, 2))

    def __call__(self, batch: np.ndarray):
        """(probabilities (N,), heatmaps (N, H, W) in [0, 1]), and the pooled features
        (N, C) as a third item when built `with_pooled`."""
        probabilities, cams, pooled = self._explain(batch.astype(np.float32))
        maps = self._maps(cams.numpy())
        probabilities = probabilities.numpy().astype(np.float64)
        if self._with_pooled:
            return probabilities, maps, pooled.numpy()
        return probabilities, maps

    def _maps(self, cams: np.ndarray) -> np.ndarray:
        """The reference's steps (`gradcam`: bilinear zoom to the input, min-max to [0, 1],
        zoom into the trimmed frame) as matrix products on the whole batch: linear zooms are
        matrices, and a zoom commutes with the min-max scaling because its weights sum to 1.
        The same maps to float rounding; at 224 px in batches of 8, 0.13 ms an image instead
        of 2.1 ms for scipy's two zooms of each (tests/ml/test_gradcam.py holds them equal)."""
        height, width = cams.shape[1:]
        rows, columns = _zoom_matrix(height, self._size[0]), _zoom_matrix(width, self._size[1])
        cams = cams.astype(np.float64)
        full = rows @ cams @ columns.T
        low = full.min(axis=(1, 2), keepdims=True)
        scale = full.max(axis=(1, 2), keepdims=True) - low + _EPSILON
        if self._box is None:
            return ((full - low) / scale).astype(np.float32)
        offset, side = self._box
        inner_rows = _zoom_matrix(self._size[0], side) @ rows
        inner_columns = _zoom_matrix(self._size[1], side) @ columns
        inner = inner_rows @ cams @ inner_columns.T
        maps = np.zeros((len(cams), *self._size), np.float32)
        maps[:, offset : offset + side, offset : offset + side] = (inner - low) / scale
        return maps


def _zoom_matrix(source: int, target: int) -> np.ndarray:
    """(target, source) weights of `scipy.ndimage.zoom(order=1)` along one axis: linear
    interpolation with the first and last samples of both grids aligned. (Where rounding
    puts scipy's last sample a hair past the edge, scipy reads zero there, a blank last row
    or column on some sizes; here the edge sample is the edge value.)"""
    weights = np.zeros((target, source))
    if source == 1 or target == 1:
        weights[:, 0] = 1.0
        return weights
    positions = np.arange(target) * ((source - 1) / (target - 1))
    lower = np.minimum(np.floor(positions).astype(int), source - 2)
    upper_weight = positions - lower
    weights[np.arange(target), lower] = 1.0 - upper_weight
    weights[np.arange(target), lower + 1] = upper_weight
    return weights

"""What a trained network sees in a batch: its pooled features (the input gate's second
distance and the ensemble's spread read them) and its logits. Keras is imported only when
called, so importing this module loads no TensorFlow."""

from __future__ import annotations

import numpy as np

from ml.config import LOGIT_LAYER, POOL_LAYER


def pooled_and_logits(model, images: np.ndarray, *, batch_size: int = 64):
    """(pooled features (N, D), logits (N,)) for uint8 or float inputs."""
    import keras

    probe = keras.Model(
        model.inputs, [model.get_layer(POOL_LAYER).output, model.get_layer(LOGIT_LAYER).output]
    )
    divisor = 255.0 if images.dtype == np.uint8 else 1.0
    pooled, logits = [], []
    for start in range(0, len(images), batch_size):
        p, z = probe.predict_on_batch(
            images[start : start + batch_size].astype(np.float32) / divisor
        )
        pooled.append(np.asarray(p))
        logits.append(np.asarray(z).reshape(-1))
    return np.concatenate(pooled), np.concatenate(logits).astype(np.float64)

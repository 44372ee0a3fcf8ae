from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ml.gradcam import CompiledExplainer, gradcam
from ml.overlay import heatmap_png, render_overlay
from ml.preprocessing import decode_image, preprocess


@pytest.fixture(scope="module")
def tiny_model(tiny_model_path):
    import keras

    return keras.saving.load_model(tiny_model_path, compile=False)


def test_compiled_heatmap_matches_tf_keras_vis(tiny_model, radiograph_set):
    paths = sorted((radiograph_set / "chest_xray/train/PNEUMONIA").iterdir())[:3]
    batch = np.stack([preprocess(p.read_bytes(), 64) for p in paths])
    _, compiled = CompiledExplainer(tiny_model)(batch)
    for index, model_input in enumerate(batch):
        reference = gradcam(tiny_model, model_input)
        assert reference.shape == (64, 64)
        assert np.corrcoef(reference.ravel(), compiled[index].ravel())[0, 1] >= 0.99


@pytest.mark.parametrize(("source", "target"), [(7, 224), (224, 202), (8, 64), (5, 5), (1, 9)])
def test_zoom_matrix_is_scipys_linear_zoom(source, target):
    from scipy.ndimage import zoom

    from ml.gradcam import _zoom_matrix

    cam = np.random.default_rng(source).random((source, source))
    weights = _zoom_matrix(source, target)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    np.testing.assert_allclose(
        weights @ cam @ weights.T, zoom(cam, target / source, order=1, mode="nearest"), atol=1e-9
    )


def test_a_framed_heatmap_has_no_blank_edge_where_scipy_rounds_past_it():
    """scipy's zoom 64 -> 58 reads its last sample a hair outside the grid, as zero; the
    framed map keeps the edge's own heat."""
    from ml.gradcam import _into_frame

    framed = _into_frame(np.ones((64, 64), np.float32), (3, 58), (64, 64))
    np.testing.assert_allclose(framed[3:61, 3:61], 1.0, atol=1e-6)
    assert framed[:3].max() == 0 and framed[61:].max() == 0


def test_compiled_maps_are_the_references_steps_in_one_product(tiny_model):
    """Zoom each cam to the input, scale it to [0, 1], place it in the trimmed frame: the
    batch's matrix products give the same maps as those steps one by one."""
    from scipy.ndimage import zoom

    from ml.gradcam import _EPSILON, _into_frame

    explainer = CompiledExplainer(tiny_model)
    explainer._box = (3, 58)  # as a model trimming 5 % of each border at 64 px
    cams = np.random.default_rng(7).random((3, 8, 8)).astype(np.float32)
    for cam, map_ in zip(cams, explainer._maps(cams), strict=True):
        full = zoom(cam, 8, order=1)
        scaled = (full - full.min()) / (full.max() - full.min() + _EPSILON)
        np.testing.assert_allclose(map_, _into_frame(scaled, (3, 58), (64, 64)), atol=1e-6)


def test_gradcam_is_a_unit_range_map_at_input_size(tiny_model, radiograph_set):
    path = next((radiograph_set / "chest_xray/train/NORMAL").iterdir())
    heatmap = gradcam(tiny_model, preprocess(path.read_bytes(), 64))
    assert heatmap.shape == (64, 64)
    assert 0.0 <= heatmap.min() and heatmap.max() <= 1.0


def test_overlay_is_a_png_at_the_original_image_size(radiograph_set):
    image = decode_image(next((radiograph_set / "originals/PNEUMONIA").iterdir()).read_bytes())
    heatmap = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    overlay = Image.open(io.BytesIO(render_overlay(image, heatmap, alpha=0.5)))
    assert overlay.format == "PNG" and overlay.mode == "RGB"
    assert overlay.size == (image.shape[1], image.shape[0])


def test_overlay_leaves_cold_regions_as_the_radiograph():
    image = np.full((100, 100), 0.5, dtype=np.float32)
    heatmap = np.zeros((10, 10), dtype=np.float32)
    heatmap[:, 5:] = 1.0
    pixels = np.asarray(Image.open(io.BytesIO(render_overlay(image, heatmap, alpha=0.6))))
    assert np.all(pixels[:, :40] == 128)
    assert np.abs(pixels[:, 70:].astype(int) - 128).max() > 40


def test_heatmap_png_is_transparent_where_cold():
    heatmap = np.zeros((8, 8), dtype=np.float32)
    heatmap[0, 0] = 1.0
    layer = Image.open(io.BytesIO(heatmap_png(heatmap, size=(80, 40))))
    # Indexed, with the opacity of each heat level in its tRNS chunk: RGBA to any reader.
    assert layer.mode == "P" and "transparency" in layer.info and layer.size == (80, 40)
    rgba = np.asarray(layer.convert("RGBA"))
    alpha = rgba[..., 3]
    assert alpha[-1, -1] == 0 and alpha[0, 0] > 200
    assert rgba[0, 0, 0] > 100 and rgba[0, 0, 2] < 50  # hot is red (jet), cold is blue


def test_overlay_alpha_outside_unit_range_is_refused():
    with pytest.raises(ValueError, match="alpha"):
        render_overlay(np.zeros((64, 64)), np.zeros((8, 8)), alpha=1.5)

from __future__ import annotations

import pytest

from ml.config import ARCHS, GRADCAM_LAYER, ModelConfig
from ml.model import ARCHITECTURES, build_model


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_ends_in_the_shared_head(arch):
    model = build_model(ModelConfig(arch=arch, image_size=64, width=16, stages=2))
    assert model.output_shape == (None, 1)
    assert model.input_shape == (None, 64, 64, 1)
    assert len(model.get_layer(GRADCAM_LAYER).output.shape) == 4


def test_unknown_architecture_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="resnet"):
        build_model(ModelConfig(arch="transformer"))


def test_widths_that_crash_onednn_are_refused():
    with pytest.raises(ValueError, match="width"):
        build_model(ModelConfig(width=8))


def test_the_tensorflow_free_list_of_architectures_names_every_architecture():
    assert sorted(ARCHS) == sorted(ARCHITECTURES)

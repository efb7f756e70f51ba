import sys
import types

import pytest
import torch
from safetensors.torch import save_file

from memcontrol.data.imagefolder import load_imagefolder, load_images
from memcontrol.errors import UserError
from memcontrol.metrics import (
    features_of_examples,
    load_domain_encoder,
    make_extractor,
    save_domain_encoder,
    train_domain_encoder,
)
from memcontrol.metrics.features import XRV_WEIGHTS, PixelFeatures


def test_pixel_features_are_resized_flattened_pixels():
    extractor = make_extractor("pixels")
    images = torch.rand(5, 3, 32, 32)
    features = extractor(images, batch_size=2)
    assert extractor.name == "pixels" and features.shape == (5, extractor.num_features) == (5, 3 * 16 * 16)
    assert torch.allclose(PixelFeatures(size=32)(images), images.flatten(1))


def test_unknown_extractor_or_unexpected_weights_are_user_errors():
    with pytest.raises(UserError, match="expected one of domain, inception, pixels, torchxrayvision"):
        make_extractor("clip")
    with pytest.raises(UserError, match="takes no weights"):
        make_extractor("pixels", weights="x.pt")
    with pytest.raises(UserError, match="needs the path of its weights"):
        make_extractor("domain")


def test_torchxrayvision_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchxrayvision", None)  # makes the import fail
    with pytest.raises(UserError, match=r"pip install torchxrayvision.*models_data"):
        make_extractor("torchxrayvision")


def _fake_torchxrayvision(cache_dir):
    """Just the attributes memcontrol uses; the trunk gives 1024 channels at 7 x 7 like DenseNet-121 at 224 px."""

    class DenseNet(torch.nn.Module):
        def __init__(self, weights):
            super().__init__()
            assert weights == XRV_WEIGHTS
            self.features = torch.nn.Conv2d(1, 1024, kernel_size=32, stride=32)

    url = "https://example.org/v1/mimic_ch-weights.pt"
    module = types.SimpleNamespace(
        models=types.SimpleNamespace(DenseNet=DenseNet, model_urls={XRV_WEIGHTS: {"weights_url": url}}),
        utils=types.SimpleNamespace(get_cache_dir=lambda: str(cache_dir)),
    )
    return module, cache_dir / "mimic_ch-weights.pt"


def test_torchxrayvision_needs_its_weights_file_and_then_gives_1024_features(monkeypatch, tmp_path):
    module, weights = _fake_torchxrayvision(tmp_path)
    monkeypatch.setitem(sys.modules, "torchxrayvision", module)
    with pytest.raises(UserError, match="mimic_ch-weights.pt not found; memcontrol never downloads"):
        make_extractor("torchxrayvision")
    weights.touch()
    extractor = make_extractor("torchxrayvision")
    grey = torch.rand(2, 1, 16, 16).expand(2, 3, 16, 16)  # grey RGB in, one channel scaled to [-1024, 1024] used
    features = extractor(grey)
    assert features.shape == (2, 1024)
    x = torch.nn.functional.interpolate(
        grey[:, :1], size=(224, 224), mode="bilinear", antialias=True, align_corners=False
    )
    assert torch.allclose(features, extractor.model.features((x * 2 - 1) * 1024).mean((2, 3)), atol=1e-3)


def test_inception_without_package_or_weights_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="inception"):
        make_extractor("inception", weights=tmp_path / "missing.pth")


def _two_classes(n=32):
    """Dark images with a bright left half against bright images with a dark left half."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    images = 0.2 + 0.1 * torch.rand(n, 3, 16, 16, generator=g)
    images[labels == 1] = 1 - images[labels == 1]
    images[..., :8] = 1 - images[..., :8]
    return images, labels


def test_domain_encoder_learns_classes_and_round_trips_through_safetensors(tmp_path):
    images, labels = _two_classes()
    model = train_domain_encoder(
        images, labels, ["dark", "bright"], steps=20, batch_size=16, input_size=16, width=8, progress=False
    )
    assert (model(images).argmax(1) == labels).all()
    path = save_domain_encoder(model, tmp_path / "encoder.safetensors")
    extractor = make_extractor("domain", weights=path)
    assert extractor.name == "domain" and extractor.num_features == 128 and extractor.class_names == ("dark", "bright")
    assert torch.allclose(extractor(images), model.features(images).detach(), atol=1e-6)
    probabilities = extractor.class_probabilities(images)
    assert probabilities.shape == (32, 2) and torch.allclose(probabilities.sum(1), torch.ones(32))


def test_load_domain_encoder_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_domain_encoder(tmp_path / "none.safetensors")
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UserError, match="not a memcontrol domain encoder"):
        load_domain_encoder(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="not a readable safetensors file"):
        load_domain_encoder(tmp_path / "junk.safetensors")


def test_features_of_examples_reads_files_in_batches(tiny_data_dir):
    examples = load_imagefolder(tiny_data_dir)
    extractor = make_extractor("pixels")
    expected = extractor((load_images(examples, 16, progress=False) + 1) / 2)
    assert torch.allclose(features_of_examples(extractor, examples, 16, batch_size=5, progress=False), expected)

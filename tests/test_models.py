import pytest
import torch

from mrl.errors import MRLError
from mrl.models import build_classifier, create_backbone
from mrl.models.classifier import encode


def test_small_resnet_and_classifier_shapes():
    model = build_classifier(backbone="small_resnet", embed_dim=64, num_classes=10, matryoshka_dims=(8, 16, 64), mode="mrl", width=4)
    x = torch.randn(5, 1, 28, 28)
    assert model(x).shape == (3, 5, 10)
    emb, logits = encode(model, x, batch_size=2)
    assert emb.shape == (5, 64) and logits.shape == (3, 5, 10)
    assert model.training  # encode restores the mode it found
    ff = build_classifier(backbone="small_resnet", embed_dim=64, num_classes=10, matryoshka_dims=(8,), mode="ff", width=4)
    assert ff(x).shape == (1, 5, 10) and ff.head.head_weight(0).shape == (10, 8)


def test_factory_errors():
    with pytest.raises(MRLError, match="unknown backbone"):
        create_backbone("vgg", 64)
    with pytest.raises(MRLError, match="unknown mode"):
        build_classifier(backbone="small_resnet", embed_dim=64, num_classes=10, matryoshka_dims=(64,), mode="mrl2")
    with pytest.raises(MRLError, match="single dim"):
        build_classifier(backbone="small_resnet", embed_dim=64, num_classes=10, matryoshka_dims=(8, 64), mode="ff")


def test_torchvision_backbone_builds_or_explains():
    try:
        net = create_backbone("torchvision:resnet18", 32)
    except MRLError as exc:  # torchvision absent or built for another torch
        assert "torchvision" in str(exc) and "small_resnet" in str(exc)
    else:
        assert net(torch.randn(2, 1, 32, 32)).shape == (2, 32)

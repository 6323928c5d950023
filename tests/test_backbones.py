"""The backbone registry, torchvision ResNets at native width, and local weight files."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from mrl.errors import MRLError
from mrl.models import build_classifier
from mrl.models.vision import BACKBONES, create_backbone, get_backbone_spec, list_backbones, load_backbone_weights
from mrl.torchvision_compat import compiled_ops_available, import_torchvision


def test_registry_is_the_one_source_of_backbone_facts():
    assert {"small_resnet", "torchvision:resnet18", "torchvision:resnet50"} <= set(list_backbones())
    assert get_backbone_spec("torchvision:resnet50").native_width == 2048 and get_backbone_spec("torchvision:resnet18").native_width == 512
    assert BACKBONES["small_resnet"].options == ("width",)
    with pytest.raises(MRLError, match="unknown backbone 'vgg'"):
        get_backbone_spec("vgg")


def test_torchvision_imports_here_and_reports_its_compiled_ops():
    tv = import_torchvision()
    assert tv.__version__.split("+")[0] >= "0.17"
    assert isinstance(compiled_ops_available(), bool)


def test_resnet_embedding_is_the_native_penultimate_layer_unless_projected():
    torch.manual_seed(0)
    net = create_backbone("torchvision:resnet18", in_channels=3)
    assert net.embed_dim == 512 and isinstance(net.project, torch.nn.Identity)
    x = torch.randn(2, 3, 32, 32)
    net.eval()
    t = net.trunk
    stem = t.maxpool(t.relu(t.bn1(t.conv1(x))))
    penultimate = torch.flatten(t.avgpool(t.layer4(t.layer3(t.layer2(t.layer1(stem))))), 1)
    assert torch.allclose(net(x), penultimate)
    proj = create_backbone("torchvision:resnet18", 64)
    assert proj.embed_dim == 64 and proj(torch.randn(2, 1, 32, 32)).shape == (2, 64)  # grayscale repeated to RGB
    model = build_classifier(backbone="torchvision:resnet50", embed_dim=None, num_classes=10, matryoshka_dims=(8, 16, 2048), mode="mrl", in_channels=3)
    assert model.embed_dim == 2048 and model(torch.randn(2, 3, 32, 32)).shape == (3, 2, 10)


def test_local_weights_load_from_pth_and_safetensors(tmp_path):
    tv = import_torchvision()
    src = tv.models.resnet18(weights=None)  # a torchvision state dict, fc included
    torch.save(src.state_dict(), tmp_path / "r18.pth")
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "r18.safetensors"))
    for name in ("r18.pth", "r18.safetensors"):
        net = create_backbone("torchvision:resnet18", in_channels=3)
        ignored = load_backbone_weights(net, tmp_path / name)
        assert ignored == ["fc.bias", "fc.weight"]
        assert torch.equal(net.trunk.conv1.weight, src.conv1.weight) and torch.equal(net.trunk.layer4[1].bn2.running_var, src.layer4[1].bn2.running_var)


def test_mismatched_weights_name_the_tensors_in_one_line(tmp_path):
    state = create_backbone("torchvision:resnet18", in_channels=3).trunk.state_dict()
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    state["extra.weight"] = torch.zeros(3)
    del state["layer1.0.bn1.bias"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(MRLError) as err:
        load_backbone_weights(create_backbone("torchvision:resnet18", in_channels=3), tmp_path / "bad.pth")
    msg = str(err.value)
    assert "\n" not in msg
    assert "shape mismatch: conv1.weight (file [64, 1, 7, 7] vs model [64, 3, 7, 7])" in msg and "missing: layer1.0.bn1.bias" in msg and "unexpected: extra.weight" in msg
    # A ResNet-50 file into a ResNet-18: named, not a traceback.
    torch.save(import_torchvision().models.resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    with pytest.raises(MRLError, match=r"does not fit this backbone \(shape mismatch: layer1\.0\.conv1\.weight"):
        load_backbone_weights(create_backbone("torchvision:resnet18", in_channels=3), tmp_path / "r50.pth")


def test_unsafe_or_missing_weight_files_are_refused(tmp_path):
    torch.save({"net": object()}, tmp_path / "pickle.pth")
    with pytest.raises(MRLError, match="weights_only=True"):
        load_backbone_weights(create_backbone("small_resnet", 16, width=4), tmp_path / "pickle.pth")
    with pytest.raises(MRLError, match="does not exist"):
        load_backbone_weights(create_backbone("small_resnet", 16, width=4), tmp_path / "nope.pth")


def test_training_starts_from_the_weights_file(fmnist_dir, tmp_path):
    from mrl.train import load_config, train

    torch.manual_seed(123)
    init = create_backbone("small_resnet", 16, width=4)
    save_file({k: v.contiguous() for k, v in init.state_dict().items()}, str(tmp_path / "init.safetensors"))
    cfg = load_config(None, {"data_root": str(fmnist_dir), "val_size": 200, "embed_dim": 16, "width": 4, "matryoshka_dims": "4,8,16", "epochs": 1, "batch_size": 500, "lr": 1e-6, "weight_decay": 0, "warmup_steps": 1, "progress": False, "weights": str(tmp_path / "init.safetensors")})
    train(cfg, tmp_path / "run")
    from mrl.train.checkpoint import load_model

    model, _ = load_model(tmp_path / "run")
    assert torch.allclose(model.backbone.stem[0].weight, init.stem[0].weight, atol=1e-4)

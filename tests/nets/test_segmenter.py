import pytest
import skimage.data
import torch
import torch.nn.functional as F

from wseg.nets import build_segmenter, offline_lite0_classifier, offline_lite0_state_dict

LITE0 = "tu-tf_efficientnet_lite0"


@pytest.mark.parametrize("arch", ["deeplabv3plus", "unet", "upernet", "pspnet"])
def test_build_segmenter_shapes(arch: str) -> None:
    net = build_segmenter(arch, "resnet18", None, num_classes=5)
    out = net.eval()(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 5, 64, 64)


def test_build_segmenter_passes_kwargs() -> None:
    net = build_segmenter("unet", "resnet18", None, 3, encoder_depth=3, decoder_channels=[8, 8, 8])
    assert net.segmentation_head[0].in_channels == 8


def test_group_norm_decoder_is_the_same_function_in_training_and_evaluation() -> None:
    torch.manual_seed(0)
    net = build_segmenter("unet", "resnet18", None, 2, decoder_norm="group")
    norms = [m for m in net.decoder.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.decoder.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.encoder.modules())
    assert all(m.num_channels % m.num_groups == 0 and m.num_groups <= 8 for m in norms)
    image = torch.randn(2, 3, 64, 64)
    net.train()
    net.encoder.eval()
    with torch.no_grad():
        trained = net(image)
        evaluated = net.eval()(image)
    assert torch.allclose(trained, evaluated, atol=1e-6)
    with pytest.raises(ValueError, match="decoder_norm"):
        build_segmenter("unet", "resnet18", None, 2, decoder_norm="layer")


def test_offline_lite0_classifier_recognises_cat() -> None:
    image = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1).float()[None] / 255
    image = F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        probs = offline_lite0_classifier()((image - 0.5) / 0.5).softmax(1)[0]
    top = probs.topk(3)
    # ImageNet 281-285: tabby, tiger cat, Persian, Siamese, Egyptian cat.
    assert all(281 <= int(i) <= 285 for i in top.indices), top
    assert float(probs[281:286].sum()) > 0.8


def test_offline_lite0_weights_reach_segmenter_encoder() -> None:
    reference = offline_lite0_state_dict()
    net = build_segmenter("deeplabv3plus", LITE0, "offline-lite0", num_classes=3)
    encoder = net.encoder.state_dict()
    assert len(encoder) == 288  # timm's features omit conv_head, bn2 and classifier (8 tensors)
    for key, value in encoder.items():
        assert torch.equal(value, reference[key.removeprefix("model.")]), key


def test_offline_lite0_rejects_other_encoder() -> None:
    with pytest.raises(ValueError, match="tu-tf_efficientnet_lite0"):
        build_segmenter("unet", "resnet18", "offline-lite0", num_classes=3)


@pytest.mark.parametrize("what", ["encoder", "net", "lightning"])
def test_encoder_weights_from_checkpoint(tmp_path, what: str) -> None:
    torch.manual_seed(0)
    source = build_segmenter("unet", "resnet18", None, num_classes=4)
    state = {
        "encoder": source.encoder.state_dict(),
        "net": source.state_dict(),
        "lightning": {"state_dict": {f"net.{k}": v for k, v in source.state_dict().items()}},
    }[what]
    path = tmp_path / "weights.ckpt"
    torch.save(state, path)
    # Another architecture and class count: only the encoder is taken from the file.
    net = build_segmenter("fpn", "resnet18", str(path), num_classes=7)
    for key, value in source.encoder.state_dict().items():
        assert torch.equal(net.encoder.state_dict()[key], value), key


def test_timm_classifier_checkpoint_fills_tu_encoder(tmp_path) -> None:
    path = tmp_path / "lite0.pth"
    torch.save(offline_lite0_state_dict(), path)
    net = build_segmenter("unet", LITE0, str(path), num_classes=2)
    stem = net.encoder.state_dict()["model.conv_stem.weight"]
    assert torch.equal(stem, offline_lite0_state_dict()["conv_stem.weight"])


def test_checkpoint_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_segmenter("unet", "resnet18", str(tmp_path / "missing.pth"), num_classes=2)
    wrong = tmp_path / "other.pth"
    torch.save(build_segmenter("unet", "resnet34", None, num_classes=2).state_dict(), wrong)
    with pytest.raises(ValueError, match="other.pth.*unknown to the module"):
        build_segmenter("unet", "resnet18", str(wrong), num_classes=2)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt.pt: cannot read"):
        build_segmenter("unet", "resnet18", str(corrupt), num_classes=2)

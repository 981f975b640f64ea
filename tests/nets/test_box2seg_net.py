"""Box2Seg's three-branch network on real smp nets: shapes, stride, and the deployed y branch."""

import pytest
import torch

from wseg.nets import build_segmenter
from wseg.nets.box2seg_net import Box2SegNet

ENCODER = "tu-mobilenetv3_small_050"
NUM_CLASSES = 4


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("arch", ["upernet", "unet"])
def test_branches_at_the_output_stride(arch: str) -> None:
    torch.manual_seed(0)
    net = Box2SegNet(NUM_CLASSES, arch=arch, encoder=ENCODER, embedding_dim=8, output_stride=4)
    out = net.eval().branches(torch.randn(2, 3, 64, 96))
    assert out.logits.shape == (2, NUM_CLASSES, 16, 24)
    assert out.attention.shape == (2, NUM_CLASSES - 1, 16, 24)
    assert ((out.attention > 0) & (out.attention < 1)).all()
    assert out.embeddings.shape == (2, 8, 16, 24)
    assert net.branches(torch.randn(2, 3, 64, 96), segmentation=False).logits is None


def test_export_is_the_baseline_segmenter() -> None:
    torch.manual_seed(0)
    net = Box2SegNet(NUM_CLASSES, arch="upernet", encoder=ENCODER).eval()
    baseline = build_segmenter("upernet", ENCODER, None, NUM_CLASSES)
    deployed = net.export()
    assert count(deployed) == count(baseline) < count(net)
    assert deployed.state_dict().keys() == baseline.state_dict().keys()
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        logits = net(image)
        assert torch.equal(logits, deployed(image))
        # The deployed output is the training y branch (stride 4) upsampled 4x (smp: corners).
        stride4 = net.branches(image).logits
        upsampled = torch.nn.functional.interpolate(
            stride4, scale_factor=4, mode="bilinear", align_corners=True
        )
        assert torch.allclose(logits, upsampled, atol=1e-5)


def test_branches_not_built_are_none() -> None:
    net = Box2SegNet(NUM_CLASSES, arch="fpn", encoder=ENCODER, attention=False, embeddings=False)
    out = net.eval().branches(torch.randn(1, 3, 64, 64))
    assert out.attention is None and out.embeddings is None
    assert count(net) == count(net.export())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        Box2SegNet(1, encoder=ENCODER)
    with pytest.raises(ValueError, match="output_stride"):
        Box2SegNet(NUM_CLASSES, encoder=ENCODER, output_stride=0)
    with pytest.raises(ValueError, match="attention_logit_bound"):
        Box2SegNet(NUM_CLASSES, encoder=ENCODER, attention_logit_bound=0.0)


def test_attention_logit_bound_keeps_alpha_off_0_and_1() -> None:
    torch.manual_seed(0)
    net = Box2SegNet(NUM_CLASSES, arch="fpn", encoder=ENCODER, attention_logit_bound=8.0).eval()
    free = Box2SegNet(NUM_CLASSES, arch="fpn", encoder=ENCODER).eval()
    free.load_state_dict(net.state_dict())
    with torch.no_grad():
        net.attention[-1].bias.fill_(-200.0)  # logits far below the bound: sigmoid underflows
        free.attention[-1].bias.fill_(-200.0)
        image = torch.randn(1, 3, 64, 64)
        alpha = net.branches(image).attention
        assert (free.branches(image).attention == 0).all()
    assert torch.allclose(alpha, torch.sigmoid(torch.tensor(-8.0)), rtol=1e-3)

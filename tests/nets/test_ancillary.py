"""The ancillary model's box encoder and the convolutional self-correction head (real smp nets)."""

import pytest
import torch

from wseg.nets.ancillary import AncillarySegmenter, BoxAttention
from wseg.nets.self_correction import ConvSelfCorrection

ENCODER = "tu-mobilenetv3_small_050"
NUM_CLASSES = 4


def box_mask(batch: int, height: int, width: int) -> torch.Tensor:
    mask = torch.zeros(batch, NUM_CLASSES, height, width)
    mask[:, 0] = 1
    mask[:, 2, : height // 2, : width // 2] = 1
    mask[:, 0, : height // 2, : width // 2] = 0
    return mask


@pytest.fixture(scope="module")
def net() -> AncillarySegmenter:
    torch.manual_seed(0)
    return AncillarySegmenter(NUM_CLASSES, ENCODER).eval()


def test_attention_has_the_feature_maps_shapes(net: AncillarySegmenter) -> None:
    image = torch.randn(2, 3, 64, 96)
    features = net.segmenter.encoder(image)
    gated, attentions = net.attend(features, box_mask(2, 64, 96))
    assert net.attended == (2, len(features) - 1)  # DeepLabV3+'s skip and ASPP inputs
    assert len(attentions) == 2
    for index, attention in zip(net.attended, attentions):
        assert attention.shape == features[index].shape
        assert ((attention > 0) & (attention < 1)).all()
        assert torch.equal(gated[index], features[index] * attention)
    untouched = set(range(len(features))) - set(net.attended)
    assert all(gated[index] is features[index] for index in untouched)


def test_box_attention_resizes_by_area() -> None:
    attention = BoxAttention(2, 1)
    with torch.no_grad():
        attention.conv.weight.zero_()
        attention.conv.weight[0, 1, 1, 1] = 1.0  # centre tap of the class-1 channel
        attention.conv.bias.zero_()
    mask = torch.zeros(1, 2, 8, 8)
    mask[0, 1, :4, :2] = 1  # half of the top-left 4x4 cell
    out = attention(mask, (2, 2))
    expected = torch.sigmoid(torch.tensor([[0.5, 0.0], [0.0, 0.0]]))
    assert torch.allclose(out[0, 0], expected)


def test_ancillary_logits_any_size_and_depend_on_boxes(net: AncillarySegmenter) -> None:
    image = torch.randn(2, 3, 50, 70)
    with torch.no_grad():
        logits = net(image, box_mask(2, 50, 70))
        other = net(image, torch.flip(box_mask(2, 50, 70), dims=[-1]))
    assert logits.shape == (2, NUM_CLASSES, 50, 70)
    assert not torch.allclose(logits, other)


def test_ancillary_rejects_a_mismatched_box_mask(net: AncillarySegmenter) -> None:
    with pytest.raises(ValueError, match="box_mask"):
        net(torch.randn(1, 3, 64, 64), box_mask(1, 32, 64))


def test_conv_self_correction_head_shapes() -> None:
    torch.manual_seed(0)
    head = ConvSelfCorrection(NUM_CLASSES, hidden_channels=128)
    first, last = head.layers[0], head.layers[-1]
    assert (first.in_channels, first.out_channels, first.kernel_size) == (8, 128, (3, 3))
    assert (last.in_channels, last.out_channels, last.kernel_size) == (128, 4, (3, 3))
    out = head(torch.randn(2, NUM_CLASSES, 9, 11), torch.randn(2, NUM_CLASSES, 9, 11))
    assert out.shape == (2, NUM_CLASSES, 9, 11)
    assert (out < 0).any()  # logits: no final activation
    with pytest.raises(ValueError, match="logit maps"):
        head(torch.randn(1, NUM_CLASSES, 4, 4), torch.randn(1, NUM_CLASSES, 4, 5))


@pytest.mark.slow
def test_the_papers_xception65_gates_its_stride_4_and_deepest_features() -> None:
    # The paper's encoder, through timm as the YAMLs name it (random weights: no download).
    torch.manual_seed(0)
    net = AncillarySegmenter(NUM_CLASSES, "tu-xception65").eval()
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = net.segmenter.encoder(image)
        _, attentions = net.attend(features, box_mask(1, 64, 64))
        logits = net(image, box_mask(1, 64, 64))
    assert [tuple(a.shape) for a in attentions] == [(1, 256, 16, 16), (1, 2048, 4, 4)]
    assert logits.shape == (1, NUM_CLASSES, 64, 64)

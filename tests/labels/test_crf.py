"""Dense CRF: torch backend vs the pydensecrf reference, clamping, invariants, errors."""

import cv2
import numpy as np
import pydensecrf.utils
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from tiny_data import TINY_COCO

from wseg.labels.crf import DenseCRFParams, dense_crf, unary_from_labels
from wseg.nets.mean_field import PermutohedralLattice, _hash_lattice

PARITY = 0.97


def shapes_image(seed: int, height: int = 48, width: int = 64, num_labels: int = 4):
    """Coloured rectangles and a disc with pixel noise; returns image, noisy probs, true labels."""
    gen = torch.Generator().manual_seed(seed)
    colours = torch.randint(0, 256, (num_labels, 3), generator=gen)
    labels = torch.zeros(height, width, dtype=torch.long)
    for k in range(1, num_labels):
        y0 = int(torch.randint(0, height // 2, (1,), generator=gen))
        x0 = int(torch.randint(0, width // 2, (1,), generator=gen))
        labels[y0 : y0 + height // 3, x0 : x0 + width // 3] = k
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    labels[(ys - height // 2) ** 2 + (xs - width // 4) ** 2 < (height // 6) ** 2] = num_labels - 1
    image = colours[labels].permute(2, 0, 1).float()
    image = (image + 12 * torch.randn(image.shape, generator=gen)).clamp(0, 255).to(torch.uint8)
    logits = 2.0 * torch.nn.functional.one_hot(labels, num_labels).permute(2, 0, 1).float()
    logits = logits + 1.5 * torch.randn(logits.shape, generator=gen)
    return image[None], logits.softmax(0)[None], labels[None]


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.argmax(1) == b.argmax(1)).double().mean().item()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_torch_matches_pydensecrf_on_synthetic_shapes(seed):
    images, probs, labels = shapes_image(seed)
    reference = dense_crf(images, probs, backend="pydensecrf")
    ours = dense_crf(images, probs, backend="torch")
    assert agreement(reference, ours) >= PARITY
    # Same lattice, same mean field: the marginals themselves agree up to float32 rounding.
    assert torch.allclose(reference, ours, atol=1e-3)
    # And the CRF does its job: it repairs most of the unary noise.
    assert (ours.argmax(1) == labels).double().mean() > (probs.argmax(1) == labels).double().mean()


def coco_inputs(split: str, count: int, scale: float, seed: int):
    """Real photos downscaled by `scale`, with noisy probabilities built from their COCO masks."""
    coco = COCO(str(TINY_COCO / "annotations" / f"instances_{split}.json"))
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for image_id in sorted(coco.getImgIds())[:count]:
        info = coco.loadImgs(image_id)[0]
        bgr = cv2.imread(str(TINY_COCO / split / info["file_name"]), cv2.IMREAD_COLOR)
        assert bgr is not None, info["file_name"]
        height, width = bgr.shape[:2]
        semantic = np.zeros((height, width), dtype=np.int64)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False))
        categories = sorted({a["category_id"] for a in anns})
        for ann in sorted(anns, key=lambda a: -a["area"]):  # small instances drawn last, on top
            rle = coco.annToRLE(ann)
            semantic[mask_utils.decode(rle) > 0] = categories.index(ann["category_id"]) + 1
        size = (round(width * scale), round(height * scale))
        rgb = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_AREA)
        semantic = cv2.resize(semantic.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        labels = torch.from_numpy(semantic).long()
        num_labels = len(categories) + 1
        logits = 2.0 * torch.nn.functional.one_hot(labels, num_labels).permute(2, 0, 1).float()
        logits = logits + 1.5 * torch.randn(logits.shape, generator=gen)
        samples.append((torch.from_numpy(rgb).permute(2, 0, 1)[None], logits.softmax(0)[None]))
    return samples


@pytest.mark.skipif(not TINY_COCO.is_dir(), reason=f"tiny_coco not found at {TINY_COCO}")
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_torch_matches_pydensecrf_on_tiny_coco_photos():
    pixels = agreeing = 0
    for images, probs in coco_inputs("val2017", count=4, scale=0.25, seed=0):
        reference = dense_crf(images, probs, backend="pydensecrf")
        ours = dense_crf(images, probs, backend="torch")
        assert agreement(reference, ours) >= PARITY
        pixels += reference[:, 0].numel()
        agreeing += (reference.argmax(1) == ours.argmax(1)).sum().item()
    assert agreeing / pixels >= 0.99


@pytest.mark.parametrize("backend", ["torch", "pydensecrf"])
def test_clamped_pixels_keep_their_label(backend):
    images, probs, _ = shapes_image(3)
    clamp = torch.full(probs[:, 0].shape, 255, dtype=torch.long)
    clamp[:, :, :8] = 0  # a band fixed to background ...
    clamp[:, 20:24, 30:34] = 2  # ... and a block fixed to class 2, whatever the unaries say
    probs = probs.clone()
    probs[:, :, 20:24, 30:34] = torch.tensor([0.97, 0.01, 0.01, 0.01]).view(1, 4, 1, 1)
    out = dense_crf(images, probs, backend=backend, clamp=clamp)
    fixed = clamp != 255
    expected = torch.nn.functional.one_hot(clamp[fixed], 4).float()
    assert torch.equal(out.permute(0, 2, 3, 1)[fixed], expected)


@pytest.mark.parametrize("backend", ["torch", "pydensecrf"])
def test_uniform_image_with_confident_unary_stays(backend):
    images = torch.full((1, 3, 24, 32), 128, dtype=torch.uint8)
    labels = torch.full((1, 24, 32), 2, dtype=torch.long)
    probs = unary_from_labels(labels, num_classes=3, confidence=0.9)
    out = dense_crf(images, probs, backend=backend)
    assert torch.equal(out.argmax(1), labels)
    assert (out[:, 2] > 0.9).all()  # the smoothness messages only reinforce the agreeing label


@pytest.mark.parametrize("backend", ["torch", "pydensecrf"])
def test_single_noisy_pixel_in_flat_region_is_flipped(backend):
    images = torch.full((1, 3, 24, 24), 90, dtype=torch.uint8)
    labels = torch.zeros(1, 24, 24, dtype=torch.long)
    labels[0, 12, 12] = 1
    probs = unary_from_labels(labels, num_classes=2, confidence=0.7)
    assert probs.argmax(1)[0, 12, 12] == 1
    out = dense_crf(images, probs, backend=backend)
    assert (out.argmax(1) == 0).all()


def test_probabilities_sum_to_one_and_keep_device_and_dtype():
    images, probs, _ = shapes_image(4)
    for dtype in (torch.float32, torch.float64):
        out = dense_crf(images, probs.to(dtype))
        assert out.dtype == dtype and out.device == probs.device
        assert out.shape == probs.shape
        assert torch.allclose(out.sum(1), torch.ones((), dtype=dtype), atol=1e-5)
        assert (out >= 0).all()


def test_float64_agrees_with_float32():
    images, probs, _ = shapes_image(5)
    single = dense_crf(images, probs.float())
    double = dense_crf(images, probs.double())
    assert torch.allclose(single.double(), double, atol=1e-4)


def test_batch_equals_per_image_results():
    parts = [shapes_image(seed) for seed in (6, 7, 8)]
    images = torch.cat([p[0] for p in parts])
    probs = torch.cat([p[1] for p in parts])
    batched = dense_crf(images, probs)
    chunked = dense_crf(images, probs, max_batch=2)
    single = torch.cat([dense_crf(p[0], p[1]) for p in parts])
    assert torch.allclose(batched, single, atol=1e-5)
    assert torch.allclose(chunked, single, atol=1e-5)


def test_pydensecrf_process_pool_equals_sequential():
    parts = [shapes_image(seed) for seed in (9, 10)]
    images = torch.cat([p[0] for p in parts])
    probs = torch.cat([p[1] for p in parts])
    sequential = dense_crf(images, probs, backend="pydensecrf")
    pooled = dense_crf(images, probs, backend="pydensecrf", num_workers=2)
    assert torch.equal(sequential, pooled)


def test_zero_iterations_return_the_clipped_unary_distribution():
    images, probs, _ = shapes_image(11)
    probs = probs.clone()
    probs[:, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    out = dense_crf(images, probs, DenseCRFParams(iterations=0))
    clipped = probs.clamp_min(1e-5)
    assert torch.allclose(out, clipped / clipped.sum(1, keepdim=True), atol=1e-6)


def test_unary_from_labels_matches_hand_values_and_pydensecrf():
    labels = torch.tensor([[0, 1], [2, 255]])
    probs = unary_from_labels(labels, num_classes=3, confidence=0.8)
    expected = torch.tensor(
        [[[0.8, 0.1], [0.1, 1 / 3]], [[0.1, 0.8], [0.1, 1 / 3]], [[0.1, 0.1], [0.8, 1 / 3]]]
    )
    assert torch.allclose(probs, expected)
    # pydensecrf's version (labels shifted by one, 0 = unsure) gives the same energies.
    shifted = np.where(labels.numpy() == 255, 0, labels.numpy() + 1)
    theirs = pydensecrf.utils.unary_from_labels(shifted, 3, gt_prob=0.8, zero_unsure=True)
    assert np.allclose(-np.log(probs.numpy().reshape(3, -1)), theirs, atol=1e-6)
    batched = unary_from_labels(labels[None], num_classes=3, confidence=0.8)
    assert torch.equal(batched[0], probs)


def test_lattice_filter_approximates_a_gaussian_and_is_linear():
    gen = torch.Generator().manual_seed(0)
    points = 3 * torch.rand(1, 400, 3, generator=gen)
    values = torch.rand(1, 400, 2, generator=gen)
    lattice = PermutohedralLattice(points)
    out = lattice(values)
    assert torch.allclose(lattice(2 * values), 2 * out, atol=1e-5)
    exact = torch.exp(-0.5 * torch.cdist(points[0], points[0]) ** 2) @ values[0]
    # The lattice is an approximation with its own scale: after normalising the filter of ones,
    # both give similar weighted averages.
    ones = torch.ones(1, 400, 1)
    lat_avg = out / lattice(ones)
    exact_avg = exact / (torch.exp(-0.5 * torch.cdist(points[0], points[0]) ** 2).sum(1, True))
    assert (lat_avg[0] - exact_avg).abs().mean() < 0.02


@pytest.mark.parametrize("scale", [1, 1 << 40])  # 2**40: too wide to pack, compared row-wise
def test_hash_lattice_ids_and_neighbours_match_a_dictionary(scale):
    gen = torch.Generator().manual_seed(0)
    rows = torch.randint(-4, 5, (300, 3), generator=gen)
    shifts = torch.tensor([[1, 0, 0], [-1, 2, 0], [1, 1, -1]])
    ids, neighbours, count = _hash_lattice(rows * scale, shifts * scale)
    distinct = {tuple(r) for r in rows.tolist()}
    assert count == len(distinct)
    key_of = {}
    for row, i in zip(rows.tolist(), ids.tolist()):
        assert key_of.setdefault(i, tuple(row)) == tuple(row)  # one id, one key
    for s, shift in enumerate(shifts.tolist()):
        for sign, direction in ((1, 0), (-1, 1)):
            for i, key in key_of.items():
                target = tuple(k + sign * t for k, t in zip(key, shift))
                found = int(neighbours[s, direction, i])
                assert key_of.get(found) == target if target in distinct else found == count


def test_bad_inputs_raise_clear_errors():
    images, probs, _ = shapes_image(12)
    with pytest.raises(TypeError, match="uint8"):
        dense_crf(images.float(), probs)
    with pytest.raises(ValueError, match="matching images"):
        dense_crf(images, probs[:, :, :-1])
    with pytest.raises(ValueError, match="clamp labels"):
        dense_crf(images, probs, clamp=torch.full(probs[:, 0].shape, 7, dtype=torch.long))
    with pytest.raises(TypeError, match="unknown torch backend options"):
        dense_crf(images, probs, window=5)
    with pytest.raises(ValueError, match="backend"):
        dense_crf(images, probs, backend="cuda")
    with pytest.raises(ValueError, match="bilateral_srgb"):
        DenseCRFParams(bilateral_srgb=0)
    with pytest.raises(ValueError, match="labels must be in"):
        unary_from_labels(torch.tensor([[3]]), num_classes=3, confidence=0.9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    images, probs, _ = shapes_image(13)
    cpu = dense_crf(images, probs)
    gpu = dense_crf(images.cuda(), probs.cuda())
    assert gpu.is_cuda
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-4)
    assert agreement(cpu, gpu.cpu()) >= 0.999

"""Local PAM (random forest per image), averaging, regularisation and the PFA generator."""

from pathlib import Path

import numpy as np
import pytest
import torch

from wseg.data.datasets import make_source
from wseg.data.records import Sample
from wseg.data.scribbles import sample_scribble
from wseg.data.store import PseudoLabelStore
from wseg.data.subset import SubsetSource
from wseg.data.synthetic import generate_synthetic
from wseg.data.transforms import build_eval_transform, transform_sample
from wseg.labels.generate import generate
from wseg.labels.pam import (
    PAPER_CRF,
    ColourPositionFeatures,
    Lite0StemFeatures,
    combine,
    local_pam,
    regularise,
)
from wseg.labels.pam_generators import LocalPAMGenerator, PFAGenerator
from wseg.methods.scribble import ScribblePAM
from wseg.nets.checkpoint import load_network

NUM_CLASSES = 7


def two_region_image(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 24x32 image, left half dark (class 0), right half bright (class 3), with noise."""
    rng = np.random.default_rng(seed)
    image = np.full((24, 32, 3), 40, np.uint8)
    image[:, 16:] = 200
    image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((24, 32), np.uint8)
    mask[:, 16:] = 3
    return image, mask


def scribble_of(mask: np.ndarray, rows: slice = slice(10, 13)) -> np.ndarray:
    scribble = np.full(mask.shape, 255, np.uint8)
    scribble[rows, 4:12] = mask[rows, 4:12]
    scribble[rows, 20:28] = mask[rows, 20:28]
    return scribble


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    return generate_synthetic(
        tmp_path_factory.mktemp("syn"), num_train=4, num_val=1, size=(40, 48), seed=0
    )


def test_local_pam_predicts_only_scribbled_classes_on_the_simplex() -> None:
    image, mask = two_region_image()
    features = ColourPositionFeatures()(image)
    probs = local_pam(features, scribble_of(mask), NUM_CLASSES, num_trees=10, num_selected=None)
    assert probs.shape == (NUM_CLASSES, 24, 32) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    absent = [c for c in range(NUM_CLASSES) if c not in (0, 3)]
    assert not probs[absent].any()
    assert set(np.unique(probs.argmax(0))) <= {0, 3}
    assert (probs.argmax(0) == mask).mean() > 0.95


def test_local_pam_single_class_and_no_scribble() -> None:
    image, mask = two_region_image()
    features = ColourPositionFeatures()(image)
    scribble = np.full(mask.shape, 255, np.uint8)
    uniform = local_pam(features, scribble, NUM_CLASSES)
    np.testing.assert_allclose(uniform, 1.0 / NUM_CLASSES)
    scribble[2, 2:5] = 5
    single = local_pam(features, scribble, NUM_CLASSES)
    assert (single[5] == 1).all() and single.sum() == single[5].sum()


def test_gini_selection_keeps_the_informative_feature() -> None:
    rng = np.random.default_rng(0)
    _, mask = two_region_image()
    noise = rng.normal(size=(24, 32, 5)).astype(np.float32)
    informative = (mask[..., None] == 3).astype(np.float32)
    features = np.concatenate([noise, informative], axis=-1)
    # The scribbles cover a few rows only; the noise features alone cannot tell the halves apart.
    probs = local_pam(features, scribble_of(mask), NUM_CLASSES, num_trees=20, num_selected=1)
    assert (probs.argmax(0) == mask).all()


def test_local_pam_bad_input() -> None:
    features = np.zeros((4, 5, 3), np.float32)
    with pytest.raises(ValueError, match="does not match"):
        local_pam(features, np.full((4, 4), 255, np.uint8), 3)
    scribble = np.full((4, 5), 255, np.uint8)
    scribble[0, 0] = 9
    with pytest.raises(ValueError, match="outside 0..2"):
        local_pam(features, scribble, 3)


def test_lite0_stem_features_are_the_stem_filters_at_stride_one() -> None:
    image, _ = two_region_image()
    features = Lite0StemFeatures()(image)
    assert features.shape == (24, 32, 32 * 2 + 6 + 2) and features.dtype == np.float32
    from wseg.nets.pretrained import offline_lite0_state_dict

    weight = offline_lite0_state_dict()["conv_stem.weight"].numpy()
    patch = (image[5:8, 9:12].astype(np.float32) / 255.0 - 0.5) / 0.5  # 3x3 around (6, 10)
    expected = np.einsum("kcij,ijc->k", weight, patch)
    np.testing.assert_allclose(features[6, 10, :32], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(features[6, 10, 64:67], image[6, 10] / 255.0, atol=1e-6)
    np.testing.assert_allclose(features[23, 31, -2:], [1.0, 1.0])


def test_combine_is_the_weighted_average() -> None:
    p_local = np.array([[[1.0]], [[0.0]], [[0.0]]], np.float32)
    p_global = np.array([[[0.2]], [[0.6]], [[0.2]]], np.float32)
    np.testing.assert_allclose(combine(p_local, p_global)[:, 0, 0], [0.6, 0.3, 0.1], atol=1e-7)
    np.testing.assert_allclose(
        combine(p_local, p_global, local_weight=0.25)[:, 0, 0], [0.4, 0.45, 0.15], atol=1e-7
    )
    np.testing.assert_array_equal(combine(None, p_global), p_global)
    with pytest.raises(ValueError, match="at least one"):
        combine(None, None)
    with pytest.raises(ValueError, match="shape"):
        combine(p_local, p_global[:2])


def label_changes(labels: np.ndarray) -> int:
    return int((np.diff(labels, axis=0) != 0).sum() + (np.diff(labels, axis=1) != 0).sum())


@pytest.mark.parametrize("method", ["none", "potts", "crf"])
def test_regularisation_keeps_valid_distributions(method: str) -> None:
    image, mask = two_region_image()
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), size=(24, 32)).transpose(2, 0, 1).astype(np.float32)
    probs[2] *= 0.1
    probs /= probs.sum(0)
    out = regularise(probs, image, method, potts_max_iter=100)
    assert out.shape == probs.shape and out.dtype == np.float32
    assert (out >= -1e-6).all()
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-4)
    if method == "none":
        np.testing.assert_array_equal(out, probs)
    else:  # a smoother labelling than the noisy argmax: fewer label changes between neighbours
        assert label_changes(out.argmax(0)) < label_changes(probs.argmax(0))


def test_classes_absent_everywhere_stay_zero_and_change_nothing() -> None:
    from wseg.labels.potts import potts_map

    image, mask = two_region_image()
    probs = local_pam(ColourPositionFeatures()(image), scribble_of(mask), 4, num_trees=5)
    assert not probs[[1, 2]].any()
    out = regularise(probs, image, "potts", potts_max_iter=100)
    assert not out[[1, 2]].any()
    pixels = torch.from_numpy(image.transpose(2, 0, 1).copy())[None].float()
    full = potts_map(torch.from_numpy(probs)[None], pixels, lam=10.0, max_iter=100)[0]
    np.testing.assert_array_equal(out.argmax(0), full.argmax(0).numpy())


def test_regularise_bad_input() -> None:
    image, _ = two_region_image()
    with pytest.raises(ValueError, match="differ in size"):
        regularise(np.ones((2, 5, 5), np.float32) / 2, image, "potts")
    with pytest.raises(ValueError, match="none, potts or crf"):
        regularise(np.ones((2, 24, 32), np.float32) / 2, image, "tv")


def test_subset_source_keeps_listed_ids_in_split_order(tiny_root: Path) -> None:
    source = make_source("synthetic", tiny_root, "train")
    subset = SubsetSource(source, [source.ids[3], source.ids[1]])
    assert subset.ids == [source.ids[1], source.ids[3]] and len(subset) == 2
    assert subset[1].id == source.ids[3] and subset.classes == source.classes
    with pytest.raises(ValueError, match="not in the split"):
        SubsetSource(source, ["nope"])


def global_checkpoint(path: Path) -> ScribblePAM:
    torch.manual_seed(0)
    model = ScribblePAM(
        num_classes=NUM_CLASSES,
        encoder="tu-mobilenetv3_small_050",
        encoder_weights=None,
        log_images_every_n_epochs=0,
    ).eval()
    torch.save({"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}, path)
    return model


def test_stores_of_local_global_and_combined_pams(tiny_root: Path, tmp_path: Path) -> None:
    source = make_source("synthetic", tiny_root, "train")
    identity = {"name": "synthetic", "root": str(tiny_root), "split": "train"}
    local = LocalPAMGenerator(features="colour_position", num_trees=5, curated=True)
    assert local.options()["feature_options"] == {"position": True}
    summary = generate(source, local, tmp_path, identity, progress=False)
    store = summary.store
    assert store.kind == "soft" and len(store) == 4 and summary.stats["without_scribble"] == 0
    sample = source[0]
    p_local = store.read(sample.id)
    np.testing.assert_allclose(p_local.sum(0), 1.0, atol=2e-3)  # float16 on disk
    scribbled = set(np.unique(sample_scribble(sample, "synthesize", curated=True))) - {255}
    assert set(np.flatnonzero(p_local.reshape(NUM_CLASSES, -1).any(1))) <= scribbled
    other = LocalPAMGenerator(curated=True, features="colour_position")  # 50 trees: a new store
    assert other.options() != local.options()

    model = global_checkpoint(tmp_path / "global.ckpt")
    checkpoint = str(tmp_path / "global.ckpt")
    combined = PFAGenerator(local_store=str(store.path), global_checkpoint=checkpoint)
    assert combined.potts_lambda == 10.0 and combined.crf == PAPER_CRF
    image = transform_sample(build_eval_transform(), sample, NUM_CLASSES)["image"][None]
    with torch.no_grad():
        p_global = model.predict_probs(image)[0].numpy()
    np.testing.assert_allclose(combined.global_probs(sample, NUM_CLASSES), p_global, atol=1e-5)
    np.testing.assert_allclose(
        combined.probabilities(sample, NUM_CLASSES), 0.5 * p_local + 0.5 * p_global, atol=1e-5
    )
    label, _ = combined(sample, NUM_CLASSES)
    np.testing.assert_array_equal(label, (0.5 * p_local + 0.5 * p_global).argmax(0))
    alone = PFAGenerator(global_checkpoint=checkpoint, regulariser="potts")
    assert alone.potts_lambda == 50.0
    assert isinstance(load_network(tmp_path / "global.ckpt").net, torch.nn.Module)
    with pytest.raises(ValueError, match="the global PAM changed"):
        PFAGenerator(global_checkpoint=checkpoint, global_digest="0" * 64)


def test_pfa_generator_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="local store, a global checkpoint"):
        PFAGenerator()
    with pytest.raises(FileNotFoundError, match="global PAM checkpoint"):
        PFAGenerator(global_checkpoint=str(tmp_path / "missing.ckpt"))
    hard = PseudoLabelStore.create_or_resume(tmp_path, {"generator": "rect"}, kind="hard")
    with pytest.raises(ValueError, match="hard labels"):
        PFAGenerator(local_store=str(hard.path))
    with pytest.raises(ValueError, match="unknown features"):
        LocalPAMGenerator(features="vgg16")


def test_local_pam_generator_reads_the_sample_scribble() -> None:
    image, mask = two_region_image()
    sample = Sample(id="a", image=image, mask=mask, scribble=scribble_of(mask))
    generator = LocalPAMGenerator(scribbles="dataset", features="colour_position", num_trees=5)
    probs, counts = generator(sample, NUM_CLASSES)
    assert counts["scribbled_pixels"] == 48 and (probs.argmax(0) == mask).mean() > 0.95


@pytest.mark.slow
def test_parallel_local_pam_equals_serial(tiny_root: Path, tmp_path: Path) -> None:
    source = make_source("synthetic", tiny_root, "train")
    generator = LocalPAMGenerator(features="colour_position", num_trees=5)
    serial = generate(source, generator, tmp_path / "a", {"n": 1}, workers=1, progress=False)
    parallel = generate(source, generator, tmp_path / "b", {"n": 1}, workers=2, progress=False)
    for image_id in source.ids:
        np.testing.assert_array_equal(serial.store.read(image_id), parallel.store.read(image_id))

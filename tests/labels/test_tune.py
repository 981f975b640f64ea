"""Cross-validation of Bbox-Seg's alpha and CRF parameters (python -m wseg.labels.tune)."""

import shlex
from pathlib import Path

import pytest
import yaml

from wseg.data.datasets import make_source
from wseg.data.synthetic import generate_synthetic
from wseg.labels.generate import generate
from wseg.labels.generators import build_generator
from wseg.labels.quality import evaluate_store
from wseg.labels.tune import candidate_generators, held_out_indices, main, tune_crf
from wseg.options import parse_key_values


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(root, num_train=6, num_val=5, size=(40, 48), seed=5, layouts=["voc"])
    return root


def test_held_out_choice_is_seeded_and_sized(synthetic: Path) -> None:
    source = make_source("synthetic", synthetic, "val")
    chosen = held_out_indices(source, 3, seed=1)
    assert len(chosen) == 3 and chosen == sorted(set(chosen))
    assert held_out_indices(source, 3, seed=1) == chosen
    assert held_out_indices(source, 50) == list(range(5))
    with pytest.raises(ValueError, match="num_images"):
        held_out_indices(source, 0)


def test_grid_covers_every_combination() -> None:
    generators = candidate_generators([0.2, 0.8], [0.6], {"bilateral_srgb": [3.0, 5.0]})
    combos = [(g.alpha, g.crf["bilateral_srgb"]) for g in generators]
    assert combos == [(0.2, 3.0), (0.8, 3.0), (0.2, 5.0), (0.8, 5.0)]
    assert all(g.crf["bilateral_sxy"] == 49.0 for g in generators)  # untouched default
    with pytest.raises(ValueError, match="unknown CRF parameter"):
        candidate_generators([0.2], crf_grid={"sigma": [1.0]})


def test_scores_equal_the_quality_of_the_generated_stores(synthetic: Path, tmp_path) -> None:
    source = make_source("synthetic", synthetic, "val")
    generators = candidate_generators([0.2, 0.8])
    result = tune_crf(source, generators, num_images=5, progress=False)
    assert result.ids == list(source.ids)
    for generator, miou in zip(generators, result.mious):
        identity = {"name": "synthetic", "root": str(synthetic), "split": "val"}
        store = generate(source, generator, tmp_path, identity, progress=False).store
        assert miou == pytest.approx(evaluate_store(store, source, progress=False)["miou"])
    parallel = tune_crf(source, generators, num_images=5, workers=2, progress=False)
    assert parallel.mious == result.mious


def test_command_writes_the_best_candidate(synthetic: Path, tmp_path, capsys) -> None:
    out = tmp_path / "chosen.yaml"
    argv = ["--dataset", "synthetic", "--root", str(synthetic), "--split", "val"]
    argv += ["--num-images", "4", "--alphas", "0.2", "0.6", "--bilateral-srgb", "5", "13"]
    argv += ["--workers", "1", "--out", str(out)]
    result = main(argv)
    chosen = yaml.safe_load(out.read_text())
    assert len(chosen["candidates"]) == 4
    assert chosen["options"] == result.candidates[result.best]
    assert chosen["miou"] == pytest.approx(max(result.mious), abs=1e-4)
    assert chosen["held_out"]["num_images"] == 4
    generator = build_generator(chosen["generator"], **chosen["options"])
    assert generator.options() == chosen["options"]
    words = shlex.split(chosen["generate"])
    flags = [words[i + 1] for i, word in enumerate(words) if word == "-o"]
    assert parse_key_values(flags, "-o") == chosen["options"]  # the printed command reproduces it
    assert "chosen:" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="exists"):
        main(argv)


def test_an_image_without_mask_is_named(synthetic: Path) -> None:
    source = make_source("synthetic", synthetic, "val")
    sample = source[0]
    sample.mask = None

    class NoMask:
        ids = [sample.id]
        num_classes = source.num_classes

        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int):
            return sample

    with pytest.raises(ValueError, match=f"{sample.id}.*no full mask"):
        tune_crf(NoMask(), candidate_generators([0.2]), num_images=1, progress=False)

"""Box2Seg: Eq. 11 on the model's own outputs, the two stages, and the deployed y branch."""

import pytest
import torch
from fake_batches import NUM_CLASSES, TINY, batch_loader, make_batch, quiet_trainer
from lightning.pytorch import Trainer

from wseg.losses.box2seg_losses import (
    affinity_loss,
    attention_box_loss,
    attention_weighted_loss,
    box_loss,
    fill_rate_loss,
    fill_rates,
    floored_attention,
    grabcut_loss,
    one_hot_labels,
)
from wseg.methods import Box2Seg
from wseg.methods.box2seg import resize_labels
from wseg.nets import build_segmenter


def make_model(**kwargs) -> Box2Seg:
    torch.manual_seed(0)
    return Box2Seg(num_classes=NUM_CLASSES, embedding_dim=8, branch_channels=16, **TINY, **kwargs)


def grabcut_batch() -> dict:
    batch = make_batch()
    batch["pseudo"] = batch["mask"].clone()  # a GrabCut-like label: tighter than the box
    batch["pseudo"][:, 0] = 0
    return batch


@pytest.mark.parametrize("attention_reg", ["fill_rate", "bbox"])
def test_main_loss_is_eq_11_on_the_outputs(attention_reg: str) -> None:
    model = make_model(attention_reg=attention_reg, lambda_box=0.5, attention_floor="none").train()
    batch = grabcut_batch()
    torch.manual_seed(1)
    loss = model.compute_loss(batch)
    torch.manual_seed(1)  # same BN batch statistics and the same affinity draw
    out = model.net.branches(batch["image"])
    size = tuple(out.logits.shape[-2:])
    assert size == (16, 16)
    box = one_hot_labels(resize_labels(batch["box_label"], size), NUM_CLASSES)
    labels = resize_labels(batch["pseudo"], size)
    grabcut = one_hot_labels(labels, NUM_CLASSES)
    log_probs = out.logits.log_softmax(1)
    if attention_reg == "fill_rate":
        reg = fill_rate_loss(out.attention, grabcut, box, 0.7)
    else:
        reg = attention_box_loss(out.attention, box)
    expected = (
        0.5 * box_loss(log_probs, box)
        + grabcut_loss(log_probs, grabcut)
        + 10 * attention_weighted_loss(log_probs, out.attention, box)
        + reg
        + affinity_loss(out.embeddings, log_probs.exp(), labels, 256)
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_rows_build_only_the_branches_they_use() -> None:
    box_row = make_model(lambda_box=1.0, lambda_gc=0.0, lambda_aw=0.0, lambda_alpha=0.0,
                         lambda_affinity=0.0)  # fmt: skip
    assert box_row.net.attention is None and box_row.net.embedding is None
    batch = make_batch()
    del batch["pseudo"]  # the Box row reads no GrabCut labels
    torch.manual_seed(1)
    loss = box_row.train().compute_loss(batch)
    torch.manual_seed(1)
    out = box_row.net.branches(batch["image"])
    box = one_hot_labels(resize_labels(batch["box_label"], (16, 16)), NUM_CLASSES)
    assert loss.item() == pytest.approx(box_loss(out.logits.log_softmax(1), box).item(), rel=1e-5)
    aw = make_model(lambda_affinity=0.0)
    assert aw.net.attention is not None and aw.net.embedding is None


def test_deployed_model_is_the_baseline_and_predict_ignores_the_extra_branches() -> None:
    model = make_model().eval()
    baseline = build_segmenter(model.hparams.arch, TINY["encoder"], None, NUM_CLASSES)
    count = sum(p.numel() for p in model.export().parameters())
    assert count == sum(p.numel() for p in baseline.parameters())
    assert count < sum(p.numel() for p in model.net.parameters())
    batch = make_batch(size=(40, 56))
    before = model.predict_step(batch, 0)["pred"]
    with torch.no_grad():
        for branch in (model.net.attention, model.net.embedding):
            for parameter in branch.parameters():
                parameter.add_(torch.randn_like(parameter))
    assert torch.equal(model.predict_step(batch, 0)["pred"], before)


def test_pretrain_trains_the_embeddings_on_grabcut_labels_only() -> None:
    model = make_model(stage="pretrain").train()
    assert model.net.attention is None and model.net.embedding is not None
    batch = grabcut_batch()
    torch.manual_seed(1)
    loss = model.compute_loss(batch)
    torch.manual_seed(1)
    out = model.net.branches(batch["image"], segmentation=False)
    labels = resize_labels(batch["pseudo"], (16, 16))
    onehot = one_hot_labels(labels, NUM_CLASSES)
    assert loss.item() == pytest.approx(affinity_loss(out.embeddings, onehot, labels).item())
    model.zero_grad()
    loss.backward()
    head = model.net.segmenter.segmentation_head
    assert all(p.grad is None and not p.requires_grad for p in head.parameters())
    grouped = {id(p) for group in model.parameter_groups() for p in group["params"]}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert grouped == trainable
    # DDP without find_unused_parameters: every trained parameter receives a gradient.
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert not grouped & {id(p) for p in head.parameters()}
    assert all(p.requires_grad for p in make_model().net.parameters())  # main: all trained
    assert all(p.grad is not None for p in model.net.embedding.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.net.encoder.parameters())


def test_main_stage_starts_from_the_pretrained_embeddings(tmp_path) -> None:
    pretrain = make_model(stage="pretrain")
    trainer = Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      limit_val_batches=0, default_root_dir=tmp_path)  # fmt: skip
    loaders = batch_loader(2)
    for fake in loaders.dataset.batches:
        fake["pseudo"] = fake["mask"].clamp(max=NUM_CLASSES - 1)
    trainer.fit(pretrain, loaders)
    path = tmp_path / "pretrain.ckpt"
    trainer.save_checkpoint(path)
    main = make_model(init_checkpoint=str(path))
    main.setup("fit")
    for name in ("embedding", "segmenter"):
        mine, theirs = (
            getattr(main.net, name).state_dict(),
            getattr(pretrain.net, name).state_dict(),
        )
        assert all(torch.equal(mine[key], theirs[key]) for key in theirs)
    missing = make_model(init_checkpoint=str(tmp_path / "nope.ckpt"))
    with pytest.raises(FileNotFoundError, match="box2seg_pretrain"):
        missing.setup("fit")


def test_grabcut_labels_are_required_and_hard() -> None:
    model = make_model()
    batch = make_batch()
    del batch["pseudo"]
    with pytest.raises(ValueError, match="--generator grabcut"):
        model.compute_loss(batch)
    batch["pseudo"] = torch.rand(2, NUM_CLASSES, 64, 64)
    with pytest.raises(ValueError, match="hard GrabCut labels"):
        model.compute_loss(batch)
    supervised = make_model(label="mask", lambda_affinity=0.0)
    assert torch.isfinite(supervised.compute_loss(batch))  # M from the full mask


@pytest.mark.parametrize(
    "kwargs",
    [{"stage": "both"}, {"label": "tags"}, {"attention_reg": "l1"}, {"lambda_aw": -1.0},
     {"gamma": 1.5}, {"pixels_per_class": 0}, {"attention_floor": "box"}, {"alpha_min": 1.0},
     {"aw_warmup_steps": -1},
     {"lambda_gc": 0.0, "lambda_aw": 0.0, "lambda_alpha": 0.0, "lambda_affinity": 0.0}],
)  # fmt: skip
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        make_model(**kwargs)


def box_attention(model: Box2Seg, batch: dict) -> tuple[float, float]:
    """Mean weight of L_fg over the foreground box pixels, and the mean gamma eta_c there."""
    with torch.no_grad():
        attention = model.net.branches(batch["image"]).attention
        size = tuple(attention.shape[-2:])
        box = one_hot_labels(resize_labels(batch["box_label"], size), NUM_CLASSES)
        grabcut = one_hot_labels(resize_labels(batch["pseudo"], size), NUM_CLASSES)
        inside = box[:, 1:]
        weights = model.attention_weights(attention, grabcut, box)
        target = model.hparams.gamma * fill_rates(grabcut, box)[..., None, None]
    count = inside.sum()
    return float((weights * inside).sum() / count), float((target * inside).sum() / count)


@pytest.mark.parametrize("floor", ["pixel", "mean", "none"])
def test_attention_stays_above_the_fill_rate_target_after_training(tmp_path, floor: str) -> None:
    """Eq. 11's alpha falls to 0 in the boxes within a few steps; the floored one cannot."""
    model = make_model(lambda_affinity=0.0, attention_floor=floor, lr=1e-3, poly_power=0.0)
    loader = batch_loader(2)
    for fake in loader.dataset.batches:
        fake["pseudo"] = fake["mask"].clamp(max=NUM_CLASSES - 1)
    start, target = box_attention(model, loader.dataset.batches[0])
    assert start > 0.5 * target  # both start from the sigmoid's 0.5 or so
    quiet_trainer(tmp_path, max_steps=20, limit_val_batches=0).fit(model, loader)
    alpha, target = box_attention(model, loader.dataset.batches[0])
    if floor != "none":
        assert alpha >= 0.5 * target, (start, alpha, target)
        assert model.trainer.callback_metrics["train/alpha_in_boxes"] >= 0.5 * target
    else:
        assert alpha < 0.5 * target, (start, alpha, target)  # issue 28's collapse


def test_floor_bound_and_warm_up_change_only_the_weights_of_l_fg() -> None:
    batch = grabcut_batch()
    paper = make_model(attention_floor="none", lambda_affinity=0.0).train()
    out = paper.net.branches(batch["image"])
    box = one_hot_labels(resize_labels(batch["box_label"], (16, 16)), NUM_CLASSES)
    grabcut = one_hot_labels(resize_labels(batch["pseudo"], (16, 16)), NUM_CLASSES)
    assert torch.equal(paper.attention_weights(out.attention, grabcut, box), out.attention)
    for floor in ("mean", "pixel"):
        floored = make_model(attention_floor=floor, alpha_min=0.3)
        weights = floored.attention_weights(out.attention, grabcut, box)
        expected = 0.3 + 0.7 * floored_attention(out.attention, grabcut, box, 0.7, floor)
        assert torch.allclose(weights, expected)
    warm = make_model(aw_warmup_steps=4)
    assert warm.aw_weight() == 10.0  # outside a fit: the full weight
    assert make_model().hparams.attention_floor == "pixel"  # the default (issue 28)

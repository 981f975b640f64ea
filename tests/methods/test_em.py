"""EM-family methods (Papandreou et al. 2015): each loss is cross-entropy on its E-step labels."""

import pytest
import torch
import torch.nn.functional as F
from fake_batches import NUM_CLASSES, TINY, batch_loader, make_batch
from lightning.pytorch import Trainer

from wseg.losses.em_esteps import bbox_em_fixed_estep, em_adapt_estep, em_fixed_estep
from wseg.methods import BboxSeg, EMAdapt, EMFixed


def build(cls, **options):
    torch.manual_seed(0)
    return cls(num_classes=NUM_CLASSES, **TINY, **options).eval()


def test_em_fixed_trains_on_its_e_step_with_padding_ignored() -> None:
    model = build(EMFixed, fg_bias=5.0, bg_bias=3.0)
    batch = make_batch()
    batch["box_mask"][:, :, -8:] = 0  # the last rows are padding
    logits = model(batch["image"])
    valid = batch["box_mask"].amax(1) > 0
    target = em_fixed_estep(logits, batch["tags"], 5.0, 3.0, valid=valid)
    assert (target[:, -8:] == 255).all() and (target[:, :-8] != 255).all()
    expected = F.cross_entropy(logits, target, ignore_index=255)
    assert torch.allclose(model.compute_loss(batch), expected)


def test_weak_only_never_reads_the_masks() -> None:
    model = build(EMFixed)
    batch = make_batch()
    loss = model.compute_loss(batch)
    batch["mask"] = torch.randint(0, NUM_CLASSES, batch["mask"].shape)
    batch["strong"][:] = True
    assert torch.equal(model.compute_loss(batch), loss)


@pytest.mark.parametrize(
    ("cls", "options"),
    [(EMFixed, {"weak_label": "boxes"}), (EMAdapt, {}), (BboxSeg, {})],
)
def test_semi_uses_masks_on_strong_images_only(cls, options) -> None:
    model = build(cls, semi=True, **options)
    batch = make_batch()  # image 0 strong, image 1 weak
    logits = model(batch["image"])
    loss = model.compute_loss(batch)
    weak = build(cls, **options).compute_loss(
        {**batch, "image": batch["image"][1:2]}
        | {key: batch[key][1:2] for key in ("mask", "strong", "box_mask", "tags", "pseudo")}
    )
    strong_part = F.cross_entropy(logits[:1], batch["mask"][:1], ignore_index=255, reduction="sum")
    pixels = (batch["mask"][:1] != 255).sum() + 64 * 64
    expected = (strong_part + weak * 64 * 64) / pixels
    assert torch.allclose(loss, expected, rtol=1e-5)


def test_bbox_em_fixed_labels_background_outside_the_boxes() -> None:
    model = build(EMFixed, weak_label="boxes")
    batch = make_batch()
    logits = model(batch["image"])
    target = model.e_step(logits, batch)
    assert torch.equal(target, bbox_em_fixed_estep(logits, batch["box_mask"]))
    outside = batch["box_mask"][:, 0] > 0
    assert (target[outside] == 0).all()


class RecordingEMFixed(EMFixed):
    """EMFixed that keeps, per training step, its target and the plain E-step of the same scores."""

    def e_step(self, logits, batch):
        target = super().e_step(logits, batch)
        plain = bbox_em_fixed_estep(logits, batch["box_mask"])
        self.seen.append((self.global_step, target, plain, batch["box_label"]))
        return target


def test_bbox_em_fixed_warm_up_trains_on_rect_labels_then_on_the_e_step() -> None:
    model = build(RecordingEMFixed, weak_label="boxes", warmup_steps=2, lr=1e-9).train()
    model.seen = []
    head = model.net.segmentation_head[0]
    with torch.no_grad():  # background leads by 10 > b_fg - b_bg: the E-step drops the boxes
        head.weight.zero_()
        head.bias.copy_(torch.tensor([10.0] + [0.0] * (NUM_CLASSES - 1)))
    trainer = Trainer(
        max_steps=4,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(model, train_dataloaders=batch_loader(count=4))
    assert [step for step, *_ in model.seen] == [0, 1, 2, 3]
    for step, target, plain, rect in model.seen:
        assert (rect > 0).any() and (plain == 0).all()  # the two label sets differ
        assert torch.equal(target, rect if step < 2 else plain)


def test_warm_up_is_for_boxes_only() -> None:
    with pytest.raises(ValueError, match="weak_label='boxes'"):
        build(EMFixed, weak_label="tags", warmup_steps=10)
    with pytest.raises(ValueError, match="warmup_steps"):
        build(EMFixed, weak_label="boxes", warmup_steps=-1)


def test_em_adapt_gives_each_tagged_class_its_share() -> None:
    model = build(EMAdapt, fg_portion=0.2, bg_portion=0.4)
    batch = make_batch()
    logits = model(batch["image"])
    target = model.e_step(logits, batch)
    assert torch.equal(target, em_adapt_estep(logits, batch["tags"], 0.2, 0.4))
    for index in range(2):
        counts = torch.bincount(target[index].flatten(), minlength=NUM_CLASSES)
        present = torch.nonzero(batch["tags"][index]).flatten().tolist()
        assert counts[0] >= 0.4 * 64 * 64
        assert all(counts[c] >= 0.2 * 64 * 64 for c in present if c > 0)
        assert all(counts[c] == 0 for c in range(NUM_CLASSES) if c not in present)


def test_bbox_seg_trains_on_pseudo_or_rect_labels() -> None:
    batch = make_batch()
    batch["pseudo"][:, :5] = 255
    for key in ("pseudo", "box_label"):
        model = build(BboxSeg, weak_label=key)
        expected = F.cross_entropy(model(batch["image"]), batch[key], ignore_index=255)
        assert torch.allclose(model.compute_loss(batch), expected)


def test_bbox_seg_explains_a_missing_or_soft_store() -> None:
    model = build(BboxSeg)
    batch = make_batch()
    with pytest.raises(KeyError, match="pseudo_labels"):
        model.compute_loss({k: v for k, v in batch.items() if k != "pseudo"})
    batch["pseudo"] = torch.rand(2, NUM_CLASSES, 64, 64)
    with pytest.raises(ValueError, match="hard labels"):
        model.compute_loss(batch)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="weak_label"):
        build(EMFixed, weak_label="scribbles")
    with pytest.raises(ValueError, match="portions"):
        build(EMAdapt, bg_portion=1.5)

import pytest
import torch
import torch.nn.functional as F
from fake_batches import NUM_CLASSES, TINY, BatchList, batch_loader, make_batch, quiet_trainer
from lightning.pytorch import Trainer

from wseg.methods import BboxRect, Supervised
from wseg.metrics import confusion_matrix, iou_from_confusion, mean_iou
from wseg.nets.predict import predict_probs
from wseg.postprocess import crf_postprocess


def test_supervised_loss_is_cross_entropy_on_mask() -> None:
    torch.manual_seed(0)
    model = Supervised(num_classes=NUM_CLASSES, **TINY).eval()
    batch = make_batch()
    expected = F.cross_entropy(model(batch["image"]), batch["mask"], ignore_index=255)
    assert torch.allclose(model.compute_loss(batch), expected)


def test_supervised_strong_only_ignores_weak_images() -> None:
    torch.manual_seed(0)
    model = Supervised(num_classes=NUM_CLASSES, strong_only=True, **TINY).eval()
    batch = make_batch(batch_size=2)  # image 0 strong, image 1 weak
    logits = model(batch["image"])
    expected = F.cross_entropy(logits[:1], batch["mask"][:1], ignore_index=255)
    assert torch.allclose(model.compute_loss(batch), expected)
    batch["strong"][:] = False
    loss = model.compute_loss(batch)
    assert loss == 0 and loss.requires_grad


def test_bbox_rect_loss_is_cross_entropy_on_box_label() -> None:
    torch.manual_seed(0)
    model = BboxRect(num_classes=NUM_CLASSES, **TINY).eval()
    batch = make_batch()
    expected = F.cross_entropy(model(batch["image"]), batch["box_label"], ignore_index=255)
    assert torch.allclose(model.compute_loss(batch), expected)


def test_class_names_must_match_num_classes() -> None:
    with pytest.raises(ValueError, match="3 class_names for num_classes=4"):
        Supervised(num_classes=4, class_names=["a", "b", "c"], **TINY)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_poly_schedule_and_head_lr(tmp_path, optimizer: str) -> None:
    model = Supervised(
        num_classes=NUM_CLASSES, optimizer=optimizer, lr=0.1, head_lr_mult=10, **TINY
    )
    fit = quiet_trainer(tmp_path, max_steps=4, limit_val_batches=0)
    fit.fit(model, batch_loader(2))
    config = model.configure_optimizers()
    encoder_group, head_group = config["optimizer"].param_groups
    assert {id(p) for p in encoder_group["params"]} == {
        id(p) for p in model.net.encoder.parameters()
    }
    assert (encoder_group["lr"], head_group["lr"]) == pytest.approx((0.1, 1.0))
    scheduler = config["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(4):
        rates.append(scheduler.get_last_lr()[0])
        config["optimizer"].step()
        scheduler.step()
    # lr * (1 - step / 4) ** 0.9 for steps 0..3, then 0 at the end.
    assert rates == pytest.approx([0.1 * (1 - s / 4) ** 0.9 for s in range(4)])
    assert scheduler.get_last_lr()[0] == 0.0


def test_validation_miou_equals_hand_accumulated_matrix(tmp_path) -> None:
    torch.manual_seed(0)
    names = ["background", "a", "b", "c"]
    model = Supervised(num_classes=NUM_CLASSES, class_names=names, tta_flip=True, **TINY)
    val = batch_loader(3, size=(40, 56))
    metrics = quiet_trainer(tmp_path).validate(model, val, verbose=False)[0]
    model.eval()
    matrix = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long)
    with torch.no_grad():
        for batch in val:
            pred = predict_probs(model.net, batch["image"], flip=True).argmax(1)
            matrix += confusion_matrix(pred, batch["mask"], NUM_CLASSES)
    assert metrics["val/miou"] == pytest.approx(mean_iou(matrix))
    for name, iou in zip(names, iou_from_confusion(matrix).tolist()):
        assert metrics[f"val/iou/{name}"] == pytest.approx(iou, nan_ok=True)


def test_test_metrics_use_test_prefix(tmp_path) -> None:
    model = BboxRect(num_classes=NUM_CLASSES, tta_scales=[0.75, 1.0], **TINY)
    metrics = quiet_trainer(tmp_path).test(model, batch_loader(1), verbose=False)[0]
    assert {"test/miou", "test/pixel_acc", "test/iou/class_3"} <= set(metrics)


def test_checkpoint_reloads_without_the_initial_encoder_weights(tmp_path) -> None:
    weights = tmp_path / "encoder.pth"
    donor = Supervised(num_classes=3, encoder="tu-mobilenetv3_small_050")
    torch.save(donor.net.encoder.state_dict(), weights)
    model = Supervised(
        num_classes=3, encoder="tu-mobilenetv3_small_050", encoder_weights=str(weights)
    )
    trainer = Trainer(logger=False, enable_checkpointing=False, accelerator="cpu")
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    weights.unlink()  # the initial weights are gone; the checkpoint alone must suffice
    restored = Supervised.load_from_checkpoint(tmp_path / "model.ckpt")
    assert restored.hparams.encoder_weights is None
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, restored.state_dict()[name]), name


def test_crf_postprocessing_is_scored_beside_the_plain_prediction(tmp_path) -> None:
    torch.manual_seed(0)
    model = Supervised(num_classes=NUM_CLASSES, crf_postprocess=True, **TINY)
    batches = [make_batch(seed=seed, size=(40, 56)) for seed in range(2)]
    for batch in batches:  # the second image is padding beyond 30 x 40
        batch["size"] = torch.tensor([[40, 56], [30, 40]])
    loader = torch.utils.data.DataLoader(BatchList(batches), batch_size=None)
    metrics = quiet_trainer(tmp_path).validate(model, loader, verbose=False)[0]
    model.eval()
    plain = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long)
    refined = torch.zeros_like(plain)
    with torch.no_grad():
        for batch in batches:
            probs = predict_probs(model.net, batch["image"])
            valid = torch.zeros(2, 40, 56, dtype=torch.bool)
            valid[0], valid[1, :30, :40] = True, True
            crf = crf_postprocess(batch["image"], probs, valid=valid)
            plain += confusion_matrix(probs.argmax(1), batch["mask"], NUM_CLASSES)
            refined += confusion_matrix(crf.argmax(1), batch["mask"], NUM_CLASSES)
    assert metrics["val/miou"] == pytest.approx(mean_iou(plain))
    assert metrics["val/miou_crf"] == pytest.approx(mean_iou(refined))
    assert not torch.equal(plain, refined)  # the CRF changed some labels

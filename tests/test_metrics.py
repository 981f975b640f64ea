import math

import pytest
import torch

from wseg.metrics import (
    ConfusionMatrix,
    confusion_matrix,
    gap_reduction,
    iou_from_confusion,
    mean_iou,
    pixel_accuracy,
)


def test_confusion_matrix_counts_by_hand() -> None:
    target = torch.tensor([[0, 0, 1], [1, 2, 255]])
    pred = torch.tensor([[0, 1, 1], [1, 0, 2]])
    expected = torch.tensor([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    assert torch.equal(confusion_matrix(pred, target, 3), expected)


def test_iou_and_mean_by_hand() -> None:
    confusion = torch.tensor([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    # class 0: TP 1, FP 1 (row 2), FN 1 -> 1/3; class 1: TP 2, FP 1, FN 0 -> 2/3; class 2: 0/1.
    iou = iou_from_confusion(confusion)
    assert torch.allclose(iou, torch.tensor([1 / 3, 2 / 3, 0.0], dtype=torch.float64))
    assert mean_iou(confusion) == pytest.approx(1 / 3)
    assert pixel_accuracy(confusion) == pytest.approx(3 / 5)


def test_absent_class_is_nan_and_left_out_of_the_mean() -> None:
    confusion = torch.tensor([[3, 0, 0], [1, 1, 0], [0, 0, 0]])
    iou = iou_from_confusion(confusion)
    assert math.isnan(iou[2])
    assert mean_iou(confusion) == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert math.isnan(mean_iou(torch.zeros(2, 2, dtype=torch.long)))


def test_confusion_matrix_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(2, 3), torch.zeros(3, 2), 2)
    with pytest.raises(ValueError, match="target holds class indices outside 0..1"):
        confusion_matrix(torch.zeros(4), torch.tensor([0, 1, 2, 255]), 2)
    with pytest.raises(ValueError, match="pred holds"):
        confusion_matrix(torch.tensor([0, 5]), torch.tensor([0, 1]), 2)


def test_metric_accumulates_over_batches() -> None:
    metric = ConfusionMatrix(3)
    metric.update(torch.tensor([[0, 1]]), torch.tensor([[0, 0]]))
    metric.update(torch.tensor([[2, 2]]), torch.tensor([[2, 255]]))
    assert torch.equal(metric.compute(), torch.tensor([[1, 1, 0], [0, 0, 0], [0, 0, 1]]))
    metric.reset()
    assert metric.confusion.sum() == 0


def test_gap_reduction() -> None:
    assert gap_reduction(method=70.0, weak=60.0, full=80.0) == pytest.approx(0.5)
    assert gap_reduction(method=60.0, weak=60.0, full=80.0) == 0.0
    with pytest.raises(ValueError, match="gap is empty"):
        gap_reduction(1.0, 2.0, 2.0)


def _ddp_worker(rank: int, port: int, pred: torch.Tensor, target: torch.Tensor, out) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    metric = ConfusionMatrix(3)
    metric.update(pred[rank::2], target[rank::2])  # each process sees half of the images
    out[rank] = metric.compute()
    dist.destroy_process_group()


def test_confusion_matrix_is_summed_over_ddp_processes() -> None:
    import socket

    import torch.multiprocessing as mp

    generator = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 3, (4, 8, 8), generator=generator)
    target = torch.randint(0, 3, (4, 8, 8), generator=generator)
    target[:, 0] = 255
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(port, pred, target, out), nprocs=2, join=True)
    expected = confusion_matrix(pred, target, 3)
    assert torch.equal(out[0], expected) and torch.equal(out[1], expected)

"""GPU readiness check (issue 29): every GPU path of wseg in one bounded run, one table of ratios.

    python -m benchmarks.gpu_check                    # on a CUDA machine (make gpu-check); ~5 min
    python -m benchmarks.gpu_check --device cpu --tiny   # the same plumbing at toy sizes (tests)

Checks, in order: the torch dense CRF on CUDA against pydensecrf (one core) and torch on CPU
(375x500, 21 labels, 10 iterations, batches 1/8/16, synchronised timing after a warm-up, label
agreement, peak memory); a short fit of the demo Supervised YAML through ``python -m wseg fit``
in ``32`` and ``16-mixed`` precision with the same seed (finite losses, val mIoU within noise)
and the same fit with ``strategy: ddp`` on every visible GPU; ``wseg.load(ckpt, device)
.segment`` against the CPU result and ``python -m wseg segment --device``; DeepLabV3+ ResNet-101
training throughput at 321 px, batch 8, mixed precision, against the CPU's (fp32); Box2Seg's
affinity-loss peak memory at 512 px, batch 8; Box2Tag class-network steps/s at 256-px crops.
Everything is generated on the spot (synthetic data, random encoders or the offline Lite0
weights); nothing is downloaded. The table goes to stdout and ``--out``/results.md; the exit
status is 1 if a check failed. Without CUDA (and no ``--device cpu``) it says so and exits 0.
``--tiny`` shrinks every size, so its timings mean nothing and the speed goals are not judged.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
DEMO_YAML = REPO / "wseg" / "experiments" / "demo" / "supervised.yaml"
DATA_YAML = REPO / "wseg" / "experiments" / "_shared" / "data_synthetic.yaml"
CRF_SPEEDUP_GOAL = 50.0
CRF_AGREEMENT_GOAL = 97.0
TIME_GOAL_S = 480  # the bound on one GPU
MIOU_NOISE = 5.0  # points of val mIoU between the 32 and 16-mixed fits still called noise
SEGMENT_PIXELS = 0.001  # share of pixels the device's labels may differ from the CPU's by
VOC_YAML = REPO / "wseg" / "experiments" / "supervised_voc.yaml"


@dataclass(frozen=True)
class Sizes:
    """Every size the check runs at; `FULL` is the issue's, `TINY` the CPU test's."""

    crf_hw: tuple[int, int] = (375, 500)
    crf_labels: int = 21
    crf_iterations: int = 10
    crf_batches: tuple[int, ...] = (1, 8, 16)
    crf_reference_images: int = 2
    repeats: int = 3
    synthetic: dict[str, Any] = field(
        default_factory=lambda: {
            "synthetic_num_train": 200,
            "synthetic_num_val": 50,
            "synthetic_size": [128, 160],
            "crop_size": 128,
            "batch_size": 8,
        }
    )
    fit_epochs: int = 4
    deeplab_encoder: str = "resnet101"
    deeplab_px: int = 321
    deeplab_batch: int = 8
    steps: int = 10
    cpu_steps: int = 2
    affinity_px: int = 512
    affinity_batch: int = 8
    box2tag_encoder: str = "resnext50_32x4d"
    box2tag_px: int = 256
    box2tag_batch: int = 16


FULL = Sizes()
TINY = replace(
    FULL,
    crf_hw=(30, 40),
    crf_labels=5,
    crf_batches=(1, 2),
    crf_reference_images=1,
    repeats=1,
    synthetic={
        "synthetic_num_train": 8,
        "synthetic_num_val": 4,
        "synthetic_size": [48, 48],
        "crop_size": 32,
        "batch_size": 4,
    },
    fit_epochs=1,
    deeplab_encoder="tu-mobilenetv3_small_050",
    deeplab_px=40,
    deeplab_batch=2,
    steps=1,
    cpu_steps=1,
    affinity_px=64,
    affinity_batch=2,
    box2tag_encoder="tu-mobilenetv3_small_050",
    box2tag_px=32,
    box2tag_batch=4,
)


@dataclass
class Row:
    """One line of the table: ``ok`` None means measured only (no goal, or not judged here)."""

    section: str
    check: str
    value: str
    goal: str = ""
    ok: bool | None = None


@dataclass
class Check:
    """The run's settings and the rows measured so far."""

    device: torch.device
    sizes: Sizes
    work: Path
    tiny: bool
    rows: list[Row] = field(default_factory=list)
    checkpoint: Path | None = None

    def add(self, section: str, check: str, value: str, goal: str = "", ok: bool | None = None):
        """Record a row; a goal is judged only at the issue's sizes (not with ``--tiny``)."""
        self.rows.append(Row(section, check, value, goal, ok))

    def judge(self, passed: bool) -> bool | None:
        """A speed or memory goal's verdict: None under ``--tiny`` (toy sizes prove nothing)."""
        return None if self.tiny else passed

    @property
    def cuda(self) -> bool:
        """Whether the checked device is a GPU."""
        return self.device.type == "cuda"


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA) so that a timer reads the real time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> tuple[float, Any]:
    """Median seconds of ``repeats`` synchronised calls after one warm-up call, and the output."""
    out = fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def reset_peak(device: torch.device) -> None:
    """Start a peak-memory measurement (CUDA only)."""
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> str:
    """Peak allocated memory since `reset_peak` in MiB ("-" off CUDA, where torch cannot say)."""
    if device.type != "cuda":
        return "-"
    return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"


# ---- dense CRF ---------------------------------------------------------------------------------


def crf_inputs(sizes: Sizes, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocky random images (uint8) and noisy softmaxes of colour-cluster labels, as crf_speed."""
    gen = torch.Generator().manual_seed(seed)
    height, width = sizes.crf_hw
    n = sizes.crf_reference_images
    blocks = torch.randint(0, 256, (n, 3, max(height // 25, 2), max(width // 25, 2)), generator=gen)
    images = torch.nn.functional.interpolate(blocks.float(), (height, width)).byte()
    quantised = (images.long() * 3 // 256).sum(1) % sizes.crf_labels
    logits = 2.0 * torch.nn.functional.one_hot(quantised, sizes.crf_labels).permute(0, 3, 1, 2)
    logits = logits.float() + 1.5 * torch.randn(logits.shape, generator=gen)
    return images, logits.softmax(1)


def check_crf(check: Check) -> None:
    """Torch dense CRF on the device vs pydensecrf on one core and torch on the CPU."""
    from wseg.labels.crf import DenseCRFParams, dense_crf

    sizes, device, cpu = check.sizes, check.device, torch.device("cpu")
    params = DenseCRFParams(iterations=sizes.crf_iterations)
    images, probs = crf_inputs(sizes)
    n = len(images)
    section = f"dense CRF {sizes.crf_hw[0]}x{sizes.crf_hw[1]}, {sizes.crf_labels} labels"
    start = time.perf_counter()
    reference = dense_crf(images, probs, params, backend="pydensecrf").argmax(1)
    base = (time.perf_counter() - start) / n
    check.add(section, "pydensecrf, one core", f"{base:.3f} s/image")

    def agreement(out: torch.Tensor) -> float:
        return 100 * (out[:n].argmax(1).cpu() == reference).double().mean().item()

    seconds, out = timed(lambda: dense_crf(images[:1], probs[:1], params), cpu, 1)
    check.add(
        section,
        f"torch CPU ({torch.get_num_threads()} threads), batch 1",
        f"{seconds:.3f} s/image, {base / seconds:.1f}x pydensecrf",
    )
    cpu_seconds = seconds
    best = 0.0
    for batch in sizes.crf_batches:
        reps = -(-batch // n)
        batch_images = images.repeat(reps, 1, 1, 1)[:batch].to(device)
        batch_probs = probs.repeat(reps, 1, 1, 1)[:batch].to(device)
        reset_peak(device)
        seconds, out = timed(
            lambda i=batch_images, p=batch_probs: dense_crf(i, p, params), device, sizes.repeats
        )
        per_image = seconds / batch
        best = max(best, base / per_image)
        agree = agreement(out)
        check.add(
            section,
            f"torch {device.type}, batch {batch}",
            f"{per_image:.4f} s/image, {base / per_image:.1f}x pydensecrf, "
            f"{cpu_seconds / per_image:.1f}x torch CPU, peak {peak_mib(device)}",
        )
        check.add(
            section,
            f"labels agree with pydensecrf, batch {batch}",
            f"{agree:.2f}%",
            f">= {CRF_AGREEMENT_GOAL:.0f}%",
            agree >= CRF_AGREEMENT_GOAL,
        )
    check.add(
        section,
        f"best speed-up over pydensecrf one core ({device.type})",
        f"{best:.1f}x",
        f">= {CRF_SPEEDUP_GOAL:.0f}x",
        check.judge(check.cuda and best >= CRF_SPEEDUP_GOAL),
    )


# ---- fits through python -m wseg fit -----------------------------------------------------------


def fit_config(check: Check, name: str, precision: str, strategy: str, devices: int) -> Path:
    """The demo Supervised YAML with the check's data, device, precision and a CSV logger."""
    import yaml

    config = yaml.safe_load(DEMO_YAML.read_text())
    config["model"]["init_args"]["log_images_every_n_epochs"] = 0
    data = yaml.safe_load(DATA_YAML.read_text())
    data["init_args"].update(check.sizes.synthetic)
    data["init_args"]["root"] = str(check.work / "synthetic")
    data["init_args"]["num_workers"] = 4 if check.cuda else 0
    config["data"] = data
    config["trainer"] = {
        "accelerator": check.device.type,
        "devices": devices,
        "strategy": strategy,
        "precision": precision,
        "max_epochs": check.sizes.fit_epochs,
        "log_every_n_steps": 1,
        "enable_progress_bar": False,
        "default_root_dir": str(check.work / name),
        "logger": {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(check.work / name), "name": "csv"},
        },
    }
    path = check.work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_fit(check: Check, name: str, precision: str, strategy: str, devices: int) -> dict:
    """``python -m wseg fit`` on `fit_config`; its exit status, training losses and val mIoU."""
    config = fit_config(check, name, precision, strategy, devices)
    log = check.work / f"{name}.log"
    start = time.perf_counter()
    with log.open("w") as stream:
        code = subprocess.call(
            [sys.executable, "-m", "wseg", "fit", "--config", str(config), "--resume", "false"],
            cwd=REPO,
            stdout=stream,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    seconds = time.perf_counter() - start
    losses, miou = [], math.nan
    for metrics in sorted((check.work / name).rglob("metrics.csv")):
        with metrics.open() as stream:
            for record in csv.DictReader(stream):
                if record.get("train/loss"):
                    losses.append(float(record["train/loss"]))
                if record.get("val/miou"):
                    miou = 100 * float(record["val/miou"])
    checkpoints = sorted((check.work / name).rglob("*.ckpt"), key=os.path.getmtime)
    if code:
        tail = log.read_text().strip().splitlines()[-3:]
        raise RuntimeError(f"{name} exited {code} (log {log}): " + " | ".join(tail))
    return {
        "seconds": seconds,
        "losses": losses,
        "miou": miou,
        "checkpoint": checkpoints[-1] if checkpoints else None,
    }


def fit_row(
    check: Check, label: str, name: str, precision: str, strategy: str, devices: int
) -> dict | None:
    """One fit's row (a failed fit is a FAIL row, not the end of the section); its result."""
    section = "fit: demo Supervised, python -m wseg fit"
    try:
        result = run_fit(check, name, precision, strategy, devices)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        check.add(section, label, str(error)[-300:], "finishes, finite", False)
        return None
    losses = result["losses"]
    check.add(
        section,
        f"{label}: {len(losses)} steps, losses finite",
        f"{result['seconds']:.0f} s, last loss {(losses or [math.nan])[-1]:.3f}, "
        f"val mIoU {result['miou']:.1f}",
        "finishes, finite",
        bool(losses) and all(map(math.isfinite, losses)),
    )
    return result


def check_fits(check: Check) -> None:
    """The demo fit in 32 and mixed precision (same seed), then as DDP on every visible GPU."""
    mixed = "16-mixed" if check.cuda else "bf16-mixed"  # Lightning has no 16-mixed on CPU
    full = fit_row(check, "precision 32", "fit_32", "32", "auto", 1)
    half = fit_row(check, f"precision {mixed}", "fit_mixed", mixed, "auto", 1)
    if full is not None:
        check.checkpoint = full["checkpoint"]
    if full is not None and half is not None:
        gap = abs(full["miou"] - half["miou"])
        check.add(
            "fit: demo Supervised, python -m wseg fit",
            f"val mIoU, 32 vs {mixed}",
            f"{full['miou']:.1f} vs {half['miou']:.1f} (difference {gap:.1f})",
            f"difference <= {MIOU_NOISE:.0f} points",
            check.judge(gap <= MIOU_NOISE),
        )
    devices = torch.cuda.device_count() if check.cuda else 2
    label = f"strategy ddp, {devices} {check.device.type} device(s), {mixed}"
    fit_row(check, label, "fit_ddp", mixed, "ddp", devices)


# ---- wseg.load(...).segment and python -m wseg segment -----------------------------------------


def check_segment(check: Check) -> None:
    """``wseg.load(ckpt, device).segment`` against the CPU's labels; the segment command's files."""
    import numpy as np
    from PIL import Image

    import wseg

    section = "segment"
    if check.checkpoint is None:
        raise RuntimeError("the 32-precision fit left no checkpoint to segment with")
    images = sorted((check.work / "synthetic").rglob("JPEGImages/*"))[:2]
    folder = check.work / "segment_in"
    folder.mkdir()
    for path in images:
        shutil.copy(path, folder / path.name)
    on_cpu = wseg.load(check.checkpoint, device="cpu")
    on_device = wseg.load(check.checkpoint, device=str(check.device))
    labels = {}
    for path in sorted(folder.iterdir()):
        expected, got = on_cpu.segment(path), on_device.segment(path)
        labels[path.stem] = got
        allowed = max(5, int(SEGMENT_PIXELS * expected.size))
        differ = int((expected != got).sum())
        check.add(
            section,
            f"wseg.load(device={check.device.type!r}).segment({path.name}) vs CPU",
            f"{differ} of {expected.size} pixels differ",
            f"<= {allowed}",
            differ <= allowed,
        )
    out = check.work / "segment_out"
    done = subprocess.run(
        [sys.executable, "-m", "wseg", "segment", str(check.checkpoint), str(folder)]
        + ["--out", str(out), "--device", str(check.device)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    written = sorted(out.glob("*.png")) if done.returncode == 0 else []
    overlays = sorted((out / "overlays").glob("*.png")) if done.returncode == 0 else []
    same = all(
        np.array_equal(np.array(Image.open(path)), labels[path.stem])
        for path in written
        if path.stem in labels
    )
    check.add(
        section,
        f"python -m wseg segment --device {check.device.type}",
        f"exit {done.returncode}, {len(written)} labels + {len(overlays)} overlays for "
        f"{len(labels)} images, labels as wseg.load's: {same}",
        "files written",
        done.returncode == 0 and len(written) == len(overlays) == len(labels) and same,
    )


# ---- training throughput -----------------------------------------------------------------------


def train_rate(
    model: torch.nn.Module,
    loss_fn: Callable[[], torch.Tensor],
    device: torch.device,
    steps: int,
    mixed: bool,
) -> tuple[float, float]:
    """Optimiser steps per second (after warm-up steps: 2 on CUDA, 1 on CPU) and the last loss.

    Mixed precision is float16 autocast with a gradient scaler on CUDA, as Lightning's
    ``16-mixed``; the CPU runs float32 (the CPU YAMLs' precision).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    use_amp = mixed and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            loss = loss_fn()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach()

    for _ in range(2 if device.type == "cuda" else 1):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync(device)
    return steps / (time.perf_counter() - start), float(loss)


def check_deeplab(check: Check) -> None:
    """DeepLabV3+ training images/s on the device (mixed) and on the CPU (fp32).

    Each is also put as the time of the VOC schedule of ``supervised_voc.yaml`` at that rate.
    """
    import yaml

    from wseg.methods import Supervised

    sizes = check.sizes
    section = (
        f"DeepLabV3+ {sizes.deeplab_encoder}, {sizes.deeplab_px} px, batch {sizes.deeplab_batch}"
    )
    config = yaml.safe_load(VOC_YAML.read_text())
    data = yaml.safe_load((VOC_YAML.parent / config["data"]).read_text())
    steps_voc, batch_voc = config["trainer"]["max_steps"], data["init_args"]["batch_size"]
    rates = {}
    for device, steps in ((check.device, sizes.steps), (torch.device("cpu"), sizes.cpu_steps)):
        torch.manual_seed(0)
        model = Supervised(
            num_classes=21,
            arch="deeplabv3plus",
            encoder=sizes.deeplab_encoder,
            encoder_weights=None,
            log_images_every_n_epochs=0,
        ).to(device)
        model.train()
        side, batch = sizes.deeplab_px, sizes.deeplab_batch
        data = {
            "image": torch.randn(batch, 3, side, side, device=device),
            "mask": torch.randint(0, 21, (batch, side, side), device=device),
        }
        reset_peak(device)
        rate, loss = train_rate(model, lambda m=model, d=data: m.compute_loss(d), device, steps,
                                mixed=True)  # fmt: skip
        rates[device.type] = rate * batch
        mode = "16-mixed" if device.type == "cuda" else "fp32"
        check.add(
            section,
            f"training on {device.type} ({mode})",
            f"{rate * batch:.2f} images/s, loss {loss:.3f}, peak {peak_mib(device)}; "
            f"{VOC_YAML.name} ({steps_voc} steps of {batch_voc}) would take "
            f"{steps_voc * batch_voc / (rate * batch) / 3600:.1f} h",
            "finite loss",
            math.isfinite(loss),
        )
        if not check.cuda:
            break
    if check.cuda:
        check.add(
            section,
            "GPU / CPU throughput",
            f"{rates['cuda'] / rates['cpu']:.1f}x ({torch.get_num_threads()} CPU threads)",
        )


def check_affinity(check: Check) -> None:
    """Peak memory of Box2Seg's sampled affinity loss, forward and backward."""
    from wseg.losses.box2seg_losses import affinity_loss

    sizes, device = check.sizes, check.device
    stride, dim, classes, present, per_class = 4, 32, 21, 4, 256
    side = sizes.affinity_px // stride
    m = side * side
    section = f"Box2Seg affinity loss, {sizes.affinity_px} px, batch {sizes.affinity_batch}"
    generator = torch.Generator(device=device).manual_seed(0)
    shape = (sizes.affinity_batch, dim, side, side)
    embeddings = torch.randn(shape, device=device, requires_grad=True)
    logits = torch.randn(sizes.affinity_batch, classes, side, side, device=device)
    logits.requires_grad_(True)
    labels = torch.randint(0, present, (sizes.affinity_batch, side, side), device=device,
                           generator=generator)  # fmt: skip
    reset_peak(device)
    base = torch.cuda.memory_allocated(device) if check.cuda else 0
    start = time.perf_counter()
    loss = affinity_loss(embeddings, logits.softmax(1), labels, per_class, generator=generator)
    loss.backward()
    sync(device)
    seconds = time.perf_counter() - start
    naive = 2 * sizes.affinity_batch * m * m * 4
    if check.cuda:
        peak = torch.cuda.max_memory_allocated(device) - base
        value = f"{peak / 2**20:.0f} MiB above the inputs ({naive / max(peak, 1):.0f}x below naive)"
        ok = math.isfinite(loss.item()) and peak * 10 < naive
    else:
        value, ok = "- (no peak-memory counter off CUDA)", math.isfinite(loss.item())
    check.add(
        section,
        f"forward + backward on {device.type} ({seconds:.2f} s)",
        value,
        f"finite, < 1/10 of naive m x m ({naive / 2**30:.1f} GiB)",
        ok,
    )


def check_box2tag(check: Check) -> None:
    """Box2Tag single-class network (U-Net, frozen encoder) steps/s on real box-crop batches."""
    from wseg.data.box_crops import BoxCropDataModule
    from wseg.methods.box2tag import Box2TagSingleClass

    sizes = check.sizes
    data = {k: v for k, v in sizes.synthetic.items() if k.startswith("synthetic_")}
    datamodule = BoxCropDataModule(
        target_class="bird",
        root=str(check.work / "synthetic"),
        crop_size=sizes.box2tag_px,
        batch_size=sizes.box2tag_batch,
        num_workers=0,
        progress=False,
        **data,
    )
    datamodule.prepare_data()  # the synthetic set, unless the fits made it already
    datamodule.setup("fit")
    crops = next(iter(datamodule.train_dataloader()))
    count = len(crops["image"])
    section = f"Box2Tag class network, U-Net {sizes.box2tag_encoder}, {sizes.box2tag_px}-px crops"
    rates = {}
    for device, steps in ((check.device, sizes.steps), (torch.device("cpu"), sizes.cpu_steps)):
        torch.manual_seed(0)
        model = Box2TagSingleClass(
            num_classes=2,
            arch="unet",
            encoder=sizes.box2tag_encoder,
            encoder_weights=None,
            freeze_encoder=True,
            log_images_every_n_epochs=0,
        ).to(device)
        model.train()
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in crops.items()}
        reset_peak(device)
        rate, loss = train_rate(model, lambda m=model, b=batch: m.loss_terms(b)["loss"], device,
                                steps, mixed=True)  # fmt: skip
        rates[device.type] = rate
        mode = "16-mixed" if device.type == "cuda" else "fp32"
        check.add(
            section,
            f"training on {device.type} ({mode}), batch {count}",
            f"{rate:.2f} steps/s, loss {loss:.3f}, peak {peak_mib(device)}",
            "finite loss",
            math.isfinite(loss),
        )
        if not check.cuda:
            break
    if check.cuda:
        check.add(section, "GPU / CPU steps/s", f"{rates['cuda'] / rates['cpu']:.1f}x")


CHECKS: tuple[tuple[str, Callable[[Check], None]], ...] = (
    ("crf", check_crf),
    ("fits", check_fits),
    ("segment", check_segment),
    ("deeplab", check_deeplab),
    ("affinity", check_affinity),
    ("box2tag", check_box2tag),
)


def render(check: Check, header: list[str]) -> str:
    """The markdown table and one PASS/FAIL line per judged row."""
    lines = [*header, "", "| section | check | measured | goal | result |", "|---|---|---|---|---|"]
    verdict = {True: "pass", False: "FAIL", None: "-"}
    for row in check.rows:
        cells = (row.section, row.check, row.value, row.goal, verdict[row.ok])
        # an error message may hold newlines or pipes, which would break the markdown table
        cells = tuple(" ".join(cell.replace("|", "/").split()) for cell in cells)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for row in check.rows:
        if row.ok is not None:
            lines.append(f"{'PASS' if row.ok else 'FAIL'}: {row.section}: {row.check}")
    failed = sum(row.ok is False for row in check.rows)
    judged = sum(row.ok is not None for row in check.rows)
    lines.append(f"{judged - failed} of {judged} judged checks passed")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run every check (or the named ones), print the table, write it; 1 if a check failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="torch device to check (default: cuda)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes (CPU plumbing test)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "gpu_check")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[name for name, _ in CHECKS],
        help="run only these checks (segment needs fits)",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine; nothing checked (--device cpu --tiny "
              "runs the plumbing)")  # fmt: skip
        return 0
    work = args.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    check = Check(device=device, sizes=TINY if args.tiny else FULL, work=work, tiny=args.tiny)
    name = torch.cuda.get_device_name(device) if check.cuda else "CPU"
    header = [
        f"# wseg GPU check ({'tiny sizes: plumbing only' if args.tiny else 'issue 29 sizes'})",
        "",
        f"device {device} ({name}), torch {torch.__version__}, {os.cpu_count()} CPU cores, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
    ]
    print("\n".join(header), flush=True)
    start = time.perf_counter()
    for title, run in CHECKS:
        if args.only and title not in args.only:
            continue
        began = time.perf_counter()
        try:
            run(check)
        except Exception as error:  # one broken path must not hide the others' figures
            traceback.print_exc()
            check.add(title, "ran to the end", f"{type(error).__name__}: {error}", "no error",
                      False)  # fmt: skip
        if check.cuda:
            torch.cuda.empty_cache()  # the next check (or a fit subprocess) gets the memory
        print(f"[{title}: {time.perf_counter() - began:.0f} s]", flush=True)
    total = time.perf_counter() - start
    check.add("total", "wall time of the checks", f"{total:.0f} s", f"<= {TIME_GOAL_S} s",
              None if args.only else check.judge(total <= TIME_GOAL_S))  # fmt: skip
    text = render(check, header)
    print(text)
    (args.out / "results.md").write_text(text)
    print(f"written to {args.out / 'results.md'}")
    return 1 if any(row.ok is False for row in check.rows) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Dense CRF speed: pydensecrf (one core, process pool) vs the torch backend (CPU, CUDA batches).

    python -m benchmarks.crf_speed [--num-images 8] [--batch-sizes 1 8 16]

375x500 images, 21 labels, 10 mean-field iterations, DeepLab parameters. Photos come from
../shared/data/tiny_coco (resized) when present, otherwise synthetic shapes; probabilities are noisy
softmaxes of their label maps. Prints seconds per image, the speed-up over pydensecrf on one core,
and the label agreement of each run with pydensecrf.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import cv2
import torch

from benchmarks import TINY_COCO
from wseg.labels.crf import DenseCRFParams, dense_crf

HEIGHT, WIDTH, LABELS = 375, 500, 21
PHOTOS = TINY_COCO / "val2017"


def make_inputs(num_images: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, str]:
    gen = torch.Generator().manual_seed(seed)
    files = (
        sorted((TINY_COCO / "val2017").glob("*.jpg"))[:num_images]
        if (TINY_COCO / "val2017").is_dir()
        else []
    )
    images = []
    for i in range(num_images):
        if i < len(files):
            bgr = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
            rgb = cv2.resize(bgr, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
            rgb = cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB)
            images.append(torch.from_numpy(rgb).permute(2, 0, 1))
        else:
            noise = torch.randint(0, 256, (3, HEIGHT // 25, WIDTH // 25), generator=gen)
            images.append(
                torch.nn.functional.interpolate(noise[None].float(), (HEIGHT, WIDTH))[0].byte()
            )
    images = torch.stack(images)
    # Labels: 21 colour clusters of the image, so that the CRF has edges to follow.
    quantised = (images.long() * 3 // 256).sum(1) % LABELS
    logits = 2.0 * torch.nn.functional.one_hot(quantised, LABELS).permute(0, 3, 1, 2).float()
    logits = logits + 1.5 * torch.randn(logits.shape, generator=gen)
    source = f"{len(files)} tiny_coco photos" if files else "synthetic images"
    if files and len(files) < num_images:
        source += f" + {num_images - len(files)} synthetic"
    return images, logits.softmax(1), source


def timed(fn: Callable[[], torch.Tensor], sync: bool = False) -> tuple[float, torch.Tensor]:
    if sync:
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if sync:
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=8)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16])
    args = parser.parse_args(argv)
    params = DenseCRFParams()
    images, probs, source = make_inputs(args.num_images)
    n = len(images)
    cores = os.cpu_count() or 1
    print(f"dense CRF, {n} images {HEIGHT}x{WIDTH} ({source}), {LABELS} labels, {params}")

    rows = []
    seconds, reference = timed(lambda: dense_crf(images, probs, params, backend="pydensecrf"))
    rows.append(("pydensecrf", "1 core", seconds / n, reference))
    seconds, out = timed(
        lambda: dense_crf(images, probs, params, backend="pydensecrf", num_workers=cores)
    )
    rows.append(("pydensecrf", f"pool of {cores} processes", seconds / n, out))
    threads = torch.get_num_threads()
    for count in sorted({1, threads}):
        torch.set_num_threads(count)
        dense_crf(images[:1], probs[:1], params)  # warm-up
        seconds, out = timed(
            lambda: torch.cat(
                [dense_crf(images[i : i + 1], probs[i : i + 1], params) for i in range(n)]
            )
        )
        rows.append(("torch CPU", f"{count} thread(s), batch 1", seconds / n, out))
    torch.set_num_threads(threads)
    if torch.cuda.is_available():
        gpu_images, gpu_probs = images.cuda(), probs.cuda()
        name = torch.cuda.get_device_name()
        for batch in args.batch_sizes:
            # Tile the image set to fill the batch; agreement is checked on its first images.
            batch_images = gpu_images.repeat(-(-batch // n), 1, 1, 1)[:batch]
            batch_probs = gpu_probs.repeat(-(-batch // n), 1, 1, 1)[:batch]

            def run(images_=batch_images, probs_=batch_probs) -> torch.Tensor:
                return dense_crf(images_, probs_, params)

            run()  # warm-up (CUDA context, allocator)
            seconds, out = timed(run, sync=True)
            rows.append((f"torch {name}", f"batch {batch}", seconds / batch, out[:n].cpu()))
    else:
        print("no CUDA device: GPU rows skipped")

    base = rows[0][2]
    print(f"{'backend':<36}{'setting':<26}{'s/image':>10}{'speed-up':>10}{'agree %':>10}")
    for backend, setting, per_image, out in rows:
        agree = (out.argmax(1) == reference[: len(out)].argmax(1)).double().mean().item() * 100
        print(
            f"{backend:<36}{setting:<26}{per_image:>10.4f}{base / per_image:>9.1f}x{agree:>10.2f}"
        )


if __name__ == "__main__":
    main()

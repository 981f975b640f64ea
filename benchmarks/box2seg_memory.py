"""Peak memory of Box2Seg's sampled affinity loss (Eq. 9-10) against the naive m x m matrices.

At 512 x 512 px, batch 8, embeddings of d = 32 at stride 4 (m = 16,384 pixels per image) and 21
classes, forward and backward of `affinity_loss` with ``pixels_per_class`` per class present. Peak
memory: ``torch.cuda.max_memory_allocated`` on a GPU, else the growth of the process's peak RSS.
The naive loss would hold A and y y^T (m x m each, float32) per image.

Run: ``python -m benchmarks.box2seg_memory [--pixels-per-class 256] [--classes-present 4]``.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from wseg.losses.box2seg_losses import affinity_loss


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    """Measure one forward/backward pass and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--num-classes", type=int, default=21)
    parser.add_argument("--classes-present", type=int, default=4)
    parser.add_argument("--pixels-per-class", type=int, default=256)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    side = args.size // args.stride
    m = side * side
    generator = torch.Generator(device=device).manual_seed(0)
    embeddings = torch.randn(args.batch_size, args.dim, side, side, device=device)
    logits = torch.randn(args.batch_size, args.num_classes, side, side, device=device)
    labels = torch.randint(
        0, args.classes_present, (args.batch_size, side, side), device=device, generator=generator
    )
    embeddings.requires_grad_(True)
    logits.requires_grad_(True)
    inputs = embeddings.numel() + logits.numel()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = peak_rss_bytes()
    start = time.perf_counter()
    loss = affinity_loss(
        embeddings, logits.softmax(1), labels, args.pixels_per_class, generator=generator
    )
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = peak_rss_bytes() - base
    seconds = time.perf_counter() - start
    sampled = args.classes_present * args.pixels_per_class
    naive = 2 * args.batch_size * m * m * 4
    print(f"device {device}; {args.batch_size} x {args.size}^2 px, stride {args.stride}: m = {m}")
    print(f"inputs (embeddings + logits, float32): {inputs * 4 / 2**20:.1f} MiB")
    print(
        f"sampled: K = {sampled} pixels per image ({args.pixels_per_class} x "
        f"{args.classes_present} classes), K x K pairs"
    )
    print(
        f"  measured peak above the inputs (forward + backward): {peak / 2**20:.1f} MiB "
        f"({seconds:.2f} s)"
    )
    print(f"  theoretical pair matrices: {2 * args.batch_size * sampled**2 * 4 / 2**20:.1f} MiB")
    print(f"naive m x m (A and y y^T, float32, no gradients): {naive / 2**30:.1f} GiB")
    print(f"naive / measured: {naive / max(peak, 1):.0f}x")


if __name__ == "__main__":
    main()

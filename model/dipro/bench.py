"""Benchmark: parameters, CPU scoring throughput and peak memory of the named configs.

``python -m dipro.bench`` measures, for the small default config and the paper's ResNet-50
progression config: trainable parameters, patients/s scored (``dipro.scoring.score``) at batch 1
and batch 32 with 4 CXRs x 10 regions and 48 EHR hours, and the process's peak resident memory
(``resource.getrusage().ru_maxrss``; torch has no CPU peak-memory API). Each config runs in its
own subprocess so the peak belongs to that config. ``--quick`` scores the ResNet-50 config at
batch 8 instead of 32 (one 224 px batch of 32 patients is 1,280 ResNet-50 crops).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import torch

from dipro.config import DiproConfig, default_config, paper_config
from dipro.network import DiPro, count_parameters
from dipro.scoring import score
from dipro.synthetic import SyntheticSpec, make_synthetic

CXRS, HOURS = 4, 48


def _config(name: str) -> DiproConfig:
    return default_config() if name == "default" else paper_config("progression")


def measure(name: str, batch_sizes: tuple[int, ...], repeats: int) -> None:
    """Print one config's figures (runs inside its own process)."""
    torch.manual_seed(0)
    config = _config(name)
    model = DiPro(config).eval()
    print(
        f"[{name}] backbone={config.backbone} crop={config.crop_size}px D={config.d_model} "
        f"tasks={','.join(config.tasks)} params={count_parameters(model):,} "
        f"threads={torch.get_num_threads()}"
    )
    for size in batch_sizes:
        spec = SyntheticSpec(
            patients=size, min_cxrs=CXRS, max_cxrs=CXRS, hours=HOURS, crop_size=config.crop_size
        )
        batch, _ = make_synthetic(spec, 0)
        if size == batch_sizes[0]:
            score(model, batch)  # warm-up once (allocator, oneDNN kernels)
        started = time.perf_counter()
        for _ in range(repeats):
            score(model, batch)
        seconds = (time.perf_counter() - started) / repeats
        print(
            f"[{name}] batch {size:>2}: {size / seconds:8.2f} patients/s "
            f"({seconds * 1000:8.1f} ms per batch, {CXRS} CXRs x {config.num_regions} regions, "
            f"{HOURS} h, {repeats} timed runs)"
        )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"[{name}] peak RSS {peak_mib:.0f} MiB")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-50 at batch 8, not 32")
    parser.add_argument("--config", choices=("default", "resnet50"), help="one config only")
    parser.add_argument("--repeats", type=int, default=0, help="timed runs (0 = auto)")
    args = parser.parse_args(argv)
    if args.config:
        big = args.config == "resnet50"
        sizes = (1, 8 if args.quick and big else 32)
        repeats = args.repeats or (1 if big else 5)
        measure(args.config, sizes, repeats)
        return
    for name in ("default", "resnet50"):
        command = [sys.executable, "-m", "dipro.bench", "--config", name]
        command += ["--quick"] if args.quick else []
        command += ["--repeats", str(args.repeats)] if args.repeats else []
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()

"""Benchmark: parameters, scoring throughput per device and dtype, bf16 error, FLOPs, memory.

``python -m dipro.bench`` measures, for the small default config and the paper's ResNet-50
progression config, with 4 CXRs x 10 regions and 48 EHR hours per patient:

- trainable parameters;
- per device (the CPU; CUDA when present) and dtype (fp32; bf16 autocast):
  backbone crops/s (``encode_crops``, crops of many patients in one call), patients/s scored
  end to end at batch 1 and batch B, and patients/s scored from cached region features
  (the backbone skipped, as on a night whose CXRs are all in the feature cache);
- the largest difference in any probability between bf16 and fp32 on the same batch;
- FLOPs per backbone crop and per patient for the rest of the network (``FlopCounterMode``),
  and, when no GPU is present, a FLOP-based projection of GPU crops/s (stated assumptions);
- the process's peak resident memory (``ru_maxrss``; torch has no CPU peak-memory API).

Each config runs in its own subprocess so the peak belongs to that config. Models run in eval
mode with ``channels_last`` convolution weights under ``torch.inference_mode``
(``dipro.scoring``). ``--quick`` scores the ResNet-50 config at batch 8 instead of 32 (one
224 px batch of 32 patients is 1,280 ResNet-50 crops).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import torch
from torch.utils.flop_counter import FlopCounterMode

from dipro.batch import DiproBatch
from dipro.config import DiproConfig, default_config, paper_config
from dipro.network import DiPro, count_parameters
from dipro.scoring import ScoreResult, encode_crops, prepare_for_inference, score
from dipro.synthetic import SyntheticSpec, make_synthetic

T = TypeVar("T")
CXRS, HOURS = 4, 48
#: NVIDIA H200 (SXM) dense bf16 tensor-core peak, from its data sheet (the device on offer).
H200_BF16_PEAK_FLOPS = 989e12
#: Share of that peak an eager-mode PyTorch convolution net reaches (assumed range).
GPU_UTILISATION = (0.10, 0.30)


def _config(name: str) -> DiproConfig:
    return default_config() if name == "default" else paper_config("progression")


def _timed(fn: Callable[[], T], repeats: int) -> tuple[float, T]:
    """Seconds per call after one warm-up call (allocator, oneDNN / cuDNN kernel choice),
    and the last call's result."""
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats, result


def _probabilities(result: ScoreResult) -> torch.Tensor:
    parts = [p.flatten(1) if p.ndim > 1 else p[:, None] for p in
             (result.progression, result.mortality, result.los) if p is not None]  # fmt: skip
    return torch.cat(parts, dim=1)


def _batch(config: DiproConfig, size: int) -> DiproBatch:
    spec = SyntheticSpec(
        patients=size, min_cxrs=CXRS, max_cxrs=CXRS, hours=HOURS, crop_size=config.crop_size
    )
    return make_synthetic(spec, 0)[0]


def _flops(model: DiPro, batch: DiproBatch) -> tuple[float, float]:
    """FLOPs per backbone crop and per patient for everything after the backbone."""
    one = batch.select(slice(0, 1))
    crops, mask = one.cxr_crops[one.cxr_mask], one.region_mask[one.cxr_mask]
    with FlopCounterMode(display=False) as backbone:
        features = encode_crops(model, crops, mask, precision="fp32")
    with FlopCounterMode(display=False) as rest:
        score(model, one, region_features=features[None], precision="fp32")
    n_crops = crops.shape[0] * crops.shape[1]
    return backbone.get_total_flops() / n_crops, float(rest.get_total_flops())


def _measure_precision(
    name: str,
    model: DiPro,
    batches: dict[int, DiproBatch],
    precision: str,
    repeats: int,
) -> torch.Tensor:
    """Print one line of figures for ``precision``; return the largest batch's probabilities."""
    big = max(batches)
    batch = batches[big]
    crops, mask = batch.cxr_crops[batch.cxr_mask], batch.region_mask[batch.cxr_mask]
    seconds, features = _timed(
        lambda: encode_crops(model, crops, mask, precision=precision), repeats
    )
    n_crops = crops.shape[0] * crops.shape[1]
    device = batch.cxr_crops.device.type
    line = f"[{name}] {device} {precision}: backbone {n_crops / seconds:9.1f} crops/s"
    for size, sized in sorted(batches.items()):
        s, result = _timed(lambda sized=sized: score(model, sized, precision=precision), repeats)  # type: ignore[misc]
        line += f" | batch {size:>2}: {size / s:8.2f} patients/s"
    features = features.reshape(big, CXRS, *features.shape[1:])
    s, _ = _timed(
        lambda: score(model, batch, region_features=features, precision=precision), repeats
    )
    line += f" | from cached features: {big / s:9.1f} patients/s"
    print(line, flush=True)
    return _probabilities(result)  # the largest batch's, scored last


def measure_device(
    name: str, model: DiPro, device: torch.device, sizes: tuple[int, ...], repeats: int
) -> None:
    """Print crops/s and patients/s for fp32 and bf16 on ``device``, and the bf16 error."""
    model = model.to(device)
    batches = {size: _batch(model.config, size).to(device) for size in sizes}
    fp32 = _measure_precision(name, model, batches, "fp32", repeats)
    bf16 = _measure_precision(name, model, batches, "bf16", repeats)
    diff = (bf16 - fp32).abs().max().item()
    print(f"[{name}] {device.type} largest |p(bf16) - p(fp32)| = {diff:.2e} (batch {max(sizes)})")


def measure(name: str, batch_sizes: tuple[int, ...], repeats: int) -> None:
    """Print one config's figures (runs inside its own process)."""
    torch.manual_seed(0)
    config = _config(name)
    model = prepare_for_inference(DiPro(config))
    print(
        f"[{name}] backbone={config.backbone} crop={config.crop_size}px D={config.d_model} "
        f"tasks={','.join(config.tasks)} params={count_parameters(model):,} "
        f"threads={torch.get_num_threads()} ({CXRS} CXRs x {config.num_regions} regions, "
        f"{HOURS} h per patient; {repeats} timed runs each)"
    )
    per_crop, rest = _flops(model, _batch(config, 1))
    print(
        f"[{name}] FLOPs: {per_crop / 1e9:.3f} GFLOP per backbone crop, "
        f"{rest / 1e9:.3f} GFLOP per patient after the backbone"
    )
    measure_device(name, model, torch.device("cpu"), batch_sizes, repeats)
    if torch.cuda.is_available():
        print(f"[{name}] GPU: {torch.cuda.get_device_name()}")
        measure_device(name, model, torch.device("cuda"), batch_sizes, repeats)
        peak = torch.cuda.max_memory_allocated() / 2**20
        print(f"[{name}] peak GPU memory {peak:.0f} MiB")
    elif per_crop < 1e9:
        print(f"[{name}] no GPU here; too small a network for a FLOP-based GPU projection")
    else:
        low, high = (H200_BF16_PEAK_FLOPS * u / per_crop for u in GPU_UTILISATION)
        crops_per_patient = CXRS * config.num_regions
        print(
            f"[{name}] no GPU here. FLOP-based projection for one H200 (bf16 peak "
            f"{H200_BF16_PEAK_FLOPS / 1e12:.0f} TFLOP/s, {GPU_UTILISATION[0]:.0%}-"
            f"{GPU_UTILISATION[1]:.0%} of it reached): {low:,.0f}-{high:,.0f} crops/s, "
            f"{low / crops_per_patient:,.0f}-{high / crops_per_patient:,.0f} patients/s "
            f"with every CXR new (not measured)"
        )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"[{name}] peak RSS {peak_mib:.0f} MiB")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-50 at batch 8, not 32")
    parser.add_argument("--config", choices=("default", "resnet50"), help="one config only")
    parser.add_argument("--repeats", type=int, default=0, help="timed runs (0 = auto)")
    parser.add_argument("--sizes", type=int, nargs="+", help="batch sizes (default 1 and 32)")
    args = parser.parse_args(argv)
    if args.config:
        big = args.config == "resnet50"
        sizes = tuple(sorted(args.sizes or (1, 8 if args.quick and big else 32)))
        repeats = args.repeats or (1 if big else 5)
        measure(args.config, sizes, repeats)
        return
    for name in ("default", "resnet50"):
        command = [sys.executable, "-m", "dipro.bench", "--config", name]
        command += ["--quick"] if args.quick else []
        command += ["--repeats", str(args.repeats)] if args.repeats else []
        command += ["--sizes", *map(str, args.sizes)] if args.sizes else []
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()

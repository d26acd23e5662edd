#!/usr/bin/env python
"""Seconds per film for the region locator, idle and with busy processes beside it, with
torch's default threads and with the worker's share (:mod:`dipro_fhir.core.threads`).

Each configuration runs in a fresh process (torch's thread pool is set once per process),
on the same real films (the Hannover development set's PNGs by default), after one warm-up
film. ``--busy N`` starts N processes that spin on the CPU for the busy runs.

    .venv/bin/python scripts/bench_threads.py --films 6 --busy 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FILMS = REPO.parent / "shared" / "data" / "cxr-hannover-dev" / "png"

WORKER = r"""
import json, sys, time
from pathlib import Path
import numpy as np
from PIL import Image
import torch
from dipro_fhir.core.threads import use_torch_threads
from dipro_fhir.imaging.locators import load_locator

mode, folder, films, locator_name = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
threads = use_torch_threads(None) if mode == "share" else torch.get_num_threads()
locator = load_locator(locator_name)
paths = sorted(folder.glob("*.png"))[: films + 1]
images = [np.asarray(Image.open(p).convert("L"), dtype=np.float32) / 255.0 for p in paths]
locator.locate(images[0])  # warm-up
start = time.perf_counter()
for image in images[1:]:
    locator.locate(image)
print(json.dumps({"threads": threads, "s_per_film": (time.perf_counter() - start) / films}))
"""


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def _measure(mode: str, folder: Path, films: int, locator: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", WORKER, mode, str(folder), str(films), locator],
        capture_output=True, text=True, check=True, cwd=REPO, timeout=3600,
    )  # fmt: skip
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=6)
    parser.add_argument("--busy", type=int, default=2)
    parser.add_argument("--folder", type=Path, default=DEFAULT_FILMS)
    parser.add_argument("--locator", default="atlas")
    args = parser.parse_args()
    rows = []
    for busy in (0, args.busy):
        spinners = [
            multiprocessing.Process(target=_spin, args=(3600.0,), daemon=True) for _ in range(busy)
        ]
        for s in spinners:
            s.start()
        time.sleep(5 if busy else 0)  # let the load average see them
        try:
            for mode in ("default", "share"):
                result = _measure(mode, args.folder, args.films, args.locator)
                rows.append((busy, mode, result["threads"], result["s_per_film"]))
                print(
                    f"busy processes {busy}  threads {mode:7s} ({int(result['threads'])})  "
                    f"{result['s_per_film']:.2f} s/film",
                    flush=True,
                )
        finally:
            for s in spinners:
                s.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

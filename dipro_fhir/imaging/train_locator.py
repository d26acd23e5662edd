"""``dipro-fhir train-locator``: a small CPU-friendly network that regresses the ten region
boxes from a whole film, trained from a site's COCO boxes (issue 11).

The network (:class:`BoxNet`, ~0.6 M parameters) sees the film resized to ``S`` x ``S``
(default 128, aspect not kept) and outputs ten boxes as fractions of the image, the contract
of :mod:`dipro_fhir.imaging.locators`; it is exported as TorchScript, so
``DIPRO_IMAGING__LOCATOR=<file>.pt`` (or ``trained`` for the shipped one) uses it. Training:
L1 loss on the box corners, Adam, light augmentation (shift/scale, contrast, gamma), images
grouped by patient so the held-out patients are never seen. Only COCO boxes are read (lung
and heart masks are not supported yet). The atlas (:mod:`dipro_fhir.imaging.atlas`) is the
default locator; the geometric one stays the dependency-free fallback.

Writes ``region_locator.pt``, ``model_card.json`` and ``MODEL_CARD.md`` to the output folder:
data, licence, the patients held out, and the mean IoU per region on the held-out films of
the trained and the geometric locator.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from dipro.vocab import REGIONS
from dipro_fhir.core.errors import ConfigError
from dipro_fhir.imaging.evaluate import iou, read_coco, read_training_film
from dipro_fhir.imaging.locators import TorchScriptLocator, model_input
from dipro_fhir.imaging.regions import GeometricRegionLocator, RegionLocator


class BoxNet(nn.Module):
    """Five stride-2 conv blocks, global features, ten sigmoid boxes."""

    def __init__(self, input_size: int = 128) -> None:
        super().__init__()
        chans = (1, 16, 32, 64, 96, 128)
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(chans):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.BatchNorm2d(b), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        side = input_size // 32
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(128 * side * side, 256),
            nn.ReLU(),
            nn.Linear(256, 4 * len(REGIONS)),
        )
        self.input_size = input_size
        self.regions = len(REGIONS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, S, S]`` -> ``[B, 10, 4]`` corner fractions ``(x0, y0, x1, y1)``."""
        raw = torch.sigmoid(self.head(self.features(x))).view(-1, self.regions, 4)
        lo = torch.minimum(raw[..., :2], raw[..., 2:])
        hi = torch.maximum(raw[..., :2], raw[..., 2:])
        return torch.cat([lo, hi], dim=-1)


@dataclass(frozen=True, slots=True)
class Sample:
    """One annotated film: the network input and its ten boxes as fractions."""

    stem: str
    path: Path  # the film's file, read again at full size for the held-out evaluation
    patient: str
    image: torch.Tensor  # [1, S, S]
    boxes: torch.Tensor  # [10, 4]
    size: tuple[int, int]  # (height, width)


def load_samples(coco_path: Path, images: Path, input_size: int) -> list[Sample]:
    """Every image of the COCO file with all ten regions annotated (``patient_id`` per image
    if present, else the file stem)."""
    coco = read_coco(coco_path)
    names = {int(c["id"]): str(c["name"]) for c in coco["categories"]}
    boxes: dict[int, dict[str, list[float]]] = {}
    for a in coco["annotations"]:
        boxes.setdefault(int(a["image_id"]), {})[names[int(a["category_id"])]] = a["bbox"]
    out = []
    for im in coco["images"]:
        got = boxes.get(int(im["id"]), {})
        if set(got) != set(REGIONS):
            continue
        path = images / str(im["file_name"])
        film = read_training_film(path)
        h, w = film.shape
        frac = [
            [got[r][0] / w, got[r][1] / h, (got[r][0] + got[r][2]) / w, (got[r][1] + got[r][3]) / h]
            for r in REGIONS
        ]
        stem = Path(str(im["file_name"])).stem
        out.append(
            Sample(
                stem=stem,
                path=path,
                patient=str(im.get("patient_id", stem)),
                image=model_input(film, input_size)[0],
                boxes=torch.tensor(frac, dtype=torch.float32),
                size=(h, w),
            )
        )
    return out


def _augment(
    x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random shift/scale (boxes follow), contrast and gamma, per sample."""
    b = x.shape[0]
    scale = 1.0 + (torch.rand(b, generator=gen) - 0.5) * 0.16
    shift = (torch.rand(b, 2, generator=gen) - 0.5) * 0.12
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / scale
    theta[:, :, 2] = -shift * 2.0 / scale[:, None]
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = torch.nn.functional.grid_sample(x, grid, padding_mode="border", align_corners=False)
    # Output pixel u (in [-1, 1]) samples input u/scale - 2 shift/scale: a point p maps to
    # p * scale + 2 shift, in [0, 1] fractions: f' = (f - 0.5) * scale + 0.5 + shift.
    s, t = scale[:, None, None], shift[:, None, :].repeat(1, 1, 2)
    y = ((y - 0.5) * s + 0.5 + t).clamp(0.0, 1.0)
    gamma = torch.exp((torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.6)
    contrast = 1.0 + (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.3
    x = ((x.clamp(1e-4, 1.0) ** gamma - 0.5) * contrast + 0.5).clamp(0.0, 1.0)
    return x, y


def train(
    samples: Sequence[Sample], *, epochs: int, input_size: int, seed: int = 0, lr: float = 2e-3
) -> BoxNet:
    """Fit :class:`BoxNet` on ``samples`` (CPU; minutes for a few dozen films)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = BoxNet(input_size)
    xs = torch.stack([s.image for s in samples])
    ys = torch.stack([s.boxes for s in samples])
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(samples), generator=gen)
        for i in range(0, len(samples), 16):
            idx = order[i : i + 16]
            x, y = _augment(xs[idx], ys[idx], gen)
            loss = torch.nn.functional.l1_loss(net(x), y)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        sched.step()
    return net.eval()


def mean_iou(
    locator: RegionLocator, samples: Sequence[Sample], images: Mapping[str, npt.NDArray[np.float32]]
) -> dict[str, float]:
    """Mean IoU per region of ``locator`` on ``samples`` (a missing box counts 0)."""
    per: dict[str, list[float]] = {r: [] for r in REGIONS}
    for s in samples:
        found = locator.locate(images[s.stem])
        h, w = s.size
        for i, region in enumerate(REGIONS):
            want = s.boxes[i].tolist()
            truth = (want[0] * w, want[1] * h, want[2] * w, want[3] * h)
            box = found.boxes[i]
            per[region].append(0.0 if box is None else iou(box, truth))
    return {r: round(float(np.mean(v)), 3) for r, v in per.items()}


def export(net: BoxNet, path: Path) -> None:
    """TorchScript with ``input_size`` and the ``[1, 10, 4]`` output of the contract."""
    scripted = torch.jit.script(net)
    scripted.save(str(path))  # type: ignore[no-untyped-call]


def train_locator(
    coco: Path,
    images: Path,
    out: Path,
    *,
    holdout: Sequence[str],
    epochs: int = 150,
    input_size: int = 128,
    seed: int = 0,
    data_note: str = "",
) -> dict[str, Any]:
    """Train on every patient not in ``holdout``, evaluate both locators on the held-out
    patients, write weights and model card to ``out``; return the card."""
    started = time.monotonic()
    samples = load_samples(coco, images, input_size)
    held = set(holdout)
    train_set = [s for s in samples if s.patient not in held]
    test_set = [s for s in samples if s.patient in held]
    if not train_set:
        raise ConfigError("no training film: every annotated patient is held out")
    if not test_set:
        raise ConfigError(
            "no held-out film: --holdout must name a patient with annotated films "
            "(the model card reports IoU on held-out patients)"
        )
    net = train(train_set, epochs=epochs, input_size=input_size, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / "region_locator.pt"
    export(net, weights)
    films = {s.stem: read_training_film(s.path) for s in test_set}
    trained = TorchScriptLocator.load(weights)
    card: dict[str, Any] = {
        "model": "BoxNet region locator (dipro_fhir.imaging.train_locator)",
        "input": f"film resized to {input_size}x{input_size}, [0, 1], bright = dense",
        "output": "[1, 10, 4] box corners as fractions, dipro.vocab.REGIONS order",
        "data": data_note or f"COCO boxes {coco.name}",
        "licence": "CC BY 3.0 (trained on CC BY 3.0 films and annotations; attribute them)",
        "train_patients": sorted({s.patient for s in train_set}),
        "train_films": len(train_set),
        "heldout_patients": sorted(held & {s.patient for s in samples}),
        "heldout_films": len(test_set),
        "epochs": epochs,
        "seed": seed,
        "train_seconds": round(time.monotonic() - started, 1),
        "heldout_mean_iou": {
            "trained": mean_iou(trained, test_set, films),
            "geometric": mean_iou(GeometricRegionLocator(), test_set, films),
        },
    }
    (out / "model_card.json").write_text(json.dumps(card, indent=1) + "\n")
    (out / "MODEL_CARD.md").write_text(_markdown(card))
    return card


def _markdown(card: Mapping[str, Any]) -> str:
    ious = card["heldout_mean_iou"]
    rows = "\n".join(
        f"| {r} | {ious['trained'].get(r, '-')} | {ious['geometric'].get(r, '-')} |"
        for r in REGIONS
    )
    return (
        f"# Region locator model card\n\n{card['model']}\n\n"
        f"- Input: {card['input']}\n- Output: {card['output']}\n- Data: {card['data']}\n"
        f"- Licence: {card['licence']}\n"
        f"- Trained on {card['train_films']} films of {len(card['train_patients'])} patients; "
        f"held out {card['heldout_films']} films of patients "
        f"{', '.join(card['heldout_patients'])}\n"
        f"- {card['epochs']} epochs, seed {card['seed']}, {card['train_seconds']} s on the CPU\n\n"
        "Mean IoU per region on the held-out films (a missing box counts 0):\n\n"
        f"| region | trained | geometric |\n|---|---|---|\n{rows}\n\n"
        "Every placement still goes through quality control (dipro_fhir.imaging.qc). "
        "Few films from one hospital: expect lower IoU elsewhere; retrain on local boxes.\n"
    )

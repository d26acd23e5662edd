"""Which region locator a run uses: ``DIPRO_IMAGING__LOCATOR`` (issue 11's plug-in seam).

The setting takes one of:

* a built-in name: ``atlas`` (:class:`~dipro_fhir.imaging.atlas.AtlasRegionLocator` with
  the shipped atlas of annotated development films, the default; an empty name is this
  too), ``geometric`` (:class:`~dipro_fhir.imaging.regions.GeometricRegionLocator`,
  dependency-free, exact on the synthetic films) or ``trained`` (the small network shipped
  in ``dipro_fhir/imaging/weights/``);
  ``dipro-fhir train-locator`` builds the atlas and trains the network from a site's boxes;
* ``module:factory``: an importable callable returning an object with
  ``locate(image) -> RegionBoxes`` (:class:`~dipro_fhir.imaging.regions.RegionLocator`);
* a file: ``*.npz`` (an atlas from ``dipro-fhir train-locator --kind atlas``), or ``*.pt`` /
  ``*.ts`` (TorchScript) or ``*.onnx`` (needs ``onnxruntime``) with the contract below.

Contract of a model file (TorchScript or ONNX):

* input ``float32 [1, 1, S, S]``: the display image (bright = dense, patient's left on the
  image right, values in [0, 1]) resized to ``S`` x ``S`` without keeping the aspect ratio.
  ``S`` is the TorchScript attribute ``input_size`` when present, else the ONNX input's
  static size, else 256;
* output ``float32 [1, 10, 4]`` or ``[1, 10, 5]``: per region in ``dipro.vocab.REGIONS``
  order ``(x0, y0, x1, y1)`` as fractions of the image width/height, and optionally a
  score in [0, 1]; a region scoring below 0.5, or with a degenerate box, is missing.

Whatever the locator, every placement then goes through :mod:`dipro_fhir.imaging.qc`.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from dipro.vocab import REGIONS
from dipro_fhir.core.errors import ConfigError, ModelContractError
from dipro_fhir.imaging.atlas import SHIPPED_ATLAS, AtlasRegionLocator
from dipro_fhir.imaging.boxes import Box, RegionBoxes
from dipro_fhir.imaging.regions import GeometricRegionLocator, RegionLocator

#: The shipped weights of the ``trained`` built-in (TorchScript, contract above).
SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights" / "region_locator.pt"
DEFAULT_INPUT = 256


def check_output(out: npt.NDArray[np.floating], source: str) -> None:
    """A model's whole output must be ``[1, 10, 4]`` or ``[1, 10, 5]`` (contract above): an
    output of another shape with as many numbers, such as ``[1, 4, 10]``, must not be read
    as boxes.

    Raises:
        ModelContractError: It is not.
    """
    shape = tuple(np.shape(out))
    if shape not in ((1, len(REGIONS), 4), (1, len(REGIONS), 5)):
        raise ModelContractError(
            f"{source}: the locator's output is {list(shape)}, the contract is "
            f"[1, {len(REGIONS)}, 4] or [1, {len(REGIONS)}, 5]"
        )


def boxes_from_output(out: npt.NDArray[np.floating], width: int, height: int) -> RegionBoxes:
    """Turn a model's ``[10, 4]`` or ``[10, 5]`` output (contract above) into boxes.

    Raises:
        ModelContractError: ``out`` has another shape.
    """
    arr = np.asarray(out, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != len(REGIONS) or arr.shape[1] not in (4, 5):
        raise ModelContractError(f"expected [10, 4] or [10, 5] boxes, got {list(arr.shape)}")
    scored = arr.shape[1] == 5
    boxes: list[Box | None] = []
    for row in arr:
        if scored and not row[4] >= 0.5:
            boxes.append(None)
            continue
        x0, x1 = sorted(
            (float(np.clip(row[0], 0, 1)) * width, float(np.clip(row[2], 0, 1)) * width)
        )
        y0, y1 = sorted(
            (float(np.clip(row[1], 0, 1)) * height, float(np.clip(row[3], 0, 1)) * height)
        )
        boxes.append((x0, y0, x1, y1) if x1 - x0 >= 2 and y1 - y0 >= 2 else None)
    method = "model" if any(b is not None for b in boxes) else "none"
    return RegionBoxes(boxes=tuple(boxes), width=width, height=height, method=method)


def model_input(image: npt.NDArray[np.floating], size: int) -> torch.Tensor:
    """The ``[1, 1, size, size]`` input of the contract (area-averaged resize)."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(size, size), mode="area").clamp_(0.0, 1.0)


@dataclass(frozen=True, slots=True)
class TorchScriptLocator:
    """A TorchScript module with the contract of the module docstring."""

    module: Any = field(repr=False)
    input_size: int = DEFAULT_INPUT
    version: str = "unknown"  # the weights file's digest: part of the feature-cache key

    @classmethod
    def load(cls, path: Path) -> TorchScriptLocator:
        """Load ``path`` on the CPU (``torch.jit.load``) and run it once on a blank film.

        Raises:
            ConfigError: It is not a TorchScript file.
            ModelContractError: Its output breaks the contract.
        """
        try:
            module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        except (RuntimeError, ValueError) as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"{path}: not a TorchScript model ({first})") from exc
        module.eval()
        locator = cls(module, int(getattr(module, "input_size", DEFAULT_INPUT)), _digest(path))
        check_output(locator.run(np.zeros((64, 64), np.float32)), str(path))
        return locator

    def run(self, image: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """The model's raw output for ``image`` (``[H, W]``)."""
        with torch.no_grad():
            out = self.module(model_input(image, self.input_size))
        return np.asarray(out.numpy(), dtype=np.float32)

    def locate(self, image: npt.NDArray[np.floating]) -> RegionBoxes:
        """Run the model on ``image`` (``[H, W]``)."""
        return _place(self.run(image), image)


@dataclass(frozen=True, slots=True)
class OnnxLocator:
    """An ONNX model with the contract of the module docstring (``onnxruntime``)."""

    session: Any = field(repr=False)
    input_size: int = DEFAULT_INPUT
    version: str = "unknown"  # the model file's digest: part of the feature-cache key

    @classmethod
    def load(cls, path: Path) -> OnnxLocator:
        """Open ``path`` with onnxruntime on the CPU and run it once on a blank film.

        Raises:
            ConfigError: onnxruntime is not installed, or ``path`` is not an ONNX model.
            ModelContractError: Its output breaks the contract.
        """
        try:
            import onnxruntime
        except ImportError as exc:
            raise ConfigError(
                f"{path}: an ONNX locator needs the onnxruntime package (pip install "
                "onnxruntime), or export the model to TorchScript (*.pt)"
            ) from exc
        try:
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's errors share no base class below Exception
            raise ConfigError(f"{path}: not an ONNX model ({type(exc).__name__})") from exc
        shape = session.get_inputs()[0].shape
        size = shape[-1] if isinstance(shape[-1], int) else DEFAULT_INPUT
        locator = cls(session, int(size), _digest(path))
        check_output(locator.run(np.zeros((64, 64), np.float32)), str(path))
        return locator

    def run(self, image: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """The model's raw output for ``image`` (``[H, W]``)."""
        x = model_input(image, self.input_size).numpy()
        name = self.session.get_inputs()[0].name
        return np.asarray(self.session.run(None, {name: x})[0], dtype=np.float32)

    def locate(self, image: npt.NDArray[np.floating]) -> RegionBoxes:
        """Run the model on ``image`` (``[H, W]``)."""
        return _place(self.run(image), image)


def _place(out: npt.NDArray[np.float32], image: npt.NDArray[np.floating]) -> RegionBoxes:
    """The boxes of a model file's whole output for ``image``."""
    check_output(out, "locator")
    return boxes_from_output(out[0], int(image.shape[1]), int(image.shape[0]))


def _digest(path: Path) -> str:
    """The first 16 hex digits of the file's SHA-256."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _from_factory(spec: str) -> RegionLocator:
    module_name, _, attr = spec.partition(":")
    try:
        factory: Callable[[], Any] = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"imaging.locator {spec!r}: cannot import it ({exc})") from exc
    locator = factory()
    if not callable(getattr(locator, "locate", None)):
        raise ConfigError(f"imaging.locator {spec!r}: the factory's result has no locate()")
    return locator  # type: ignore[no-any-return]


def load_locator(spec: str) -> RegionLocator:
    """The locator named by ``spec`` (module docstring).

    Raises:
        ConfigError: Unknown name, missing or unreadable file, unimportable factory, or ONNX
            without onnxruntime.
        ModelContractError: A model file's output breaks the contract.
    """
    spec = spec.strip()
    if spec == "geometric":
        return GeometricRegionLocator()
    if spec in ("", "atlas"):
        if not SHIPPED_ATLAS.is_file():
            raise ConfigError(f"the shipped region atlas is missing: {SHIPPED_ATLAS}")
        return AtlasRegionLocator.load(SHIPPED_ATLAS)
    if spec == "trained":
        if not SHIPPED_WEIGHTS.is_file():
            raise ConfigError(f"the trained locator's weights are missing: {SHIPPED_WEIGHTS}")
        return TorchScriptLocator.load(SHIPPED_WEIGHTS)
    path = Path(spec)
    if path.suffix in (".npz", ".pt", ".ts", ".onnx"):
        if not path.is_file():
            raise ConfigError(f"imaging.locator: no such model file {path}")
        if path.suffix == ".npz":
            return AtlasRegionLocator.load(path)
        return OnnxLocator.load(path) if path.suffix == ".onnx" else TorchScriptLocator.load(path)
    if ":" in spec:
        return _from_factory(spec)
    raise ConfigError(
        f"imaging.locator {spec!r}: expected atlas, geometric, trained, module:factory, "
        "or a .npz/.pt/.ts/.onnx file"
    )

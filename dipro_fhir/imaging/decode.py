"""Turn a DICOM radiograph into a display image: float32 ``[H, W]`` in ``[0, 1]``, bright = dense.

The pipeline follows the DICOM grayscale display chain (PS3.4 N.2.1): stored values ->
Modality LUT (PS3.3 C.11.1: Rescale Slope/Intercept or a Modality LUT Sequence) -> VOI LUT
(C.11.2: the first Window Center/Width with its VOI LUT Function, or a VOI LUT Sequence; a
robust 0.5-99.5 percentile window when the file has neither) -> MONOCHROME1 inversion
(C.7.6.3.1.2: minimum value is white), so dense structures are bright for every
photometric. Compressed pixel data (JPEG 2000 via pylibjpeg-openjpeg) is decoded by pydicom.
Bits Stored below Bits Allocated (12, 15) is masked by pydicom. A file that cannot be
decoded raises :class:`CorruptImage`.

A PNG film (:func:`decode_png`) goes down the same chain: its gray values are the stored
values of a MONOCHROME2 image with no Modality or VOI LUT, exactly what a PNG wrapped as DICOM
without a display window is, so ``dipro-fhir regions`` on the PNG and the pipeline on that
DICOM see the same image (issue 23: dividing by 255 instead moved boxes by up to 56 px and
changed QC on 5 of 176 films).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut
from pydicom.uid import ExplicitVRLittleEndian

from dipro_fhir.core.errors import InvalidResource
from dipro_fhir.core.limits import DEFAULT_LIMITS, InputLimits

FloatImage = npt.NDArray[np.float32]

#: What pydicom and its decoders raise on truncated, inconsistent or garbage pixel data.
DECODE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    RuntimeError,
    TypeError,
    KeyError,
    AttributeError,
    NotImplementedError,
    EOFError,
    OSError,
    InvalidDicomError,
)

_PERCENTILES = (0.5, 99.5)

#: Version of the decoding chain below; bump it when its output changes (feature-cache key).
DECODER_VERSION = "decode/1"


#: The shortest side of a film in pixels, and the most its longer side may be as a multiple
#: of the shorter: a strip or a line of pixels is no chest radiograph, and quality control
#: needs a few pixels across at its working size.
MIN_SIDE = 16
MAX_ASPECT = 4.0


class CorruptImage(InvalidResource):
    """The DICOM object's pixels cannot be decoded into a grayscale image."""


def check_film_shape(shape: tuple[int, ...]) -> None:
    """Refuse a decoded image that cannot be a film.

    Raises:
        CorruptImage: ``shape`` is not two-dimensional, a side is under :data:`MIN_SIDE`, or
            the longer side exceeds :data:`MAX_ASPECT` times the shorter.
    """
    if len(shape) != 2 or min(shape) < MIN_SIDE or max(shape) > MAX_ASPECT * min(shape):
        raise CorruptImage(
            f"an image of shape {tuple(shape)} is not a film (2-D, each side >= {MIN_SIDE} px, "
            f"sides at most {MAX_ASPECT:g}:1)"
        )


class ImageTooLarge(CorruptImage):
    """The image breaches ``max_image_pixels`` or ``max_image_bytes``; it is not decoded."""


def check_image_size(
    rows: int, columns: int, pixel_bytes: int, limits: InputLimits, frames: int = 1
) -> None:
    """Refuse an image before decoding it: the pixel limit counts every frame.

    Raises:
        ImageTooLarge: Rows x Columns x frames or the Pixel Data bytes exceed the limits.
    """
    if rows * columns * max(frames, 1) > limits.max_image_pixels:
        size = f"{rows}x{columns}" if frames <= 1 else f"{frames} frames of {rows}x{columns}"
        raise ImageTooLarge(f"{size} pixels > limit {limits.max_image_pixels}: not decoded")
    if pixel_bytes > limits.max_image_bytes:
        raise ImageTooLarge(
            f"{pixel_bytes} bytes of pixel data > limit {limits.max_image_bytes}: not decoded"
        )


def _stored_pixels(ds: Dataset, limits: InputLimits) -> npt.NDArray[np.generic]:
    if "PixelData" not in ds:
        raise CorruptImage("the object has no Pixel Data")
    try:
        rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    except (TypeError, ValueError) as exc:
        raise CorruptImage("Rows or Columns is not a number") from exc
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise CorruptImage("Number of Frames is not a number") from exc
    check_image_size(rows, columns, len(ds.PixelData or b""), limits, frames)
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise CorruptImage("not a grayscale image (Samples per Pixel != 1)")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise CorruptImage(f"unsupported Photometric Interpretation {photometric!r}")
    try:
        arr = ds.pixel_array
    except DECODE_ERRORS as exc:
        raise CorruptImage(f"pixel data cannot be decoded: {type(exc).__name__}") from exc
    if arr.ndim == 3:  # multi-frame: the first frame (PS3.3 C.7.6.6)
        arr = arr[0]
    check_film_shape(arr.shape)
    return arr


def _first(value: object) -> float:
    """First value of a possibly multi-valued DS (Window Center/Width may hold several)."""
    if isinstance(value, MultiValue | list | tuple):
        value = value[0]
    return float(value)  # type: ignore[arg-type]


def _window(values: npt.NDArray[np.float64], ds: Dataset) -> npt.NDArray[np.float64] | None:
    """Window Center/Width to ``[0, 1]`` (PS3.3 C.11.2.1.2 and C.11.2.1.3), or ``None``."""
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    try:
        c, w = _first(ds.WindowCenter), _first(ds.WindowWidth)
    except (TypeError, ValueError, IndexError):
        return None
    function = str(ds.get("VOILUTFunction", "LINEAR")).upper() or "LINEAR"
    if not (np.isfinite(c) and np.isfinite(w)) or w < 1 or (function == "LINEAR" and w < 2):
        return None
    if function == "SIGMOID":  # C.11.2.1.3.2
        return np.asarray(1.0 / (1.0 + np.exp(-4.0 * (values - c) / w)))
    if function == "LINEAR_EXACT":  # C.11.2.1.3.1
        return np.asarray(np.clip((values - c) / w + 0.5, 0.0, 1.0))
    return np.asarray(np.clip((values - (c - 0.5)) / (w - 1.0) + 0.5, 0.0, 1.0))  # C.11.2.1.2.1


def _voi_lut_sequence(stored: npt.NDArray[np.generic], ds: Dataset) -> npt.NDArray[np.float64]:
    """VOI LUT Sequence (C.11.2.1.1); the output is scaled by its LUT Descriptor bit depth."""
    item = ds.VOILUTSequence[0]
    bits = int(item.LUTDescriptor[2])
    out = apply_voi_lut(stored, ds, index=0, prefer_lut=True)
    return np.asarray(np.clip(out.astype(np.float64) / float((1 << bits) - 1), 0.0, 1.0))


def _percentile_window(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    lo, hi = np.percentile(values, _PERCENTILES)
    if hi - lo <= 0:
        return np.zeros_like(values)
    return np.asarray(np.clip((values - lo) / (hi - lo), 0.0, 1.0))


def decode_radiograph(ds: Dataset, limits: InputLimits = DEFAULT_LIMITS) -> FloatImage:
    """Decode a CR/DX object into a display image.

    Args:
        ds: A dataset with Pixel Data (any transfer syntax pydicom can decode).
        limits: The largest image decoded (pixels, bytes).

    Returns:
        float32 ``[H, W]`` in ``[0, 1]``; bright = dense (bone white) for MONOCHROME1 and
        MONOCHROME2 alike.

    Raises:
        CorruptImage: Missing, truncated or undecodable pixel data, or not grayscale.
        ImageTooLarge: Past ``limits``.
    """
    stored = _stored_pixels(ds, limits)
    try:
        if "VOILUTSequence" in ds and "WindowCenter" not in ds:
            display = _voi_lut_sequence(stored, ds)
        else:
            values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
            windowed = _window(values, ds)
            display = _percentile_window(values) if windowed is None else windowed
    except DECODE_ERRORS as exc:
        raise CorruptImage(f"grayscale transform failed: {type(exc).__name__}") from exc
    if str(ds.PhotometricInterpretation) == "MONOCHROME1":
        display = 1.0 - display
    return np.ascontiguousarray(display, dtype=np.float32)


def grayscale_dataset(pixels: npt.NDArray[np.uint8] | npt.NDArray[np.uint16]) -> Dataset:
    """A dataset holding ``pixels`` (``[H, W]``, 8 or 16 bits) as the stored values of a
    MONOCHROME2 image (PS3.3 C.7.6.3) without Modality or VOI LUT: bright = dense, no window."""
    bits = 8 if pixels.dtype == np.uint8 else 16
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8 if bits == 8 else "<u2").tobytes()
    ds["PixelData"].VR = "OB" if bits == 8 else "OW"
    return ds


def decode_png(path: Path, limits: InputLimits = DEFAULT_LIMITS) -> FloatImage:
    """Decode a grayscale PNG film (8 or 16 bits; colour is converted to gray) through
    :func:`decode_radiograph`, as a MONOCHROME2 image without display window (module
    docstring).

    Raises:
        CorruptImage: Not a readable PNG, not a film's shape (:func:`check_film_shape`).
        ImageTooLarge: Past ``limits``.
    """
    try:
        with Image.open(path) as pic:
            check_image_size(pic.height, pic.width, 0, limits)
            wide = pic.mode.startswith("I")  # 16-bit gray ("I;16", "I;16B", or "I")
            arr = np.asarray(pic if wide else pic.convert("L"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptImage(f"not a readable PNG: {type(exc).__name__}") from exc
    if wide:
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 0xFFFF):
            raise CorruptImage("PNG gray values outside 16 bits")
        arr = arr.astype(np.uint16)
    check_film_shape(arr.shape)
    return decode_radiograph(grayscale_dataset(arr), limits)


def pixel_spacing_mm(ds: Dataset) -> tuple[float, float] | None:
    """Pixel Spacing (PS3.3 10.7.1.3) or Imager Pixel Spacing, ``None`` when absent or
    degenerate (zero or negative, as in the NEMA WG04 files). Nothing here depends on it."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            row, col = float(value[0]), float(value[1])
        except (TypeError, ValueError, IndexError):
            continue
        if row > 0 and col > 0 and np.isfinite(row) and np.isfinite(col):
            return row, col
    return None

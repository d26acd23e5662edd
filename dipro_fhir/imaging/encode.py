"""Encode a display image as a valid DICOM CR/DX radiograph (synthetic cohorts, tests).

The object carries the attributes the pipeline reads (PS3.3 C.7.1.1 Patient, C.7.2.1
General Study, C.7.3.1 General Series, C.8.11.1 DX Series / C.8.1.1 CR Series ViewPosition,
C.7.6.1 General Image, C.7.6.3 Image Pixel, C.11.2 VOI LUT) and a Part 10 header: a
128-byte preamble, ``DICM`` and File Meta Information (PS3.10 7.1). pydicom 3 writes no
preamble unless the dataset has one, and Orthanc then serves back files pydicom refuses.

Pixels: ``round(image * (2**bits_stored - 1))`` for MONOCHROME2, inverted for MONOCHROME1,
with a VOI window (centre ``2**(bits-1)``, width ``2**bits``) that maps the stored range
linearly onto the display range, so both photometrics decode to the same image; or, with
``window=False``, no VOI window (the decoder's percentile window then applies, as to a PNG
film: :func:`~dipro_fhir.imaging.decode.decode_png`). JPEG 2000
lossless (PS3.5 A.4.4, ``1.2.840.10008.1.2.4.90``) is encoded by pylibjpeg-openjpeg.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
)

#: Detector width assumed for Pixel Spacing: a 43 cm cassette (PS3.3 C.8.11.4 Imager
#: Pixel Spacing).
DETECTOR_MM = 430.0
_ORIENTATION = {"PA": ["L", "F"], "AP": ["L", "F"], "LATERAL": ["P", "F"], "LL": ["P", "F"]}


def _pixels(
    image: npt.NDArray[np.floating], bits_stored: int, photometric: str
) -> npt.NDArray[np.uint16]:
    if image.ndim != 2 or not np.isfinite(image).all():
        raise ValueError("image must be a finite 2-D array")
    top = (1 << bits_stored) - 1
    stored = np.asarray(np.rint(np.clip(image, 0.0, 1.0) * top), dtype=np.uint16)
    if photometric == "MONOCHROME1":
        stored = np.asarray(top - stored, dtype=np.uint16)
    return stored


def _patient_study(ds: Dataset, **kw: object) -> None:
    acquired = kw["acquired"]
    assert isinstance(acquired, datetime)
    ds.PatientID = kw["patient_id"]
    ds.PatientName = kw["patient_name"]
    birth = kw["birth_date"]
    ds.PatientBirthDate = birth.strftime("%Y%m%d") if isinstance(birth, date) else ""
    ds.PatientSex = kw["sex"]
    ds.StudyInstanceUID = kw["study_uid"]
    ds.SeriesInstanceUID = kw["series_uid"]
    ds.AccessionNumber = kw["accession_number"] or ""
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    day, clock = acquired.strftime("%Y%m%d"), acquired.strftime("%H%M%S")
    for prefix in ("Study", "Series", "Content", "Acquisition"):
        setattr(ds, f"{prefix}Date", day)
        setattr(ds, f"{prefix}Time", clock)
    ds.AcquisitionDateTime = acquired.strftime("%Y%m%d%H%M%S.%f") + _offset(acquired)
    if acquired.utcoffset() is not None:
        ds.TimezoneOffsetFromUTC = _offset(acquired)


def _offset(moment: datetime) -> str:
    """``&ZZXX`` suffix of a DT value (PS3.5 6.2), empty for a naive datetime."""
    return moment.strftime("%z") if moment.utcoffset() is not None else ""


def to_dicom(
    image: npt.NDArray[np.floating],
    *,
    patient_id: str,
    patient_name: str,
    birth_date: date | None,
    sex: str,
    study_uid: str,
    series_uid: str,
    instance_uid: str,
    acquired: datetime,
    modality: str = "CR",
    view_position: str = "PA",
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    compress_j2k: bool = False,
    accession_number: str | None = None,
    window: bool = True,
) -> Dataset:
    """Build a Part 10 CR or DX (for presentation) object from a display image.

    Args:
        image: float ``[H, W]`` in ``[0, 1]``, bright = dense.
        patient_id: PatientID (0010,0020).
        patient_name: PatientName, DICOM PN form (``Family^Given``).
        birth_date: PatientBirthDate, or ``None`` (empty).
        sex: PatientSex: ``M``, ``F``, ``O`` or empty.
        study_uid: StudyInstanceUID.
        series_uid: SeriesInstanceUID.
        instance_uid: SOPInstanceUID.
        acquired: Acquisition time; a timezone-aware value also sets TimezoneOffsetFromUTC.
        modality: ``CR`` or ``DX``.
        view_position: ``PA``, ``AP``, ``LATERAL`` or ``LL`` (PS3.3 C.8.11.5.1.1... C.8.1.1).
        bits_stored: 12 or 16 (Bits Allocated is always 16).
        photometric: ``MONOCHROME1`` (bright = low) or ``MONOCHROME2``.
        compress_j2k: Encode as JPEG 2000 lossless.
        accession_number: AccessionNumber, or ``None`` (empty).
        window: Write the linear VOI window over the stored range; without it the film
            decodes as a PNG of the same pixels does.

    Returns:
        A dataset with preamble and file meta, ready for :func:`write_dicom` or STOW-RS.

    Raises:
        ValueError: Unsupported modality, view, bit depth or photometric, or a bad image.
    """
    if modality not in ("CR", "DX") or view_position not in _ORIENTATION:
        raise ValueError(f"unsupported modality/view {modality}/{view_position}")
    if bits_stored not in (12, 16) or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"unsupported bits/photometric {bits_stored}/{photometric}")
    sop_class = (
        ComputedRadiographyImageStorage
        if modality == "CR"
        else DigitalXRayImageStorageForPresentation
    )
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = UID(instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, instance_uid
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    _patient_study(
        ds,
        patient_id=patient_id,
        patient_name=patient_name,
        birth_date=birth_date,
        sex=sex,
        study_uid=study_uid,
        series_uid=series_uid,
        accession_number=accession_number,
        acquired=acquired,
    )
    ds.Modality, ds.ViewPosition, ds.BodyPartExamined = modality, view_position, "CHEST"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.SeriesDescription = f"CHEST {view_position}"
    ds.Manufacturer = "dipro-fhir synthetic"
    ds.PatientOrientation = _ORIENTATION[view_position]
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    _image_pixel(ds, image, bits_stored, photometric, window)
    if compress_j2k:
        # Lossless: the image is the same, so it keeps its SOP Instance UID (PS3.3 C.12.1.1.1).
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    return ds


def _image_pixel(
    ds: Dataset,
    image: npt.NDArray[np.floating],
    bits_stored: int,
    photometric: str,
    window: bool = True,
) -> None:
    """Image Pixel (PS3.3 C.7.6.3), Modality LUT identity and the VOI window (C.11.2)."""
    pixels = _pixels(image, bits_stored, photometric)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    spacing = round(DETECTOR_MM / max(pixels.shape), 4)
    ds.PixelSpacing = ds.ImagerPixelSpacing = [spacing, spacing]
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    if window:
        ds.WindowCenter, ds.WindowWidth = 1 << (bits_stored - 1), 1 << bits_stored
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW"


def write_dicom(ds: Dataset, path: Path | str) -> Path:
    """Write ``ds`` as a Part 10 file atomically (temporary file, then rename).

    A missing preamble is added, so every file written here starts with ``DICM`` at 128.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if ds.preamble is None:
        ds.preamble = b"\x00" * 128
    tmp = target.with_name(f".{target.name}.tmp")
    ds.save_as(tmp, enforce_file_format=True)
    os.replace(tmp, target)
    return target

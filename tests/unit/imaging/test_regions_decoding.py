"""``dipro-fhir regions`` decodes a film as the pipeline does (issue 23, item 10): a PNG is a
MONOCHROME2 image without display window, so the same film as PNG and as DICOM without a
window gives the same image, the same boxes and the same QC verdicts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from dipro_fhir.imaging.atlas import SHIPPED_ATLAS, AtlasRegionLocator
from dipro_fhir.imaging.decode import decode_radiograph
from dipro_fhir.imaging.encode import to_dicom
from dipro_fhir.imaging.evaluate import evaluate_folder, read_film

DATA = Path(__file__).parents[2] / "data" / "dicom"
SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
UNCOMPRESSED = SHARED / "dicom-chest-cr" / "RG1_UNCR.dcm"
DEVELOPMENT_FILM = SHARED / "cxr-hannover-dev" / "png" / "00870a9c.png"


def _without_window(source: Path, target: Path) -> Path:
    ds = pydicom.dcmread(source)
    del ds.WindowCenter, ds.WindowWidth
    ds.save_as(target)
    return target


def _as_png(source: Path, target: Path) -> Path:
    """The film's stored values as a 16-bit PNG, display-oriented (MONOCHROME1 inverted)."""
    ds = pydicom.dcmread(source)
    top = (1 << int(ds.BitsStored)) - 1
    stored = ds.pixel_array.astype(np.int64)
    display = top - stored if ds.PhotometricInterpretation == "MONOCHROME1" else stored
    Image.fromarray(display.astype(np.uint16)).save(target)
    return target


def test_a_png_is_decoded_like_the_same_film_as_dicom_without_a_window(tmp_path: Path) -> None:
    png = _as_png(DATA / "RG1_J2KR.dcm", tmp_path / "film.png")
    dicom = _without_window(DATA / "RG1_J2KR.dcm", tmp_path / "film.dcm")
    from_png = read_film(png)
    assert np.array_equal(from_png, decode_radiograph(pydicom.dcmread(dicom)))
    assert np.array_equal(from_png, read_film(dicom))
    # Not a division by the bit depth: the window is the pipeline's percentile window.
    assert from_png.min() == 0.0
    assert from_png.max() == 1.0


@pytest.mark.skipif(not DEVELOPMENT_FILM.is_file(), reason=f"no {DEVELOPMENT_FILM}")
def test_an_8_bit_png_is_decoded_like_the_film_wrapped_as_dicom_without_a_window() -> None:
    # As scripts/hannover_cohort.py wraps the development films for the pipeline.
    pixels = np.asarray(Image.open(DEVELOPMENT_FILM).convert("L"), dtype=np.float64)
    ds = to_dicom(
        pixels / 255.0,
        patient_id="p",
        patient_name="P^Q",
        birth_date=None,
        sex="F",
        study_uid="1.2.3",
        series_uid="1.2.3.1",
        instance_uid="1.2.3.1.1",
        acquired=datetime(2020, 4, 1, tzinfo=UTC),
        bits_stored=16,
        window=False,
    )
    assert "WindowCenter" not in ds
    assert np.array_equal(read_film(DEVELOPMENT_FILM), decode_radiograph(ds))


def test_regions_gives_the_same_boxes_and_qc_for_the_film_as_png_and_as_dicom(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "films"
    folder.mkdir()
    _as_png(DATA / "RG1_J2KR.dcm", folder / "png.png")
    _without_window(DATA / "RG1_J2KR.dcm", folder / "j2k_lossless.dcm")
    if UNCOMPRESSED.is_file():
        _without_window(UNCOMPRESSED, folder / "uncompressed.dcm")
    records = evaluate_folder(folder, AtlasRegionLocator.load(SHIPPED_ATLAS)).records
    assert len(records) == (3 if UNCOMPRESSED.is_file() else 2)
    first = records[0]
    assert first["method"] == "atlas"
    for other in records[1:]:
        assert other["boxes"] == first["boxes"], other["file"]
        assert other["qc"] == first["qc"], other["file"]
        assert other["match"] == first["match"]

"""Decoding real and synthetic radiographs into display images."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dipro_fhir.imaging.decode import (
    CorruptImage,
    check_film_shape,
    decode_radiograph,
    pixel_spacing_mm,
)
from dipro_fhir.synth.radiograph import random_anatomy, render_chest, to_dicom

DATA = Path(__file__).parents[2] / "data" / "dicom"
# The 7.2 MB uncompressed original is not committed; it lives in the project's shared data
# folder beside the checkout (where CI and developers have it).
SHARED_UNCOMPRESSED = next(
    (
        p
        for p in (
            Path(__file__).parents[3].parent / "shared/data/dicom-chest-cr/RG1_UNCR.dcm",
            Path("/work/shared/data/dicom-chest-cr/RG1_UNCR.dcm"),
        )
        if p.exists()
    ),
    Path("shared/data/dicom-chest-cr/RG1_UNCR.dcm"),
)


@pytest.fixture(scope="module")
def real_cr() -> np.ndarray:
    return decode_radiograph(pydicom.dcmread(DATA / "RG1_J2KR.dcm"))


def _synthetic(photometric: str, bits: int = 12) -> pydicom.Dataset:
    image = render_chest(3, random_anatomy(np.random.default_rng(3)), {}, size=(256, 256))
    return to_dicom(
        image,
        patient_id="p",
        patient_name="P^Q",
        birth_date=None,
        sex="M",
        study_uid="1.2.3",
        series_uid="1.2.3.1",
        instance_uid="1.2.3.1.1",
        acquired=datetime(2025, 1, 1, tzinfo=UTC),
        bits_stored=bits,
        photometric=photometric,
    )


def test_real_j2k_cr_decodes_to_unit_float_image(real_cr: np.ndarray) -> None:
    assert real_cr.shape == (1955, 1841)
    assert real_cr.dtype == np.float32
    assert 0.0 <= float(real_cr.min()) < 0.3
    assert 0.7 < float(real_cr.max()) <= 1.0


def test_monochrome1_film_is_shown_with_dense_structures_bright(real_cr: np.ndarray) -> None:
    h, w = real_cr.shape
    rows = slice(int(0.25 * h), int(0.55 * h))
    spine = real_cr[rows, int(0.47 * w) : int(0.53 * w)].mean()
    lungs = np.mean(
        [
            real_cr[rows, int(0.2 * w) : int(0.3 * w)].mean(),
            real_cr[rows, int(0.68 * w) : int(0.78 * w)].mean(),
        ]
    )
    assert spine > lungs + 0.1


@pytest.mark.skipif(not SHARED_UNCOMPRESSED.exists(), reason="uncompressed original not present")
def test_j2k_lossless_decodes_bit_identical_to_uncompressed(real_cr: np.ndarray) -> None:
    raw = pydicom.dcmread(SHARED_UNCOMPRESSED)
    j2k = pydicom.dcmread(DATA / "RG1_J2KR.dcm")
    np.testing.assert_array_equal(j2k.pixel_array, raw.pixel_array)
    np.testing.assert_array_equal(real_cr, decode_radiograph(raw))


def test_j2k_lossy_stays_close_to_lossless(real_cr: np.ndarray) -> None:
    lossy = decode_radiograph(pydicom.dcmread(DATA / "RG1_J2KI.dcm"))
    diff = np.abs(lossy - real_cr)
    assert float(diff.mean()) < 0.01
    assert float(diff.max()) < 0.1


def test_monochrome1_synthetic_decodes_equal_to_its_monochrome2_twin() -> None:
    m1 = decode_radiograph(_synthetic("MONOCHROME1"))
    m2 = decode_radiograph(_synthetic("MONOCHROME2"))
    np.testing.assert_allclose(m1, m2, atol=1e-6)


def test_12_and_16_bit_encodings_decode_to_the_same_image() -> None:
    a = decode_radiograph(_synthetic("MONOCHROME2", 12))
    b = decode_radiograph(_synthetic("MONOCHROME2", 16))
    assert float(np.abs(a - b).max()) <= 1.0 / 4095 + 1e-6


def test_missing_window_falls_back_to_percentile_window() -> None:
    ds = _synthetic("MONOCHROME2")
    del ds.WindowCenter, ds.WindowWidth
    image = decode_radiograph(ds)
    assert float(image.min()) == 0.0
    assert float(image.max()) == 1.0


def test_degenerate_pixel_spacing_is_reported_as_unknown() -> None:
    ds = pydicom.dcmread(DATA / "RG1_J2KR.dcm", stop_before_pixels=True)
    assert [float(v) for v in ds.PixelSpacing] == [0.0, 0.0]
    assert pixel_spacing_mm(ds) is None
    assert pixel_spacing_mm(_synthetic("MONOCHROME2")) == pytest.approx((1.6797, 1.6797))


def test_truncated_pixel_data_raises_corrupt_image() -> None:
    ds = _synthetic("MONOCHROME2")
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    with pytest.raises(CorruptImage):
        decode_radiograph(ds)


def test_garbage_j2k_codestream_raises_corrupt_image() -> None:
    ds = pydicom.dcmread(DATA / "RG1_J2KI.dcm")
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(range(256)) * 8])
    with pytest.raises(CorruptImage):
        decode_radiograph(ds)


def test_colour_image_is_refused() -> None:
    ds = _synthetic("MONOCHROME2")
    ds.PhotometricInterpretation = "RGB"
    with pytest.raises(CorruptImage, match="Photometric"):
        decode_radiograph(ds)


@pytest.mark.parametrize(
    ("rows", "columns"), [(12, 400), (16, 2048), (2048, 400)], ids=["short", "line", "strip"]
)
def test_an_image_that_cannot_be_a_film_is_refused(rows: int, columns: int) -> None:
    ds = _synthetic("MONOCHROME2")
    pixels = np.zeros((rows, columns), dtype=np.uint16)
    ds.Rows, ds.Columns, ds.PixelData = rows, columns, pixels.tobytes()
    with pytest.raises(CorruptImage, match="is not a film"):
        decode_radiograph(ds)


def test_the_film_shape_rule_keeps_every_plausible_film() -> None:
    for shape in ((16, 16), (2500, 2048), (1024, 4096), (4096, 1024)):
        check_film_shape(shape)
    with pytest.raises(CorruptImage):
        check_film_shape((512, 512, 3))

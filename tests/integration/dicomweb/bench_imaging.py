"""Timings of the image path (not a test): decode, locate+crop, WADO retrieve of the real CR.

Run: PYTHONPATH=. .venv/bin/python tests/integration/dicomweb/bench_imaging.py
Needs /work/shared/data/dicom-chest-cr/ and the Orthanc packages.
"""

import statistics
import tempfile
import time
from pathlib import Path

import pydicom

from dipro_fhir.dicomweb.client import DicomWebClient
from dipro_fhir.imaging.crops import crop_regions
from dipro_fhir.imaging.decode import decode_radiograph
from dipro_fhir.imaging.regions import GeometricRegionLocator
from dipro_fhir.sandbox.servers.orthanc import start_orthanc as _start
from dipro_fhir.sandbox.servers.orthanc import stop_orthanc as _stop

D = "/work/shared/data/dicom-chest-cr/"


def med(fn, n=5):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ts), out


for f in ("RG1_UNCR.dcm", "RG1_J2KR.dcm"):
    ds = pydicom.dcmread(D + f)
    ms, img = med(lambda f=f: decode_radiograph(pydicom.dcmread(D + f)))
    print(f"read+decode {f}: {ms:.0f} ms")
loc = GeometricRegionLocator()
ms, _ = med(lambda: crop_regions(img, loc.locate(img), 224))
print(f"locate+crop 1955x1841 -> 10x224x224: {ms:.0f} ms")
work = Path(tempfile.mkdtemp())
srv = _start(work, with_auth=False)
try:
    c = DicomWebClient(srv.dicomweb_url)
    for f in ("RG1_UNCR.dcm", "RG1_J2KR.dcm"):
        srv.reset()
        ds = pydicom.dcmread(D + f)
        c.store([ds])
        ms, got = med(
            lambda ds=ds: c.retrieve_instance(
                ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
            )
        )
        print(f"WADO retrieve_instance {f}: {ms:.0f} ms")
finally:
    _stop(srv, work)

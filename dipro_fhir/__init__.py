"""dipro-fhir: nightly DiPro scoring from FHIR R4 and DICOMweb.

The package is split by concept: ``fhir`` and ``dicomweb`` talk to servers, ``imaging``
turns DICOM pixels into region crops, ``mapping`` (pure, no I/O) turns resources into
:class:`~dipro_fhir.timeline.PatientTimeline`, ``scoring`` runs the network from the
``dipro`` package, ``writeback`` and ``store`` publish results, and ``pipeline`` holds the
task bodies that the Airflow DAGs and the CLI call.
"""

__version__ = "0.1.0"

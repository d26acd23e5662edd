"""dipro-fhir: nightly DiPro scoring from FHIR R4 and DICOMweb.

The package is a house of floors (``docs/architecture.md``): ``core`` (the shared vocabulary)
at the bottom; each stage's I/O in its own room above it (``mapping``, pure; ``fhir``,
``dicomweb``, ``imaging``, ``store``, ``scoring``, ``writeback``); ``run`` puts the stages
together (plan, extract, score, write back, finalize: the task bodies the Airflow DAGs and
the CLI call) beside ``synth``; ``evaluation``, ``training`` and ``reports`` above; ``cli``
and ``sandbox`` on top. A module imports only from its own room or the floors below.
"""

__version__ = "0.1.0"

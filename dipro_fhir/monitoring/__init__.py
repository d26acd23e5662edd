"""Knowing when the model stops working (issue 25): the outcomes of scored stays gathered
from FHIR, performance over nights per model version and window, drift of the inputs before
labels arrive, site thresholds that fail the ``dipro_monitor`` DAG's check, and the surfaces
(``dipro-fhir monitor``'s summary and HTML report, figures, OpenMetrics text).

It reads the results database and FHIR, measures with the evaluation room's figures, and is
read by the CLI and the Airflow UI page; nothing below it reads an outcome back.
"""

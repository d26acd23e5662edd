"""The local sandbox of the whole stack, part of the product: HAPI FHIR, Orthanc, PostgreSQL
and Airflow 3 as processes on loopback, a synthetic cohort loaded, the DAGs ready
(``dipro-fhir-sandbox up``; in a checkout ``bash scripts/sandbox.sh up``).

``main`` holds the commands; ``core`` (configuration, state, processes), ``services``
(PostgreSQL, HAPI, Orthanc), ``cohort`` (checkpoint, synthetic cohort) and
``airflow_services`` the steps; ``servers`` the launchers of the servers, which the tests'
fixtures use too. It runs from an installed package: no test tree, no checkout needed.
"""

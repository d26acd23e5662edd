"""Launchers of the real servers on loopback, shared by the sandbox, the tests' fixtures and the
benchmarks: HAPI FHIR (built from ``hapi/`` with Maven), Orthanc, the machine's PostgreSQL."""

"""Pure mapping from FHIR R4 JSON to DiPro timelines: no I/O, no clients.

Inputs are raw FHIR JSON dicts; outputs are the types of :mod:`dipro_fhir.core.timeline`. Data
problems become :class:`~dipro_fhir.core.timeline.MappingIssue` records, never exceptions.
"""

"""Pure mapping from FHIR R4 JSON to DiPro timelines: no I/O, no clients.

Inputs are raw FHIR JSON dicts; outputs are the types of :mod:`dipro_fhir.timeline`. Data
problems become :class:`~dipro_fhir.timeline.MappingIssue` records, never exceptions.
"""

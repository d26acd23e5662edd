"""The ``dipro-fhir`` command line: ``main`` parses, the command modules do the work."""

from dipro_fhir.cli.main import main

__all__ = ["main"]

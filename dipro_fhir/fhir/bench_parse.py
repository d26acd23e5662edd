"""Measure how fast Observations validate with ``fhir.resources`` versus JSON parsing alone.

Run ``python -m dipro_fhir.fhir.bench_parse [--count N]``. It builds N synthetic vital-sign
Observations as NDJSON text in memory, then times (1) ``json.loads`` per line and (2)
``json.loads`` plus :func:`~dipro_fhir.fhir.resources.validate_resource`, and prints
Observations per second for each, which sizes the cost of validating at the boundary.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dipro_fhir.fhir.resources import validate_resource


@dataclass(frozen=True, slots=True)
class ParseRates:
    """Observations per second of each way of reading them."""

    count: int
    json_only_per_s: float
    validated_per_s: float


def synthetic_observation(index: int) -> dict[str, Any]:
    """One heart-rate Observation (LOINC 8867-4) like a monitor feed produces."""
    minute = index % 60
    return {
        "resourceType": "Observation",
        "id": f"bench-{index}",
        "meta": {"versionId": "1", "lastUpdated": "2024-03-01T12:00:00Z"},
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]
        },
        "subject": {"reference": f"Patient/p{index % 500}"},
        "effectiveDateTime": f"2024-03-01T10:{minute:02d}:00Z",
        "valueQuantity": {
            "value": 60 + index % 40,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def measure(count: int = 20_000) -> ParseRates:
    """Time JSON parsing alone and JSON parsing plus validation over ``count`` lines."""
    lines = [json.dumps(synthetic_observation(i)) for i in range(count)]

    def json_only(line: str) -> None:
        json.loads(line)

    def validated(line: str) -> None:
        validate_resource(json.loads(line))

    return ParseRates(count, _rate(lines, json_only), _rate(lines, validated))


def _rate(lines: list[str], step: Callable[[str], None]) -> float:
    started = time.perf_counter()
    for line in lines:
        step(line)
    return len(lines) / (time.perf_counter() - started)


def main() -> None:
    """Command-line entry: print the two rates and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    rates = measure(parser.parse_args().count)
    print(f"observations: {rates.count}")  # noqa: T201 - a command-line report
    print(f"json.loads only:            {rates.json_only_per_s:12,.0f} /s")  # noqa: T201
    print(f"json.loads + fhir.resources: {rates.validated_per_s:11,.0f} /s")  # noqa: T201
    ratio = rates.json_only_per_s / rates.validated_per_s
    print(f"validation costs {ratio:.1f}x json parsing")  # noqa: T201


if __name__ == "__main__":
    main()

"""How often ``dipro-fhir codes`` suggests the right variable, against a hand-written truth table.

For each dataset it runs the ``codes`` command's counting (:func:`count_codes`) and compares
every candidate it offers for an unmapped code with ``tests/data/codes-truth.csv`` (written
down before the ranking was changed, so that it is not tuned to it: per code, the variable it
measures, or nothing). A suggestion is right when it names that variable. It prints:

* **suggestions right**: right / offered (the precision);
* **first right**: of the codes that measure a variable and still need a map entry (no map
  gives them a variable, directly or through another coding of the same Observation), how
  many have that variable as their first candidate (the recall a person sees);
* **shown as read through another coding**: second codings beside a mapped coding, which the
  command shows with that coding's variable instead of suggestions, and how many are right;
* each wrong suggestion, and each code that needs a map entry but is not offered its variable.

Datasets: every Observation of the HL7 R4 examples in ``../shared/data/fhir-r4-examples``
(top level, in Bundles and ``contained``) with the shipped maps; the MIMIC-like fixture
``tests/data/mimic-codes`` with the shipped maps, and with the LOINC map only (a site writing
its MIMIC map from scratch).

    .venv/bin/python scripts/codes_precision.py [--hl7 ../shared/data/fhir-r4-examples]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dipro_fhir.fhir import NdjsonFhirSource  # noqa: E402
from dipro_fhir.mapping.code_maps import CodeMaps, builtin_code_maps, default_code_maps  # noqa: E402
from dipro_fhir.reports.codes_report import count_codes  # noqa: E402

TRUTH = ROOT / "tests" / "data" / "codes-truth.csv"
MIMIC = ROOT / "tests" / "data" / "mimic-codes"


def _observations(resource: Any) -> Iterator[Mapping[str, Any]]:
    if not isinstance(resource, dict):
        return
    if resource.get("resourceType") == "Observation":
        yield resource
    for entry in resource.get("entry") or []:
        if isinstance(entry, dict):
            yield from _observations(entry.get("resource"))
    for contained in resource.get("contained") or []:
        yield from _observations(contained)


def hl7_observations(folder: Path) -> list[Mapping[str, Any]]:
    """Every Observation of the HL7 example files in ``folder`` (``*.json``)."""
    return [
        o
        for path in sorted(folder.glob("*.json"))
        for o in _observations(json.loads(path.read_text()))
    ]


def read_truth(dataset: str) -> dict[tuple[str, str], str]:
    """``(system, code) -> variable`` ("" for none) of one dataset of the truth table."""
    with TRUTH.open(newline="") as f:
        return {
            (row["system"], row["code"]): row["variable"]
            for row in csv.DictReader(f)
            if row["dataset"] == dataset
        }


def measure(
    name: str, observations: Any, maps: CodeMaps, truth: Mapping[tuple[str, str], str]
) -> bool:
    """Print one dataset's figures; ``False`` when a code is missing from the truth table."""
    offered = right = need = first_right = through = through_right = 0
    problems: list[str] = []
    missing: list[str] = []
    result = count_codes(observations, maps)
    for row in getattr(result, "rows", result):  # a list before the CodeInventory
        if row.variable is not None:
            continue
        key = (row.system, row.code)
        if key not in truth:
            missing.append(row.token)
            continue
        expected = truth[key]
        if getattr(row, "through", None) is not None:
            through += 1
            through_right += row.through == expected
        suggested = [c.variable for c in row.candidates]
        offered += len(suggested)
        right += sum(v == expected for v in suggested)
        problems += [
            f"  wrong: {row.token} {row.display[:40]!r} -> {v}" for v in suggested if v != expected
        ]
        if expected and getattr(row, "through", None) is None:
            need += 1
            first_right += bool(suggested) and suggested[0] == expected
            if expected not in suggested:
                problems.append(f"  missed: {row.token} {row.display[:40]!r} (is {expected})")
    share = f"{100 * right / offered:.0f} %" if offered else "-"
    print(
        f"{name}\n  suggestions right: {right} of {offered} ({share}); "
        f"first candidate right: {first_right} of {need} codes that need a map entry"
    )
    if through:
        print(f"  shown as read through another coding: {through_right} of {through} right")
    for line in problems:
        print(line)
    for token in missing:
        print(f"  NOT IN THE TRUTH TABLE: {token}")
    return not missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--hl7", type=Path, default=ROOT.parent / "shared" / "data" / "fhir-r4-examples"
    )
    args = parser.parse_args()
    complete = [
        measure(
            "HL7 R4 examples, shipped maps",
            hl7_observations(args.hl7),
            default_code_maps(),
            read_truth("hl7"),
        ),
        measure(
            "MIMIC-like fixture, shipped maps",
            NdjsonFhirSource(MIMIC).scan_observations(),
            default_code_maps(),
            read_truth("mimic"),
        ),
        measure(
            "MIMIC-like fixture, LOINC map only",
            NdjsonFhirSource(MIMIC).scan_observations(),
            builtin_code_maps(("loinc",)),
            read_truth("mimic"),
        ),
    ]
    return 0 if all(complete) else 1


if __name__ == "__main__":
    raise SystemExit(main())

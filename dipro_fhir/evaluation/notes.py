"""What an evaluation can and cannot show, said in words next to its figures.

A governance group reads "AUROC 0.81" as "the model works here" unless the report says that
the interval runs from 0.45 to 1.0 because the set holds three deaths. These notes are
derived from the record itself (counts, intervals, comparisons), so they hold for any site.
"""

from __future__ import annotations

from typing import Any, Final

#: Fewer patients than this in a subgroup: its figures are too noisy to read.
MIN_SUBGROUP: Final[int] = 30
#: Fewer outcome events than this: discrimination and calibration cannot be shown.
MIN_EVENTS: Final[int] = 10


def _figure(record: dict[str, Any], model: str, task: str, name: str) -> dict[str, Any] | None:
    found = record["models"].get(model, {}).get(task, {}).get(name)
    return found if isinstance(found, dict) else None


def _fmt(figure: dict[str, Any] | None) -> str:
    if figure is None or figure.get("value") is None:
        return "n/a"
    low, high = figure.get("low"), figure.get("high")
    interval = "" if low is None or high is None else f" ({low:.3f}-{high:.3f})"
    return f"{figure['value']:.3f}{interval}"


def evaluation_notes(record: dict[str, Any]) -> list[str]:
    """Plain-language notes on ``record`` (an ``evaluation.json`` content)."""
    notes: list[str] = []
    patients = record["patients"]
    notes.append(
        f"{patients['examples']} of {patients['patients']} patients gave an example (a finished "
        "stay of at least 48 hours, read as of hour 48)"
        + (f"; skipped: {patients['skipped']}" if patients["skipped"] else "")
        + "."
    )
    intended = record.get("checkpoint", {}).get("intended_use")
    if intended:
        notes.append(f"The checkpoint's intended use: {intended}")
    notes += _mortality_notes(record)
    notes += _task_notes(record)
    small = sorted(
        f"{s['attribute']}={s['group']} ({s['patients']})"
        for s in record["subgroups"]
        if s["patients"] < MIN_SUBGROUP
    )
    if small:
        notes.append(
            f"Subgroups under {MIN_SUBGROUP} patients are listed but too small to compare: "
            + ", ".join(small)
            + "."
        )
    return notes


def _mortality_notes(record: dict[str, Any]) -> list[str]:
    mortality = record["models"].get("dipro", {}).get("mortality")
    if mortality is None:
        return ["Mortality is not evaluated: the checkpoint has no mortality head or no labels."]
    notes = []
    deaths, n = mortality["deaths"], mortality["patients"]
    auroc = mortality["auroc"]
    if deaths < MIN_EVENTS or n - deaths < MIN_EVENTS:
        notes.append(
            f"Only {deaths} deaths and {n - deaths} survivors: mortality discrimination and "
            "calibration cannot be shown on these patients (the intervals say how little they "
            "constrain)."
        )
    elif auroc["low"] is not None and auroc["low"] <= 0.5:
        notes.append(
            f"Mortality AUROC {_fmt(auroc)}: the interval includes 0.5, so these patients do "
            "not show that the model discriminates better than chance."
        )
    logistic = _figure(record, "logistic", "mortality", "auroc")
    if logistic is not None and logistic.get("value") is not None and auroc["value"] is not None:
        better = "at least as high as" if auroc["value"] >= logistic["value"] else "below"
        notes.append(
            f"Mortality AUROC: DiPro {_fmt(auroc)} is {better} the logistic regression on EHR "
            f"summaries {_fmt(logistic)}; Brier {_fmt(mortality['brier'])} vs "
            f"{_fmt(_figure(record, 'logistic', 'mortality', 'brier'))}; expected calibration "
            f"error {_fmt(mortality['ece'])}."
        )
    return notes


def _task_notes(record: dict[str, Any]) -> list[str]:
    notes = []
    dipro = record["models"].get("dipro", {})
    if "los" not in dipro:
        notes.append("Length of stay is not evaluated: no head, or no stay with a known length.")
    if "progression" not in dipro:
        notes.append(
            "Progression is not evaluated: no patient has a CXR pair whose later report codes "
            "a comparison finding (sites without coded radiology comparisons cannot validate "
            "this task)."
        )
    else:
        progression = dipro["progression"]
        if progression["labelled_findings"] < 3 * MIN_EVENTS:
            notes.append(
                f"Progression: only {progression['labelled_findings']} labelled findings on "
                f"{progression['patients']} patients; per-finding figures are not meaningful."
            )
    return notes

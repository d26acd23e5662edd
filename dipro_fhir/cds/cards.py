"""CDS Hooks cards of a patient's latest DiPro scores: one card per task, nothing made up.

A card (CDS Hooks 2.0 "Card Attributes") says, for one task:

* ``summary`` (under 140 characters): the model card's first caution when there is one
  ("NOT FOR CLINICAL USE"), the task's headline figure and band, and the score's time with
  its age: a nightly score is hours old when a clinician opens the record, and the data
  after its as-of time are not in it ("as of 02:00 UTC, 7 h ago");
* ``detail`` (GitHub Markdown): the model card's cautions and validation, every outcome
  with its probability and band, the as-of time in full, the EHR-only path, the
  RiskAssessment written for it;
* ``indicator``: ``warning`` for a high band of the headline figure, else ``info``; always
  ``info`` when the model card cautions against use (a demonstration must not raise an
  alarm);
* ``source``: the model, with the task as ``topic``;
* ``links``: the read-only patient view of the DiPro page (``absolute``) and, when
  configured, a SMART app to launch (``smart``).

Headline figures: mortality, the probability of death in hospital; length of stay, the most
likely bin; progression, the finding most likely to worsen. Probabilities and bands are the
stored ones (``scores.probability``, ``scores.risk_level``: the RiskAssessment's
``qualitativeRisk``). A task without a recent score gets no card.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Final

from dipro_fhir.core.model_use import ModelUse
from dipro_fhir.core.scores import outcomes_for
from dipro_fhir.store.latest import TaskScores
from dipro_fhir.store.results import StoredScore
from dipro_fhir.writeback import codes

SUMMARY_LIMIT: Final[int] = 139
TASK_ORDER: Final[tuple[str, ...]] = ("mortality", "progression", "los")
#: Characters that format inline in GitHub Markdown (escaped in text from elsewhere).
_MARKDOWN_SPECIAL: Final[str] = "\\`*_[]<>|~"


@dataclass(frozen=True, slots=True)
class CardLinks:
    """Where a card's links go, for one patient."""

    patient_view_url: str
    smart_launch_url: str | None = None


def outcome_display(task: str, outcome: str) -> str:
    """How an outcome reads to a person (the RiskAssessment's wording)."""
    if task == "mortality":
        return codes.DEATH_TEXT
    if task == "los":
        return codes.LOS_DISPLAY[outcome]
    finding, change = outcome.split(":")
    return f"{codes.FINDING_DISPLAY[finding]}: {codes.CHANGE_CODE[change][1].lower()}"


def age_text(now: datetime, then: datetime) -> str:
    """How long ago ``then`` was: ``45 min``, ``7 h``, ``2 d 3 h``."""
    minutes = max(0, int((now - then).total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h" if hours < 48 else f"{hours // 24} d {hours % 24} h"


def _percent(probability: float) -> str:
    return f"{probability * 100:.0f} %"


def _md(text: str) -> str:
    return "".join(f"\\{c}" if c in _MARKDOWN_SPECIAL else c for c in text)


def _headline(task: str, rows: Sequence[StoredScore]) -> tuple[str, StoredScore]:
    """The task's headline phrase and the row it rests on."""
    if task == "mortality":
        row = rows[0]
        return f"In-hospital mortality risk {row.risk_level} ({_percent(row.probability)})", row
    if task == "los":
        row = max(rows, key=lambda r: r.probability)
        stay = codes.LOS_DISPLAY[row.outcome].removeprefix("Length of stay ")
        return f"Length of stay most likely {stay} ({_percent(row.probability)})", row
    worse = [r for r in rows if r.outcome.endswith(":worsened")]
    row = max(worse or rows, key=lambda r: r.probability)
    finding = codes.FINDING_DISPLAY[row.outcome.split(":")[0]].lower()
    return (
        f"CXR progression: worsening likeliest for {finding} "
        f"({_percent(row.probability)}, {row.risk_level})",
        row,
    )


def _ordered(task: str, scores: Sequence[StoredScore]) -> list[StoredScore]:
    order = {o: i for i, o in enumerate(outcomes_for(task))}
    return sorted(scores, key=lambda s: order.get(s.outcome, len(order)))


def _summary(use: ModelUse, headline: str, when: str) -> str:
    caution = f"{use.cautions[0]}: " if use.cautions else ""
    text = f"{caution}{headline}, {when}"
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


def _shown(row: StoredScore) -> str:
    return f"{row.probability * 100:.1f} % ({row.risk_level or 'band not stated'})"


def _table(task: str, rows: Sequence[StoredScore]) -> list[str]:
    """Every outcome with its probability and band; progression one row per finding."""
    if task != "progression":
        lines = ["| Outcome | Probability (band) |", "|---|---|"]
        lines += [f"| {_md(outcome_display(task, r.outcome))} | {_shown(r)} |" for r in rows]
        return lines
    changes = list(codes.CHANGE_CODE)
    header = " | ".join(codes.CHANGE_CODE[c][1] for c in changes)
    lines = [f"| Finding | {header} |", "|---" * (len(changes) + 1) + "|"]
    by_outcome = {r.outcome: r for r in rows}
    for finding, display in codes.FINDING_DISPLAY.items():
        cells = [by_outcome.get(f"{finding}:{c}") for c in changes]
        shown = " | ".join(_shown(cell) if cell else "not scored" for cell in cells)
        lines.append(f"| {_md(display)} | {shown} |")
    return lines


def _detail(scored: TaskScores, use: ModelUse, as_of_local: str, age: str) -> str:
    """GitHub Markdown: paragraphs apart by blank lines, the table its own block."""
    first = scored.first
    statement = _md(use.statement())
    blocks = [f"**{statement}**" if use.cautions else statement]
    blocks.append("\n".join(_table(scored.task, _ordered(scored.task, scored.scores))))
    blocks.append(
        f"As of {as_of_local} ({age} ago): data recorded after that time are not in this "
        "score. DiPro scores nightly, so a score is hours old when the record is opened."
    )
    if first.path == "ehr_only":
        blocks.append("Scored without CXR pairs (EHR-only path).")
    if first.fhir_resource_id:
        blocks.append(f"FHIR: RiskAssessment/{_md(first.fhir_resource_id)}")
    return "\n\n".join(blocks)


def task_card(
    scored: TaskScores, use: ModelUse, links: CardLinks, now: datetime, timezone: tzinfo
) -> dict[str, Any]:
    """The card of one task's latest scores (module docstring)."""
    first = scored.first
    local = first.as_of.astimezone(timezone)
    same_day = local.date() == now.astimezone(timezone).date()
    short = local.strftime("%H:%M %Z") if same_day else local.strftime("%d %b %H:%M %Z")
    age = age_text(now, first.as_of)
    headline, row = _headline(scored.task, _ordered(scored.task, scored.scores))
    cautious = bool(use.cautions)
    high = row.risk_level == "high" and scored.task != "los"
    card: dict[str, Any] = {
        "summary": _summary(use, headline, f"as of {short}, {age} ago"),
        "detail": _detail(scored, use, local.strftime("%Y-%m-%d %H:%M %Z"), age),
        "indicator": "warning" if high and not cautious else "info",
        "source": {
            "label": f"DiPro {first.model_name} {first.model_version}",
            "topic": {
                "system": codes.TASK_SYSTEM,
                "code": scored.task,
                "display": codes.TASK_DISPLAY[scored.task],
            },
        },
        "links": [
            {
                "label": "DiPro patient view (read-only)",
                "url": links.patient_view_url,
                "type": "absolute",
            }
        ],
    }
    if links.smart_launch_url:
        card["links"].append(
            {"label": "Open in the DiPro app", "url": links.smart_launch_url, "type": "smart"}
        )
    return card


def patient_cards(
    latest: Mapping[str, TaskScores],
    use_of: Callable[[str, str], ModelUse],
    links: CardLinks,
    now: datetime,
    timezone: tzinfo,
) -> list[dict[str, Any]]:
    """One card per task with a recent score, in a fixed task order.

    Args:
        latest: The latest scores per task (:func:`~dipro_fhir.store.latest.latest_scores`).
        use_of: The model use of a model name and version.
        links: The patient's links.
        now: The time the cards are made (for the scores' age).
        timezone: The site's time zone, for the times shown.
    """
    cards = []
    for task in TASK_ORDER:
        if task in latest:
            first = latest[task].first
            use = use_of(first.model_name, first.model_version)
            cards.append(task_card(latest[task], use, links, now, timezone))
    return cards

"""What a night's inputs are compared with: the model card's reference, or the first nights.

* ``card``: the reference written into the checkpoint's model card (``validation.
  input_reference``) at training (held-out patients at the prediction point, hour 48), or
  afterwards by ``dipro-fhir monitor reference`` (finished stays seen as their nights saw
  them), with the distribution of the model's risks. Only the configured checkpoint's card is
  at hand, so only its version can use it. ``auto`` takes only a reference sampled as nights
  see patients: an hour-48 reference differs from any night by construction (a variable
  charted at admission is in every hour-48 window, in few of a night's).
* ``nights``: the first ``reference_nights`` nightly runs of the model version at the site,
  merged. Until that many nights exist, nights are reference, and drift is not judged.

The share of unmapped Observations is always judged against the site's own first nights:
a training cohort's code mix says nothing of a site's (a checkpoint trained elsewhere knows
none of its local codes). Tonight is the version's nightly run of the last day.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from dipro_fhir.core.settings import Settings
from dipro_fhir.core.timeline import RunId
from dipro_fhir.evaluation.reference import read_reference
from dipro_fhir.mapping.profile import InputProfile
from dipro_fhir.monitoring.drift import Inputs, score_histogram
from dipro_fhir.store.monitoring import NightlyRun, run_risks
from dipro_fhir.store.quality import read_data_quality


@dataclass(frozen=True, slots=True)
class Reference:
    """The reference of a night's comparison, and where it came from."""

    source: str
    inputs: Inputs
    runs: tuple[str, ...] = ()
    detail: str = ""

    def describe(self) -> dict[str, Any]:
        """For the night's row and the report (run ids of the reference nights, no patient)."""
        return {
            "source": self.source,
            "runs": list(self.runs),
            "patients": self.inputs.profile.patients,
            "detail": self.detail,
        }


def run_inputs(engine: Engine, run: NightlyRun) -> Inputs:
    """A nightly run's inputs: its profile, its risks, its unmapped codes."""
    quality = read_data_quality(engine, RunId(run.run_id))
    profile = InputProfile.from_json(run.profile)
    return Inputs(
        profile=profile,
        scores=score_histogram(run_risks(engine, run.run_id)),
        unmapped_codes=None if quality is None else dict(quality.unmapped_codes),
        observations=profile.observations,
    )


def merged_inputs(items: Sequence[Inputs]) -> Inputs:
    """Several nights' inputs added up."""
    profile = InputProfile()
    scores = [0] * len(items[0].scores) if items else []
    codes: Counter[str] = Counter()
    for inputs in items:
        profile = profile.merged(inputs.profile)
        scores = [a + b for a, b in zip(scores, inputs.scores, strict=True)]
        codes.update(inputs.unmapped_codes or {})
    known = all(i.unmapped_codes is not None for i in items)
    return Inputs(profile, tuple(scores), dict(codes) if known else None, profile.observations)


def card_reference(validation: Mapping[str, Any], *, any_sampling: bool) -> Inputs | None:
    """The reference a model card's validation record holds, if any: one sampled as nights
    see patients, or (``any_sampling``) one of any sampling."""
    found = read_reference(validation)
    if found is None or not (any_sampling or found.sampling == "nightly"):
        return None
    return Inputs(profile=found.profile, scores=found.scores, unmapped_codes=None)


def choose_reference(
    settings: Settings,
    engine: Engine,
    runs: Sequence[NightlyRun],
    tonight: NightlyRun,
    card_validation: Mapping[str, Any] | None,
) -> Reference | str:
    """The reference of ``tonight`` among the version's nightly ``runs`` (oldest first), or
    why there is none yet."""
    limits = settings.monitor
    first = [r for r in runs if r.profile is not None][: limits.reference_nights]
    ready = len(first) == limits.reference_nights and tonight.run_id not in {
        r.run_id for r in first
    }
    nights = merged_inputs([run_inputs(engine, r) for r in first]) if ready else None
    ids = tuple(r.run_id for r in first) if ready else ()
    card = (
        card_reference(card_validation or {}, any_sampling=limits.reference == "card")
        if limits.reference != "nights"
        else None
    )
    if card is not None:
        codes = None if nights is None else nights.unmapped_codes
        seen = 0 if nights is None else nights.observations
        inputs = Inputs(card.profile, card.scores, codes, seen)
        return Reference("card", inputs, ids, "the model card's held-out patients; unmapped "
                         "codes against the first nights once there are enough")  # fmt: skip
    if limits.reference == "card":
        return "the model card holds no input reference (dipro-fhir monitor reference)"
    if nights is None:
        return (
            f"night {len(first)} of the {limits.reference_nights} reference nights: "
            "drift is judged from the next one on"
        )
    return Reference("nights", nights, ids, f"the first {len(first)} nightly runs")

"""Two consecutive nights over one synthetic cohort, for the feature-cache benchmark and tests.

Night one sees every patient's studies acquired before it. Before night two, a share of the
patients (every ``1/share``-th by cohort index) gets one new chest X-ray, acquired between the
nights: a copy of the patient's latest study (same anatomy and findings, a new render seed)
with new UIDs and ids. Everything else stays as it was, so a second night with a perfect
feature cache computes exactly the new CXRs' crops.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from dipro_fhir.synth.records import SynthStudy
from dipro_fhir.synth.world import SyntheticPatient


@dataclass(frozen=True, slots=True)
class TwoNights:
    """The cohort as night one sees it and what arrives before night two.

    Attributes:
        night_one: Every patient with only the studies acquired before night one.
        new_studies: ``(patient as of night one, new study)`` for the patients who get one.
    """

    night_one: tuple[SyntheticPatient, ...]
    new_studies: tuple[tuple[SyntheticPatient, SynthStudy], ...]

    @property
    def new_frontal_instances(self) -> frozenset[str]:
        """SOP Instance UIDs of the new frontal films (what night two must compute)."""
        return frozenset(study.frontal.instance_uid for _, study in self.new_studies)


def _new_study(study: SynthStudy, acquired: datetime) -> SynthStudy:
    images = tuple(
        replace(
            img,
            series_uid=f"{img.series_uid}.2",
            instance_uid=f"{img.instance_uid}.2",
            render_seed=img.render_seed + 1,
        )
        for img in study.images
    )
    return replace(
        study,
        study_uid=f"{study.study_uid}.2",
        imaging_study_id=f"{study.imaging_study_id}-n2",
        report_id=f"{study.report_id}-n2",
        started=acquired,
        report_issued=acquired + timedelta(hours=1),
        images=images,
    )


def plan_two_nights(
    patients: Iterable[SyntheticPatient], night_one: datetime, *, share: float = 0.25
) -> TwoNights:
    """Split a cohort into night one's view and night two's new CXRs.

    Args:
        patients: The cohort (generated with a reference time at or after night two).
        night_one: The first night's as-of time; the new CXRs are taken 6 h after it.
        share: Fraction of patients with a new CXR (every ``round(1/share)``-th patient that
            has a study before night one). ``0`` gives an unchanged cohort.
    """
    every = round(1 / share) if share > 0 else 0
    views, new = [], []
    for p in patients:
        old = tuple(s for s in p.studies if s.started < night_one)
        view = replace(p, studies=old)
        views.append(view)
        if every and old and p.index % every == 0:
            new.append((view, _new_study(old[-1], night_one + timedelta(hours=6))))
    return TwoNights(tuple(views), tuple(new))

"""Extract and map a whole cohort, measuring it: ``dipro-fhir extract``.

The same per-patient extraction a scoring run uses, streamed patient by patient (timelines are
counted, not kept), with a progress bar and a report of wall time per stage (FHIR search,
images: DICOMweb fetch + decode + locate + crop, mapping), patients per second and peak memory,
and the data-quality summary a run would record (unmapped codes, coverage, unusable images,
problems of no patient).
"""

from __future__ import annotations

import resource
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from dipro_fhir.core.scores import PatientFailure
from dipro_fhir.core.settings import Settings
from dipro_fhir.core.timeline import EncounterId, PatientId
from dipro_fhir.mapping.quality import DataQuality, render_quality, unattributed_quality
from dipro_fhir.run import connections
from dipro_fhir.run.extract import QualityCounter, StageTimer, extract_options, extract_patient


@dataclass(frozen=True, slots=True)
class ExtractReport:
    """What a measured cohort extraction found and how long it took."""

    patients: int
    timelines: int
    failures: Counter[str]
    cxrs: int
    observed_values: int
    issues: Counter[str]
    wall_s: float
    stage_s: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    quality: DataQuality = field(default_factory=DataQuality)

    @property
    def patients_per_s(self) -> float:
        """Patients extracted and mapped per second of wall time."""
        return self.patients / self.wall_s if self.wall_s > 0 else 0.0

    def render(self) -> str:
        """A short human-readable report."""
        orphans = sum(self.quality.unattributed_problems.values())
        lines = [
            f"patients      {self.patients} ({self.timelines} mapped, "
            f"{sum(self.failures.values())} failed {dict(self.failures)}; "
            f"{orphans} data problems of no patient)",
            f"CXRs          {self.cxrs}",
            f"EHR values    {self.observed_values} hourly values observed",
            f"wall time     {self.wall_s:.1f} s  ({self.patients_per_s:.2f} patients/s)",
        ]
        for stage, seconds in sorted(self.stage_s.items()):
            share = seconds / self.wall_s if self.wall_s else 0.0
            lines.append(f"  {stage:10s}  {seconds:7.1f} s  {share:5.0%}")
        lines.append(f"peak memory   {self.peak_rss_mb:.0f} MiB (process RSS)")
        if self.issues:
            common = ", ".join(f"{k} {v}" for k, v in self.issues.most_common(8))
            lines.append(f"data problems {common}")
        lines.append(render_quality(self.quality))
        return "\n".join(lines)


def extract_cohort(
    settings: Settings,
    *,
    as_of: datetime,
    patient_ids: Sequence[str] = (),
    crop_size: int = 32,
    max_cxrs: int = 6,
    limit: int | None = None,
    show_progress: bool = True,
) -> ExtractReport:
    """Extract and map the cohort (given ids, else encounters active at ``as_of``)."""
    from tqdm import tqdm

    from dipro_fhir.run.pipeline import active_cohort

    fhir = connections.fhir_source(settings)
    images = connections.image_source(settings.dicomweb)
    cohort: list[tuple[str, str | None]] = [(p, None) for p in patient_ids]
    if not cohort:
        cohort = active_cohort(settings, fhir, as_of)
    cohort = cohort[:limit]
    options = extract_options(settings, crop_size=crop_size, max_cxrs=max_cxrs)
    timer, quality = StageTimer(), QualityCounter()
    failures: Counter[str] = Counter()
    issues: Counter[str] = Counter()
    timelines = cxrs = values = 0
    started = time.perf_counter()
    for patient_id, encounter_id in tqdm(cohort, unit="patient", disable=not show_progress):
        result = extract_patient(
            fhir,
            images,
            PatientId(patient_id),
            None if encounter_id is None else EncounterId(encounter_id),
            as_of,
            options,
            timer,
            quality,
        )
        if isinstance(result, PatientFailure):
            failures[result.reason] += 1
            continue
        timelines += 1
        cxrs += len(result.images)
        values += int(result.ehr_mask.sum())
        issues.update(i.code for i in result.issues)
    quality.add(unattributed_quality(fhir.take_issues()))
    wall = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ExtractReport(
        patients=len(cohort),
        timelines=timelines,
        failures=failures,
        cxrs=cxrs,
        observed_values=values,
        issues=issues,
        wall_s=wall,
        stage_s=dict(timer.seconds),
        peak_rss_mb=peak_kib / 1024,
        quality=quality.summary,
    )

"""Drift before labels arrive: one night's inputs and scores against the reference.

Each comparison gives a :class:`DriftItem`: tonight's value, the reference's, a statistic and,
where the counts allow, a two-sample test's p-value. An item is *flagged* when the change
reaches the site's threshold (``DIPRO_MONITOR__...``) **and** its test agrees at
``drift_alpha`` shared by all tests of the night (Bonferroni), so a small night's noise never
flags a variable:

* ``coverage`` (per variable): share of patients with a value; two-proportion z-test;
* ``distribution`` (per variable): each patient's median value in the checkpoint's z units,
  population stability index (PSI) over bins merged to hold at least 5 % of the reference,
  and a chi-square test of homogeneity on the same bins;
* ``unmapped-share``: Observations whose code no code map knows, of all Observations met;
* ``new-unmapped-code`` (per code): a code unmapped tonight that no reference night had, on
  ``new_code_observations`` Observations or more (no test: a new code is a fact);
* ``unusable-films``: films quality control refused (or that could not be read), of all
  films met; the item names tonight's commonest reason;
* ``pair-share``: patients scored on the CXR-pair path;
* ``scores``: the distribution of tonight's mortality risks (20 bins over [0, 1]), PSI and
  chi-square.

Pure: counts in, items out.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from dipro.vocab import VARIABLES
from dipro_fhir.core.settings import MonitorSettings
from dipro_fhir.mapping.profile import InputProfile

#: Smallest share of the reference a merged bin holds.
MIN_BIN_SHARE: Final[float] = 0.05
#: Fewest patients (tonight, the reference) a test is run on.
MIN_TONIGHT: Final[int] = 5
MIN_REFERENCE: Final[int] = 20
SCORE_BINS: Final[int] = 20
_EPS: Final[float] = 1e-4


@dataclass(frozen=True, slots=True)
class DriftItem:
    """One comparison of tonight with the reference (see the module docstring)."""

    kind: str
    item: str
    value: float | None
    reference: float | None
    statistic: float | None
    p_value: float | None
    flagged: bool = False


@dataclass(frozen=True, slots=True)
class Inputs:
    """What one side of a comparison holds: a profile, the scores' histogram, and the
    Observations met: unmapped per code and mapped (``None``: not known, no comparison)."""

    profile: InputProfile
    scores: tuple[int, ...]
    unmapped_codes: Mapping[str, int] | None
    observations: int = 0

    @property
    def unmapped(self) -> int:
        """Unmapped Observations, all codes."""
        return sum((self.unmapped_codes or {}).values())


def normal_p(z: float) -> float:
    """Two-sided p-value of a standard normal statistic."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def chi2_p(statistic: float, df: int) -> float:
    """Upper tail of a chi-square distribution (Wilson-Hilferty's normal approximation)."""
    if df <= 0 or statistic <= 0:
        return 1.0
    k = float(df)
    z = ((statistic / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def proportion_test(a: int, n_a: int, b: int, n_b: int) -> tuple[float, float]:
    """Shares ``a/n_a`` minus ``b/n_b`` and the pooled two-proportion z-test's p-value."""
    pa, pb = a / n_a, b / n_b
    pooled = (a + b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    return pa - pb, (normal_p((pa - pb) / se) if se > 0 else 1.0)


def merge_bins(reference: Sequence[int]) -> list[list[int]]:
    """Adjacent bins grouped so each group holds at least :data:`MIN_BIN_SHARE` of the
    reference (empty tails join their neighbours)."""
    total = sum(reference)
    groups: list[list[int]] = [[]]
    mass = 0
    for i, count in enumerate(reference):
        groups[-1].append(i)
        mass += count
        if total and mass / total >= MIN_BIN_SHARE:
            groups.append([])
            mass = 0
    if not groups[-1]:
        groups.pop()
    last = sum(reference[i] for i in groups[-1]) if groups else 0
    if len(groups) > 1 and (not total or last / total < MIN_BIN_SHARE):
        tail = groups.pop()
        groups[-1] += tail
    return groups


def histogram_test(tonight: Sequence[int], reference: Sequence[int]) -> tuple[float, float]:
    """PSI and the chi-square p-value of two histograms over the same bins (merged)."""
    groups = merge_bins(reference)
    now = [sum(tonight[i] for i in g) for g in groups]
    ref = [sum(reference[i] for i in g) for g in groups]
    n_now, n_ref = sum(now), sum(ref)
    shares = [(max(x / n_now, _EPS), max(y / n_ref, _EPS)) for x, y in zip(now, ref, strict=True)]
    psi = sum((a - e) * math.log(a / e) for a, e in shares)
    statistic = 0.0
    for x, y in zip(now, ref, strict=True):
        column = x + y
        for observed, n in ((x, n_now), (y, n_ref)):
            expected = column * n / (n_now + n_ref)
            statistic += (observed - expected) ** 2 / expected if expected > 0 else 0.0
    return psi, chi2_p(statistic, len(groups) - 1)


def _share_item(
    kind: str, item: str, now: tuple[int, int], ref: tuple[int, int], threshold: float
) -> tuple[DriftItem, float]:
    """A share tonight against the reference; returns the item and its change threshold."""
    if now[1] < MIN_TONIGHT or ref[1] < MIN_REFERENCE:
        value = now[0] / now[1] if now[1] else None
        return DriftItem(kind, item, value, ref[0] / ref[1] if ref[1] else None, None, None), 0
    change, p = proportion_test(now[0], now[1], ref[0], ref[1])
    return DriftItem(kind, item, now[0] / now[1], ref[0] / ref[1], change, p), threshold


def compare_inputs(tonight: Inputs, reference: Inputs, limits: MonitorSettings) -> list[DriftItem]:
    """Every drift item of a night (see the module docstring), flags set."""
    now, ref = tonight.profile, reference.profile
    found: list[tuple[DriftItem, float]] = []
    for v in VARIABLES:
        found.append(_share_item("coverage", v, (now.variable_patients.get(v, 0), now.patients),
                                 (ref.variable_patients.get(v, 0), ref.patients),
                                 limits.coverage_change))  # fmt: skip
        h_now, h_ref = now.histogram(v), ref.histogram(v)
        if sum(h_now) >= MIN_TONIGHT and sum(h_ref) >= MIN_REFERENCE:
            psi, p = histogram_test(h_now, h_ref)
            found.append((DriftItem("distribution", v, None, None, psi, p), limits.max_psi))
    if tonight.unmapped_codes is not None and reference.unmapped_codes is not None:
        met_now = (tonight.unmapped, tonight.unmapped + tonight.observations)
        met_ref = (reference.unmapped, reference.unmapped + reference.observations)
        found.append(_share_item("unmapped-share", "observations", met_now, met_ref,
                                 limits.unmapped_change))  # fmt: skip
    reasons = Counter(now.films_unusable).most_common(1)
    films_now = (sum(now.films_unusable.values()), now.films)
    films_ref = (sum(ref.films_unusable.values()), ref.films)
    found.append(_share_item("unusable-films", reasons[0][0] if reasons else "films", films_now,
                             films_ref, limits.unusable_change))  # fmt: skip
    found.append(_share_item("pair-share", "patients", (now.pairs, now.patients),
                             (ref.pairs, ref.patients), limits.coverage_change))  # fmt: skip
    if sum(tonight.scores) >= MIN_TONIGHT and sum(reference.scores) >= MIN_REFERENCE:
        psi, p = histogram_test(tonight.scores, reference.scores)
        found.append((DriftItem("scores", "mortality", None, None, psi, p), limits.max_psi))
    tests = sum(1 for item, _ in found if item.p_value is not None)
    alpha = limits.drift_alpha / max(tests, 1)
    items = [_flag(item, threshold, alpha) for item, threshold in found]
    if tonight.unmapped_codes is not None and reference.unmapped_codes is not None:
        items += new_codes(tonight.unmapped_codes, reference.unmapped_codes, limits)
    return items


def _flag(item: DriftItem, threshold: float, alpha: float) -> DriftItem:
    if item.p_value is None or item.statistic is None or threshold <= 0:
        return item
    # Shares flag when they move either way by the threshold (a lab that stops arriving, a
    # feed that starts); films and unmapped codes only when they rise.
    size = (
        item.statistic if item.kind in ("unmapped-share", "unusable-films") else abs(item.statistic)
    )
    flagged = size >= threshold and item.p_value < alpha
    return DriftItem(item.kind, item.item, item.value, item.reference, item.statistic,
                     item.p_value, flagged)  # fmt: skip


def new_codes(
    tonight: Mapping[str, int], reference: Mapping[str, int], limits: MonitorSettings
) -> list[DriftItem]:
    """Codes unmapped tonight that no reference night had, the big ones flagged."""
    return [
        DriftItem(
            "new-unmapped-code",
            code,
            float(count),
            0.0,
            float(count),
            None,
            count >= limits.new_code_observations,
        )
        for code, count in sorted(tonight.items(), key=lambda kv: (-kv[1], kv[0]))
        if code not in reference
    ]


def score_histogram(probabilities: Sequence[float]) -> tuple[int, ...]:
    """Counts of risks in :data:`SCORE_BINS` equal bins over [0, 1] (the evaluation's)."""
    counts = [0] * SCORE_BINS
    for p in probabilities:
        counts[min(int(p * SCORE_BINS), SCORE_BINS - 1)] += 1
    return tuple(counts)

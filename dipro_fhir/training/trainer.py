"""Train, calibrate, validate and save a checkpoint, or fail and save nothing.

1. Stage the labelled examples (streamed) on disk, split by patient: train / validation /
   test (:mod:`dipro_fhir.training.store`).
2. Keep the tasks the training split has labels for; a task without labels (no coded CXR
   comparisons: progression on MIMIC-IV) is left out of the network and the card, and said so.
3. Fit the normalisation statistics on the training split only (reference §7.1.11).
4. Train (:func:`dipro.train.fit`: unweighted losses, the epoch chosen on the validation loss
   over the prevalence, :class:`~dipro.train.TrainingFailed` when it does not learn). With
   ``config.summary_path`` the network is then stacked with a regression on the window
   statistics (:mod:`dipro.stacking`: equal parts for mortality and length of stay, the
   weight of each progression finding chosen on validation).
5. Fit the calibration maps on the validation split, and the logistic-regression baseline on
   the training split (its penalty chosen on validation).
6. Evaluate on the test split, patients never used to fit or select anything, against the
   baselines; the figures go into the card (``validation``) and ``evaluation.json``/``.html``,
   with the reference of the inputs the monitor compares each night with
   (``validation.input_reference``, :mod:`dipro_fhir.evaluation.reference`).
7. Move the finished checkpoint into place. Until then it lives in a scratch folder beside the
   destination, removed whatever happens: a failed run leaves no checkpoint behind.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from dipro.calibration import fit_calibration
from dipro.checkpoint import read_card, save_checkpoint, write_card
from dipro.config import DiproConfig
from dipro.network import DiPro
from dipro.predictions import Predictions, predict
from dipro.stacking import fit_regression, stack
from dipro.train import FitResult, FitSettings, TrainingFailed, fit, seed_everything
from dipro.vocab import PROGRESSION_IGNORE
from dipro_fhir.core.errors import TrainingError
from dipro_fhir.evaluation.baseline import fit_baseline
from dipro_fhir.evaluation.evaluate import collect, evaluation_record
from dipro_fhir.evaluation.examples import ExampleCounts, LabelledTimeline
from dipro_fhir.evaluation.reference import profile_examples, reference_record
from dipro_fhir.evaluation.report import write_evaluation
from dipro_fhir.evaluation.summaries import summarise
from dipro_fhir.scoring.preprocess import fit_preprocessing
from dipro_fhir.scoring.scorer import load_model
from dipro_fhir.training.batches import write_batches
from dipro_fhir.training.store import ExampleStore

logger = logging.getLogger(__name__)

#: Each split needs at least this many patients to train and validate anything.
MIN_PER_SPLIT: Final[int] = 5
#: The default share of patients in the validation and in the test split.
DEFAULT_SHARES: Final[tuple[float, float]] = (0.2, 0.2)


@dataclass(frozen=True, slots=True)
class TrainingPlan:
    """What to train and how.

    Attributes:
        config: The network configuration (its tasks are cut to those with labels).
        name, version: The model's name and version.
        training_data: What the patients are, in words (for the card).
        intended_use: The card's intended use and limits.
        source: Where the patients came from (counts are added; no patient ids).
        epochs, min_epochs, patience, average_best: See :class:`dipro.train.FitSettings`.
        seed: Seeds the split, the network and the batch order.
        shares: Validation and test shares of the patients.
        resamples: Bootstrap resamples of the test figures.
    """

    config: DiproConfig
    name: str
    version: str
    training_data: str
    intended_use: str
    source: dict[str, Any]
    epochs: int = 30
    min_epochs: int = 5
    patience: int = 8
    average_best: int = 5
    seed: int = 23
    shares: tuple[float, float] = DEFAULT_SHARES
    resamples: int = 1000


@dataclass(frozen=True, slots=True)
class TrainingOutcome:
    """A saved checkpoint and what training found out on the way.

    Attributes:
        checkpoint: The checkpoint folder.
        tasks: The tasks trained.
        left_out: Task -> why it was not trained.
        split_counts: Patients per split.
        fit: The trainer's result (chosen epoch, criterion, history).
        validation: The test split's evaluation record (also in the card).
    """

    checkpoint: Path
    tasks: tuple[str, ...]
    left_out: dict[str, str]
    split_counts: dict[str, int]
    fit: FitResult
    validation: dict[str, Any]


def labelled_tasks(
    store: ExampleStore, tasks: tuple[str, ...]
) -> tuple[tuple[str, ...], dict[str, str]]:
    """The tasks of ``tasks`` with labels in the training split, and why the others are out."""
    los = progression = False
    for example in store.read("train"):
        los = los or example.labels.los_bin >= 0
        progression = progression or any(
            v != PROGRESSION_IGNORE for v in example.labels.progression
        )
    reasons = {
        "progression": None if progression else "no CXR pair with a coded comparison report",
        "mortality": None,
        "los": None if los else "no stay of 2 days or more with a known end",
    }
    kept = tuple(t for t in tasks if reasons[t] is None)
    return kept, {t: str(reasons[t]) for t in tasks if reasons[t] is not None}


def _labels(examples: Iterable[LabelledTimeline]) -> tuple[np.ndarray[Any, Any], Predictions]:
    """Summary features and labels of examples (for the baseline), one example at a time."""
    rows: list[np.ndarray[Any, Any]] = []
    mortality: list[float] = []
    los: list[int] = []
    progression: list[tuple[int, ...]] = []
    for example in examples:
        if example.labels.mortality is None:  # examples are stays with a known outcome
            raise ValueError("a labelled example without a mortality label")
        rows.append(summarise(example.timeline))
        mortality.append(example.labels.mortality)
        los.append(example.labels.los_bin)
        progression.append(example.labels.progression)
    labels = Predictions(
        mortality=None,
        mortality_labels=np.asarray(mortality, dtype=np.float64),
        los=None,
        los_labels=np.asarray(los, dtype=np.int64),
        progression=None,
        progression_labels=np.asarray(progression, dtype=np.int64).reshape(len(rows), -1),
    )
    return np.stack(rows), labels


def train_checkpoint(
    examples: Iterable[LabelledTimeline],
    counts: ExampleCounts,
    out_dir: Path,
    plan: TrainingPlan,
    progress: Callable[[str], None] | None = None,
) -> TrainingOutcome:
    """Train a checkpoint into ``out_dir`` (module docstring); ``out_dir`` must not hold one.

    Args:
        examples: The labelled examples, streamed (each patient once).
        counts: Filled by whoever streams ``examples``; stored in the card.
        out_dir: Destination folder (absent or empty).
        plan: What to train and how.
        progress: Called with a line per stage.

    Raises:
        TrainingError: Too few patients, no task to train, or the network did not learn
            (:class:`~dipro.train.TrainingFailed` says which); nothing is saved.
        FileExistsError: ``out_dir`` is not empty.
    """
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty: choose a new folder for the checkpoint")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda line: logger.info("%s", line))
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.training-", dir=out_dir.parent))
    try:
        return _train(examples, counts, out_dir, plan, work, say)
    except TrainingFailed as exc:
        raise TrainingError(f"nothing saved: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _train(
    examples: Iterable[LabelledTimeline],
    counts: ExampleCounts,
    out_dir: Path,
    plan: TrainingPlan,
    work: Path,
    say: Callable[[str], None],
) -> TrainingOutcome:
    store = ExampleStore(work / "examples")
    store.write(examples, plan.seed, plan.shares)
    skipped = dict(counts.skipped)
    say(f"examples: {store.counts} (patients read {counts.patients}, skipped {skipped})")
    if min(store.counts.values()) < MIN_PER_SPLIT:
        raise TrainingFailed(
            f"too few labelled patients: {store.counts} per split, need {MIN_PER_SPLIT} in each "
            f"(patients read {counts.patients}, skipped {dict(counts.skipped)})"
        )
    tasks, left_out = labelled_tasks(store, plan.config.tasks)
    for task, why in left_out.items():
        say(f"task {task} left out: {why}")
    if not tasks:
        raise TrainingFailed("no task has training labels")
    config = dataclasses.replace(plan.config, tasks=tasks)
    prep = fit_preprocessing(e.timeline for e in store.read("train"))
    train = write_batches(store.read("train"), prep, config, work / "batches" / "train")
    val = write_batches(store.read("validation"), prep, config, work / "batches" / "validation")
    seed_everything(plan.seed)
    model = DiPro(config)
    path, model.summary = model.summary, None  # trained alone, stacked afterwards
    say(f"training {', '.join(tasks)} for at most {plan.epochs} epochs")
    result = fit(
        model,
        train,
        val,
        FitSettings(
            epochs=plan.epochs,
            min_epochs=plan.min_epochs,
            patience=plan.patience,
            average_best=plan.average_best,
            seed=plan.seed,
        ),
    )
    chosen = (
        f"epochs {list(result.averaged)} averaged"
        if result.averaged
        else f"epoch {result.best_epoch}"
    )
    say(f"chose {chosen}: validation loss / prevalence {result.criterion:.3f}")
    mix: dict[str, float] = {}
    if path is not None:
        penalties = fit_regression(path, model.heads.layout, train, val)
        mix = stack(model, path, val, fitted=penalties)
        say(f"stacked with the regression on the window statistics, its weight by task: {mix}")
    calibration = fit_calibration(predict(model, val))
    baseline = fit_baseline(*_labels(store.read("train")), *_labels(store.read("validation")))
    staged = work / "checkpoint"
    save_checkpoint(
        model.cpu(),
        staged,
        name=plan.name,
        version=plan.version,
        training_data=_describe(plan, store.counts, left_out),
        intended_use=plan.intended_use,
        metrics=_fit_metrics(result, mix),
        preprocessing=prep.to_json(),
        calibration=calibration.to_json(),
    )
    baseline.save(staged)
    say(f"evaluating on the {store.counts['test']} test patients")
    loaded = load_model(staged)
    record = evaluation_record(
        collect(store.read("test"), loaded, baseline),
        _test_counts(store),
        source={
            **plan.source,
            "split": "test: patients by a seeded hash of their id, never used to fit, select "
            "or calibrate",
            "split_counts": dict(store.counts),
            "patients_read": counts.to_json(),
        },
        resamples=plan.resamples,
        seed=plan.seed,
    )
    record["input_reference"] = reference_record(
        profile_examples(store.read("test"), prep),
        record["risk_histogram"],
        "the test split: held-out patients at the prediction point (hour 48 of the stay)",
        sampling="prediction-point",
    )  # what the monitor compares each night's inputs with (issue 25)
    write_card(dataclasses.replace(read_card(staged), validation=record), staged)
    write_evaluation(record, staged)
    if out_dir.exists():
        out_dir.rmdir()
    staged.rename(out_dir)
    return TrainingOutcome(out_dir, tasks, left_out, dict(store.counts), result, record)


def _test_counts(store: ExampleStore) -> ExampleCounts:
    counts = ExampleCounts()
    for example in store.read("test"):
        counts.add(example)
    return counts


def _describe(plan: TrainingPlan, split: dict[str, int], left_out: dict[str, str]) -> str:
    parts = [plan.training_data, ", ".join(f"{n} {s}" for s, n in split.items()) + " patients"]
    parts += [f"{task} not trained: {why}" for task, why in left_out.items()]
    return "; ".join(parts)


def _fit_metrics(result: FitResult, mix: dict[str, float]) -> dict[str, float]:
    """The card's training figures: the chosen epoch, the losses, and the regression's weight
    per task in the stack (``stacking/<task>/regression_weight``; absent without stacking)."""
    metrics = {
        "best_epoch": float(result.best_epoch),
        "epochs_run": float(len(result.history)),
        "validation_loss_over_prevalence": result.criterion,
        "untrained_loss_over_prevalence": result.initial_criterion,
    }
    metrics |= {f"{task}/validation_loss_over_prevalence": r for task, r in result.ratios.items()}
    if result.averaged:
        metrics["averaged_epochs"] = float(len(result.averaged))
    metrics |= {f"stacking/{task}/regression_weight": w for task, w in mix.items()}
    return metrics

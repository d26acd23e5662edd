"""Measuring a checkpoint on labelled patients: the examples (finished stays at the
prediction point, with their labels), the simple baselines every model is compared with,
figures with bootstrap intervals by subgroup, and the ``evaluation.json`` / ``.html`` that
``dipro-fhir evaluate`` writes and a model card carries."""

"""Scoring: turn mapped timelines into per-patient, per-task scores with DiPro."""

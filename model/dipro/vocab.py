"""The fixed axes of DiPro's inputs and outputs (reference §1.4-§1.6, §3.1).

Order matters: each tuple is a tensor axis. A checkpoint's model card stores these lists and
loading refuses a card whose lists differ from the code's.
"""

from __future__ import annotations

from typing import Final

#: The 38 EHR variables, in the feature-axis order of the paper's code (§1.4).
VARIABLES: Final[tuple[str, ...]] = (
    "alanine_aminotransferase",
    "albumin",
    "alkaline_phosphatase",
    "anion_gap",
    "aspartate_aminotransferase",
    "bicarbonate",
    "bilirubin",
    "blood_urea_nitrogen",
    "chloride",
    "creatinine",
    "diastolic_blood_pressure",
    "fraction_inspired_oxygen",
    "gcs_eye_opening",
    "gcs_motor_response",
    "gcs_verbal_response",
    "glucose",
    "heart_rate",
    "height",
    "hematocrit",
    "hemoglobin",
    "magnesium",
    "mean_blood_pressure",
    "oxygen_saturation",
    "partial_pressure_co2",
    "partial_thromboplastin_time",
    "platelets",
    "peep",
    "potassium",
    "prothrombin_time_inr",
    "respiratory_rate",
    "sodium",
    "systolic_blood_pressure",
    "temperature",
    "troponin_t",
    "urine_output",
    "weight",
    "white_blood_cell_count",
    "ph",
)

#: The 10 Chest ImaGenome anatomical regions, in the paper's order (§1.6).
REGIONS: Final[tuple[str, ...]] = (
    "left_lung",
    "right_lung",
    "left_lower_lung_zone",
    "right_lower_lung_zone",
    "left_hilar_structures",
    "right_hilar_structures",
    "left_costophrenic_angle",
    "right_costophrenic_angle",
    "cardiac_silhouette",
    "mediastinum",
)

#: The 7 findings of the disease-progression task (§3.1).
FINDINGS: Final[tuple[str, ...]] = (
    "atelectasis",
    "enlarged_cardiac_silhouette",
    "consolidation",
    "pulmonary_edema",
    "lung_opacity",
    "pleural_effusion",
    "pneumonia",
)

#: Progression classes, in the code's label encoding (0, 1, 2); 3 means "not mentioned".
PROGRESSION_CLASSES: Final[tuple[str, ...]] = ("worsened", "improved", "no_change")
PROGRESSION_IGNORE: Final[int] = 3

#: Length-of-stay bins in days: [2,3), [3,4), [4,6), >= 6 (DESIGN.md; reference §7.1.12).
LOS_BINS: Final[tuple[str, ...]] = ("2-3d", "3-4d", "4-6d", "6d+")

#: The 17 demographic columns (§1.5): 3 continuous, then one-hot groups.
DEMOGRAPHIC_COLUMNS: Final[tuple[str, ...]] = (
    "age",
    "height",
    "weight",
    "gender_F",
    "gender_M",
    "race_ASIAN",
    "race_BLACK/AFRICAN AMERICAN",
    "race_HISPANIC/LATINO",
    "race_OTHER",
    "race_UNKNOWN/UNABLE TO OBTAIN/PATIENT DECLINED TO ANSWER",
    "race_WHITE",
    "language_?",
    "language_ENGLISH",
    "marital_DIVORCED",
    "marital_MARRIED",
    "marital_SINGLE",
    "marital_WIDOWED",
)

#: Task names, as used for heads, scores and RiskAssessments.
TASKS: Final[tuple[str, ...]] = ("progression", "mortality", "los")

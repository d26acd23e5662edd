"""Training a DiPro checkpoint from FHIR + DICOMweb data with the project's own trainer:
labelled examples split by patient and staged on disk, the network fitted on a stable
criterion, calibrated on validation, a logistic-regression baseline fitted beside it, and
the held-out test split's figures written into the model card; or nothing saved at all."""

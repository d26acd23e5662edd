"""The CDS Hooks room: a ``patient-view`` service that shows a patient's latest DiPro scores
as cards in the EHR (CDS Hooks 2.0; docs/cds-hooks.md). It reads the results database and
the deployed checkpoint's model card; it writes nothing."""

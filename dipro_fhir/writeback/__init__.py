"""Write-back of scores: FHIR RiskAssessments (plus Device and Provenance) to a sink."""

"""The ground floor: the vocabulary every room shares (timeline, scores and failures, chunk
manifests, staging, risk bands, a model card's cautions, settings, errors, input limits,
logging, SVG charts, torch threads, where shipped files are). It imports nothing of
``dipro_fhir`` above it."""

"""One run, stage by stage: ``plan`` -> ``extract_stage`` -> ``score_stage`` ->
``writeback_stage`` -> ``finalize`` (the Airflow task bodies), ``pipeline`` (the same in one
process), ``bulk`` (Bulk Data extraction), ``quality``, ``retraction``, ``checks``, ``audit``,
``extract`` (one patient's sources to a timeline) and ``connections`` (settings to clients)."""

"""The DiPro page: read-only HTML views of the results database for the Airflow UI.

:func:`dipro_fhir.ui.app.create_app` builds the FastAPI app; the Airflow plugin in
``plugins/dipro_ui.py`` mounts it under ``/dipro`` behind Airflow's auth (docs/ui.md).
"""

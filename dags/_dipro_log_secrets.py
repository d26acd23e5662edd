"""Keep connection secrets out of Airflow's DEBUG output when a night runs in-process.

Why this exists (Airflow 3 behaviour, seen on 3.3.2; issue 23, item 16): reading a Connection
in a task registers its password and extra with the secrets masker, and the task tells its
supervisor with a ``MaskSecret`` message that carries the secret. The supervisor of a real
worker logs that message with its body omitted ("Received message from task runner (body
omitted)"). The in-process supervisor that ``airflow dags test`` and ``dag.test()`` use (and
so ``dipro-fhir demo``) does not: ``InProcessSupervisorComms.send`` in
``airflow/sdk/execution_time/supervisor.py`` debug-logs every request whole, so at
``logging_level = DEBUG`` each connection read printed
``Sending request msg=MaskSecret(value='<the password>')``. Nothing a logging configuration
can say holds that line back: its structlog logger has no name (``namespace_levels`` cannot
address it, it follows the root level), structlog writes it straight to the console (a
``logging_config_class`` dict configures only the stdlib side), and the command line's
structlog chain has no masking processor (the masker would not look inside a pydantic message
anyway).

So every task, before it reads a connection, puts one processor at the head of the live
structlog chain that does what the real supervisor does: it replaces a ``MaskSecret`` in a log
event by a placeholder. Nothing else in any event changes. It can go when Airflow's in-process
supervisor omits the body itself; ``tests/e2e/test_no_secrets_in_airflow_logs.py`` runs a night
at DEBUG through ``airflow dags test`` and fails if a secret shows again.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import structlog
from airflow.sdk.execution_time.comms import MaskSecret

OMITTED = "MaskSecret(<body omitted>)"


def omit_mask_secret_bodies(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: every ``MaskSecret`` value of the event becomes :data:`OMITTED`."""
    for key, value in list(event_dict.items()):
        if isinstance(value, MaskSecret):
            event_dict[key] = OMITTED
    return event_dict


def keep_mask_secrets_out_of_logs() -> None:
    """Put :func:`omit_mask_secret_bodies` first in structlog's chain (once per process).

    The chain is changed in place, not through ``structlog.configure()``: loggers that are
    already bound (the in-process supervisor's is, by the time a task body runs) keep the list
    they were bound to, and that is this very list.
    """
    processors = structlog.get_config()["processors"]
    if omit_mask_secret_bodies not in processors:
        processors.insert(0, omit_mask_secret_bodies)

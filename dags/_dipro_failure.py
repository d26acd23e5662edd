"""A failed task's log ends with the one line that names the problem.

Airflow logs a task's exception as "Task failed with exception" followed by the whole
traceback (about 40 frames through Airflow's task runner, the operator and our stages), and
its log view opens at the bottom: the product's message sits at the top of that traceback,
out of sight. :func:`log_failure_last` and :func:`log_retry_last` are every task's
``on_failure_callback`` and ``on_retry_callback``; Airflow runs them after the traceback, so
the last error line of the log says which task failed, whether it will retry, and why.

The line is the exception's own first line: the product's errors carry no patient data, and
the traceback above it already holds the same text.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

#: Wrappers whose name says nothing the message does not (``raise AirflowFailException(msg)``).
_WRAPPERS = ("AirflowFailException", "AirflowException")
_MAX_CHARS = 500


def failure_line(task_id: str, error: BaseException | None, *, will_retry: bool) -> str:
    """``<task> failed[, will retry]: [<type>: ]<first line of the message>``."""
    outcome = f"{task_id} failed" + (" (it will be retried)" if will_retry else "")
    if error is None:
        return f"{outcome}; the exception is in the log above"
    lines = str(error).strip().splitlines()
    message = lines[0].strip() if lines else ""
    kind = type(error).__name__
    if not message:
        message = kind
    elif kind not in _WRAPPERS:
        message = f"{kind}: {message}"
    return f"{outcome}: {message[:_MAX_CHARS]}"


def log_failure_last(context: Mapping[str, Any]) -> None:
    """The ``on_failure_callback`` of the DiPro DAGs' tasks."""
    _log_last(context, will_retry=False)


def log_retry_last(context: Mapping[str, Any]) -> None:
    """The ``on_retry_callback`` of the DiPro DAGs' tasks."""
    _log_last(context, will_retry=True)


def _log_last(context: Mapping[str, Any], *, will_retry: bool) -> None:
    ti = context.get("ti") or context.get("task_instance")
    task_id = str(getattr(ti, "task_id", "task"))
    map_index = getattr(ti, "map_index", -1)
    if isinstance(map_index, int) and map_index >= 0:
        task_id = f"{task_id}[{map_index}]"
    error = context.get("exception")
    exception = error if isinstance(error, BaseException) else None
    logger.error("%s", failure_line(task_id, exception, will_retry=will_retry))


#: ``default_args`` for a DAG whose tasks should end a failure's log with its message.
FAILURE_CALLBACKS: dict[str, Any] = {
    "on_failure_callback": log_failure_last,
    "on_retry_callback": log_retry_last,
}

"""The DAGs' guard against Airflow's in-process supervisor logging ``MaskSecret`` bodies.

``airflow dags test`` debug-logs every request a task sends, the ``MaskSecret`` that
registers a connection's password included (see ``dags/_dipro_log_secrets.py``). These tests
log such an event through the structlog chain Airflow configured in this process, from a
logger bound before the guard was installed, as the in-process supervisor's is. The whole
night at DEBUG is ``test_no_secrets_in_airflow_logs.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
from _dipro_log_secrets import OMITTED, keep_mask_secrets_out_of_logs, omit_mask_secret_bodies
from airflow.sdk.execution_time.comms import GetConnection, MaskSecret

SECRET = "guardPw-5Tq8Ze2"


@pytest.fixture
def restore_chain() -> Iterator[None]:
    """Take the guard out of the live chain after the test."""
    yield
    processors = structlog.get_config()["processors"]
    while omit_mask_secret_bodies in processors:
        processors.remove(omit_mask_secret_bodies)


def test_the_processor_omits_mask_secret_bodies_and_keeps_the_rest() -> None:
    event = {
        "event": "Sending request",
        "msg": MaskSecret(value={"token": SECRET}, name="extra"),
        "other": GetConnection(conn_id="dipro_fhir"),
    }
    out = omit_mask_secret_bodies(None, "debug", dict(event))
    assert out["msg"] == OMITTED
    assert out["other"] == event["other"]
    assert out["event"] == "Sending request"


@pytest.mark.usefixtures("restore_chain")
def test_a_logger_bound_before_the_guard_logs_no_secret(
    capfd: pytest.CaptureFixture[str],
) -> None:
    bound_early = structlog.get_logger().bind()  # like the in-process supervisor's logger
    keep_mask_secrets_out_of_logs()
    bound_early.warning("Sending request", msg=MaskSecret(value=SECRET))
    out, err = capfd.readouterr()
    assert "Sending request" in out + err  # the line itself is kept
    assert SECRET not in out + err
    assert OMITTED in out + err


@pytest.mark.usefixtures("restore_chain")
def test_installing_the_guard_twice_adds_it_once() -> None:
    keep_mask_secrets_out_of_logs()
    keep_mask_secrets_out_of_logs()
    processors = structlog.get_config()["processors"]
    assert processors.count(omit_mask_secret_bodies) == 1
    assert processors[0] is omit_mask_secret_bodies

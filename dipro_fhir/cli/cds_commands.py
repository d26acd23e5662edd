"""``dipro-fhir cds-hooks serve``: the CDS Hooks ``patient-view`` service (docs/cds-hooks.md)."""

from __future__ import annotations

import argparse
from zoneinfo import ZoneInfo

from dipro_fhir.core.errors import ConfigError
from dipro_fhir.core.settings import Settings

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def cmd_cds_serve(args: argparse.Namespace) -> int:
    """Serve the CDS Hooks discovery endpoint and the dipro-risk patient-view service."""
    import uvicorn

    from dipro_fhir.cds.model_status import DeployedModelUse
    from dipro_fhir.cds.service import SERVICE_ID, create_app
    from dipro_fhir.run import connections

    settings = Settings()
    cds = settings.cds
    if args.host not in LOOPBACK and not cds.trusted_clients and not cds.allow_unauthenticated:
        raise ConfigError(
            f"refusing to serve patient scores on {args.host} without authentication: set "
            "DIPRO_CDS__TRUSTED_CLIENTS (issuer -> JWK Set URL of each EHR), or "
            "DIPRO_CDS__ALLOW_UNAUTHENTICATED=true behind a gateway that authenticates"
        )
    app = create_app(
        connections.engine(settings),
        cds,
        DeployedModelUse(settings.model.checkpoint),
        timezone=ZoneInfo(settings.run.site_timezone),
    )
    config = uvicorn.Config(app, host=args.host, port=args.port, log_config=None)
    server = uvicorn.Server(config)
    auth = "JWT of " + ", ".join(sorted(cds.trusted_clients)) if cds.trusted_clients else "none"
    print(
        f"CDS Hooks on {args.host}:{args.port}: discovery GET /cds-services, "
        f"service POST /cds-services/{SERVICE_ID}; client authentication: {auth}",
        flush=True,
    )
    server.run()
    return 0

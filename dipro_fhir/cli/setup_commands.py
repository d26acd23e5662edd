"""The commands that prepare a site or a test bed: ``synth`` writes or loads a synthetic
cohort, ``smart keys`` manages the SMART Backend Services signing keys."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from dipro_fhir.cli.arguments import as_of
from dipro_fhir.core.errors import ConfigError, DiproFhirError
from dipro_fhir.core.settings import Settings


def cmd_synth(args: argparse.Namespace) -> int:
    """Write a synthetic cohort to files, or load it into the configured servers."""
    from tqdm import tqdm

    from dipro_fhir.synth import generate_cohort

    reference = as_of(args.reference_time)
    start = reference - timedelta(days=args.span_days)
    patients = generate_cohort(args.patients, seed=args.seed, start=start, reference_time=reference)
    with tqdm(total=args.patients, unit="patient", disable=args.quiet) as bar:

        def progress(done: int) -> None:
            bar.update(done - bar.n)

        if args.action == "write":
            from dipro_fhir.synth.load import write_files

            report: Any = write_files(patients, Path(args.out), progress=progress)
        else:
            from dipro_fhir.run import connections
            from dipro_fhir.synth.load import load_into_servers

            settings = Settings()
            if not settings.dicomweb.base_url:
                raise DiproFhirError("synth load needs DIPRO_DICOMWEB__BASE_URL")
            # The configured DICOMweb auth (basic or bearer) goes with STOW, as with reads.
            store = connections.dicomweb_client(settings.dicomweb)
            with connections.fhir_client(settings.fhir) as client:
                report = load_into_servers(
                    patients,
                    client,
                    store,
                    dicomweb_base_url=settings.dicomweb.base_url,
                    progress=progress,
                )
    print(
        f"{report.patients} patients, {report.instances} DICOM instances, "
        f"resources: {dict(report.resource_counts)}"
    )
    return 0


def cmd_smart_keys(args: argparse.Namespace) -> int:
    """SMART Backend Services keys: generate or rotate, print or serve the JWKS, remove."""
    import threading

    from dipro_fhir.fhir import smart_keys

    folder = Path(args.dir)
    if args.action in ("jwks", "serve", "remove") and not folder.is_dir():
        raise ConfigError(f"no key folder {folder}: smart keys generate --dir {folder} makes one")
    if args.action in ("generate", "rotate"):
        key = smart_keys.generate_key(folder, args.alg)
        print(
            f"new signing key {key.kid} ({key.algorithm}): {key.private_key_path}", file=sys.stderr
        )
    elif args.action == "remove":
        if not args.kid:
            raise DiproFhirError("smart keys remove needs --kid=KID")
        smart_keys.remove_key(folder, args.kid)
    elif args.action == "serve":
        server = smart_keys.serve_jwks(folder, args.host, args.port, args.path)
        port = server.server_address[1]
        print(f"serving the JWKS at http://{args.host}:{port}{args.path}", flush=True)
        try:
            threading.Event().wait()  # nobody sets it: serve until interrupted
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
            server.server_close()
        return 0
    jwks = smart_keys.read_jwks(folder)
    if args.action == "jwks" and not jwks["keys"]:
        print(f"no key in {folder} yet: the JWK Set is empty", file=sys.stderr)
    print(json.dumps(jwks, indent=2))
    return 0

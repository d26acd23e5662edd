"""``python -m dipro_fhir.cli``: the same as the ``dipro-fhir`` command."""

import sys

from dipro_fhir.cli.main import main

sys.exit(main())

"""``python -m dipro_fhir.sandbox``: the same as ``dipro-fhir-sandbox``."""

import sys

from dipro_fhir.sandbox.main import main

sys.exit(main())

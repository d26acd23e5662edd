"""Which NDJSON files of a folder hold which resource type, told by their content.

Bulk Data names files ``Type.ndjson`` or ``Type.<part>.ndjson``, but exports in the wild do
not: MIMIC-IV on FHIR ships ``MimicPatient.ndjson.gz`` and
``MimicObservationVitalSignsED.ndjson.gz``, other tools prefix a site or a date. A file's
type is therefore the ``resourceType`` of its first resource line, whatever its name; files
end in ``.ndjson`` or ``.ndjson.gz``. A gzipped file is decompressed once, streaming, into a
spool folder that lives as long as the catalog, so the reader can still seek to the lines it
indexed. A file whose first line names no resource type is kept apart as unreadable, by
name, for the run's data problems; an empty file holds nothing and is skipped.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import tempfile
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIXES = (".ndjson", ".ndjson.gz")
EMPTY = "empty file"
#: How much of a first line is read to find its resource type.
FIRST_LINE_BYTES = 1 << 20


@dataclass
class NdjsonCatalog:
    """The NDJSON files of one folder by resource type (see the module docstring).

    Attributes:
        by_type: Resource type -> files in reading order (``Type.ndjson`` first, then by name).
        unreadable: Files whose first line names no resource type, with why.
    """

    directory: Path
    by_type: dict[str, list[Path]] = field(default_factory=dict)
    unreadable: dict[Path, str] = field(default_factory=dict)
    _spool: tempfile.TemporaryDirectory[str] | None = None
    _plain: dict[Path, Path] = field(default_factory=dict)

    @classmethod
    def scan(cls, directory: Path) -> NdjsonCatalog:
        """Read the first line of every ``*.ndjson`` / ``*.ndjson.gz`` file in ``directory``."""
        catalog = cls(directory)
        found: defaultdict[str, list[Path]] = defaultdict(list)
        for path in sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIXES)):
            if not path.is_file():
                continue
            resource_type, problem = _first_type(path)
            if resource_type is None and problem == EMPTY:
                log.info("NDJSON file %s is empty", path.name)
            elif resource_type is None:
                catalog.unreadable[path] = problem
            else:
                found[resource_type].append(path)
        for resource_type, paths in found.items():
            paths.sort(key=lambda p: (p.name != f"{resource_type}.ndjson", p.name))
            catalog.by_type[resource_type] = paths
        log.info(
            "NDJSON files by type: %s%s",
            "; ".join(f"{t}: {', '.join(p.name for p in ps)}" for t, ps in sorted(found.items()))
            or "none",
            f"; unreadable: {', '.join(p.name for p in catalog.unreadable)}"
            if catalog.unreadable
            else "",
        )
        return catalog

    def files(self, resource_type: str) -> list[Path]:
        """The readable (plain) files of one type; a gzipped one decompressed on first use."""
        return [self._readable(path) for path in self.by_type.get(resource_type, [])]

    def source_name(self, path: Path) -> str:
        """The name a user knows a (possibly decompressed) file by."""
        for original, plain in self._plain.items():
            if plain == path:
                return original.name
        return path.name

    def _readable(self, path: Path) -> Path:
        if not path.name.endswith(".gz"):
            return path
        plain = self._plain.get(path)
        if plain is None:
            if self._spool is None:
                self._spool = tempfile.TemporaryDirectory(prefix="dipro-ndjson-")
            plain = Path(self._spool.name) / f"{len(self._plain):04d}-{path.name[:-3]}"
            with gzip.open(path, "rb") as packed, plain.open("wb") as out:
                shutil.copyfileobj(packed, out, 1 << 20)
            self._plain[path] = plain
        return plain


def _first_type(path: Path) -> tuple[str | None, str]:
    """The ``resourceType`` of the file's first non-empty line, or None and why not."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            for line in handle:
                if line.strip():
                    break
            else:
                return None, EMPTY
    except (OSError, EOFError, zlib.error) as error:
        return None, f"cannot be read ({type(error).__name__})"
    if len(line) > FIRST_LINE_BYTES:
        return None, "first line too long to tell the resource type"
    try:
        first = json.loads(line)
    except ValueError:
        return None, "first line is not JSON"
    resource_type = first.get("resourceType") if isinstance(first, dict) else None
    if not isinstance(resource_type, str) or not resource_type:
        return None, "first line names no resourceType"
    return resource_type, ""

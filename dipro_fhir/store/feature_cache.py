"""A CXR feature cache every worker shares: pay once per image (DESIGN.md "Cost").

A chest radiograph never changes once taken, so its region features are computed once. An
entry is keyed by the SOP Instance UID and frame, the preprocessing version (decoder, region
locator, QC and crop size: :func:`dipro_fhir.imaging.events.preprocessing_version`) and the
digest of the backbone weights (:func:`dipro.checkpoint.state_digest`); any change to a key
part gives another key, so stale entries are never read, and they age out by last use.

The value is the CXR's pooled backbone features of its ten regions (float16 ``[R, F]``), its
region boxes (``[R, 4]``, NaN where a region was not placed), the region mask and the QC
verdict (the data-problem codes the image raised). It is one blob whose SHA-256 (over the key
and the blob) is stored beside it: a corrupt or partial entry (a flipped byte, a truncated
write, a blob missing from the object store) is reported as corrupt, deleted and never used;
the caller recomputes it and records a ``feature-cache-corrupt`` data problem.

Storage: by default the table ``feature_cache`` of the results database (PostgreSQL; SQLite
for the demo). For large sites the blobs can live in an fsspec object store
(``DIPRO_CACHE__BACKEND=fsspec``, ``DIPRO_CACHE__URL=s3://bucket/prefix``) while the table
keeps the index (key, size, checksum, last use), so eviction and sharing work the same way.
The total size is bounded (``max_bytes``): after each write, the least recently used entries
are deleted until the total fits. Concurrent writers of one key are harmless (insert or
ignore; both computed the same features).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, delete, func, inspect, select, update
from sqlalchemy.dialects import postgresql, sqlite

from dipro_fhir.core.errors import ConfigError
from dipro_fhir.store.models import FeatureCacheRow

log = logging.getLogger(__name__)

_FORMAT = "dipro-fhir/feature-cache/1"


@dataclass(frozen=True, slots=True)
class FeatureKey:
    """Everything a cached feature depends on."""

    instance_uid: str
    frame: int
    preprocessing: str
    weights_digest: str

    @property
    def digest(self) -> str:
        """SHA-256 hex of all key parts: the table's primary key."""
        parts = (self.instance_uid, str(self.frame), self.preprocessing, self.weights_digest)
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CachedFeatures:
    """One CXR's cached value.

    Attributes:
        features: float16 ``[R, F]`` pooled backbone features of the regions.
        boxes: float32 ``[R, 4]`` region boxes ``(x0, y0, x1, y1)`` in pixels, NaN if missing.
        region_mask: bool ``[R]``.
        qc: The image's QC verdict: ``(code, detail)`` of each data problem it raised.
    """

    features: npt.NDArray[np.float16]
    boxes: npt.NDArray[np.float32]
    region_mask: npt.NDArray[np.bool_]
    qc: tuple[tuple[str, str], ...] = ()

    def to_bytes(self) -> bytes:
        """The blob stored for this value (an uncompressed ``.npz``)."""
        header = json.dumps({"format": _FORMAT, "qc": [list(q) for q in self.qc]}).encode()
        buffer = io.BytesIO()
        np.savez(
            buffer,
            allow_pickle=False,
            header=np.frombuffer(header, dtype=np.uint8),
            features=self.features.astype(np.float16),
            boxes=self.boxes.astype(np.float32),
            region_mask=self.region_mask.astype(np.bool_),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> CachedFeatures:
        """Read a blob written by :meth:`to_bytes`.

        Raises:
            ValueError: The blob is not a complete entry.
        """
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as data:
                header = json.loads(data["header"].tobytes())
                value = cls(
                    features=data["features"],
                    boxes=data["boxes"],
                    region_mask=data["region_mask"],
                    qc=tuple((str(c), str(d)) for c, d in header["qc"]),
                )
        except (OSError, KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"unreadable cache entry: {type(exc).__name__}") from exc
        if header.get("format") != _FORMAT or value.features.dtype != np.float16:
            raise ValueError("cache entry of another format")
        return value


@dataclass(frozen=True, slots=True)
class Lookup:
    """What :meth:`FeatureCache.get` found: a value, nothing, or a corrupt entry (removed)."""

    value: CachedFeatures | None
    corrupt: str | None = None


def _checksum(key: str, blob: bytes) -> str:
    return hashlib.sha256(key.encode() + b"\x00" + blob).hexdigest()


class FeatureCache:
    """The shared cache over the results database (and optionally an object store).

    Args:
        engine: The results database, migrated (table ``feature_cache``, migration 0003).
        max_bytes: Bound on the total size of the stored blobs.
        object_store: fsspec URL of a folder for the blobs; ``None`` keeps them in the table.

    Raises:
        ConfigError: The database has no ``feature_cache`` table.
    """

    def __init__(self, engine: Engine, *, max_bytes: int, object_store: str | None = None) -> None:
        if "feature_cache" not in inspect(engine).get_table_names():
            raise ConfigError(
                "the results database has no feature_cache table: run `dipro-fhir db upgrade`"
            )
        self._engine = engine
        self._max_bytes = max_bytes
        self._root = object_store.rstrip("/") if object_store else None

    def _blob_location(self, key: str) -> str:
        return f"{self._root}/{key[:2]}/{key}.npz"

    def get(self, key: FeatureKey) -> Lookup:
        """The entry of ``key`` (and mark it used), or a miss, or a corrupt entry (deleted)."""
        digest = key.digest
        with self._engine.begin() as conn:
            row = conn.execute(
                select(FeatureCacheRow.checksum, FeatureCacheRow.payload).where(
                    FeatureCacheRow.key == digest
                )
            ).first()
            if row is None:
                return Lookup(None)
            conn.execute(
                update(FeatureCacheRow)
                .where(FeatureCacheRow.key == digest)
                .values(last_used_at=datetime.now(UTC))
            )
        checksum, payload = row
        problem = None
        blob = payload
        if blob is None and self._root is not None:
            blob = self._read_blob(digest)
        if blob is None:
            problem = "entry has no payload"
        elif _checksum(digest, bytes(blob)) != checksum:
            problem = "checksum mismatch"
        else:
            try:
                return Lookup(CachedFeatures.from_bytes(bytes(blob)))
            except ValueError as exc:
                problem = str(exc)
        log.warning("feature cache: corrupt entry removed (%s)", problem)
        self._delete([digest])
        return Lookup(None, corrupt=problem)

    def put_many(self, items: Sequence[tuple[FeatureKey, CachedFeatures]]) -> None:
        """Store entries (existing keys are kept), then evict down to ``max_bytes``."""
        if not items:
            return
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        for key, value in items:
            digest, blob = key.digest, value.to_bytes()
            if self._root is not None:
                from dipro_fhir.core import staging

                staging.write_bytes(self._blob_location(digest), blob)
            rows.append(
                {
                    "key": digest,
                    "instance_uid": key.instance_uid,
                    "frame": key.frame,
                    "preprocessing": key.preprocessing,
                    "weights_digest": key.weights_digest,
                    "nbytes": len(blob),
                    "checksum": _checksum(digest, blob),
                    "payload": None if self._root is not None else blob,
                    "created_at": now,
                    "last_used_at": now,
                }
            )
        dialect = self._engine.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        with self._engine.begin() as conn:
            conn.execute(
                insert(FeatureCacheRow).on_conflict_do_nothing(index_elements=["key"]), rows
            )
        self.evict()

    def evict(self) -> int:
        """Delete least recently used entries until the total size fits; return how many."""
        with self._engine.begin() as conn:
            total = int(
                conn.execute(
                    select(func.coalesce(func.sum(FeatureCacheRow.nbytes), 0))
                ).scalar_one()
            )
            if total <= self._max_bytes:
                return 0
            doomed: list[str] = []
            rows = conn.execute(
                select(FeatureCacheRow.key, FeatureCacheRow.nbytes).order_by(
                    FeatureCacheRow.last_used_at, FeatureCacheRow.key
                )
            )
            for key, nbytes in rows:
                if total <= self._max_bytes:
                    break
                doomed.append(key)
                total -= int(nbytes)
        self._delete(doomed)
        log.info("feature cache: %d entries evicted by last use", len(doomed))
        return len(doomed)

    def size(self) -> tuple[int, int]:
        """``(entries, bytes)`` stored now."""
        with self._engine.connect() as conn:
            count, total = conn.execute(
                select(func.count(), func.coalesce(func.sum(FeatureCacheRow.nbytes), 0))
            ).one()
        return int(count), int(total)

    def _delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 500):
            part = list(keys[start : start + 500])
            with self._engine.begin() as conn:
                conn.execute(delete(FeatureCacheRow).where(FeatureCacheRow.key.in_(part)))
            if self._root is not None:
                self._remove_blobs(part)

    def _read_blob(self, key: str) -> bytes | None:
        from dipro_fhir.core import staging

        try:
            return staging.read_bytes(self._blob_location(key))
        except FileNotFoundError:
            return None

    def _remove_blobs(self, keys: Sequence[str]) -> None:
        import fsspec

        for key in keys:
            fs, path = fsspec.core.url_to_fs(self._blob_location(key))
            if fs.exists(path):
                fs.rm(path)

"""The shared feature cache on a real PostgreSQL: bounded by last use, corrupt entries never
used, shared by processes and surviving restarts, and the fsspec blob backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from dipro_fhir.store.feature_cache import CachedFeatures, FeatureCache, FeatureKey
from dipro_fhir.store.models import FeatureCacheRow

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def _value(seed: int, width: int = 64) -> CachedFeatures:
    rng = np.random.default_rng(seed)
    boxes = rng.uniform(0, 100, size=(10, 4)).astype(np.float32)
    boxes[3] = np.nan
    mask = np.ones(10, dtype=bool)
    mask[3] = False
    return CachedFeatures(
        features=rng.normal(size=(10, width)).astype(np.float16),
        boxes=boxes,
        region_mask=mask,
        qc=(("regions-partial", "1 regions missing"),),
    )


def _key(i: int, *, prep: str = "decode/1;crop=32", digest: str = "d" * 64) -> FeatureKey:
    return FeatureKey(f"1.2.826.0.1.{i}", 1, prep, digest)


def _same(a: CachedFeatures, b: CachedFeatures) -> bool:
    return (
        np.array_equal(a.features, b.features)
        and np.array_equal(a.boxes, b.boxes, equal_nan=True)
        and np.array_equal(a.region_mask, b.region_mask)
        and a.qc == b.qc
    )


def test_round_trip_and_any_key_part_change_misses(migrated_pg_url: str) -> None:
    cache = FeatureCache(sa.create_engine(migrated_pg_url), max_bytes=1 << 30)
    cache.put_many([(_key(1), _value(1))])
    found = cache.get(_key(1)).value
    assert found is not None
    assert _same(found, _value(1))
    assert found.features.dtype == np.float16
    for changed in (
        FeatureKey("1.2.826.0.1.1", 2, "decode/1;crop=32", "d" * 64),  # frame
        _key(1, prep="decode/2;crop=32"),  # decoder version
        _key(1, prep="decode/1;crop=224"),  # crop size
        _key(1, digest="e" * 64),  # backbone weights
    ):
        assert cache.get(changed).value is None


def test_eviction_removes_the_least_recently_used(migrated_pg_url: str) -> None:
    engine = sa.create_engine(migrated_pg_url)
    one = len(_value(0).to_bytes())
    cache = FeatureCache(engine, max_bytes=int(2.5 * one))
    cache.put_many([(_key(1), _value(1))])
    cache.put_many([(_key(2), _value(2))])
    assert cache.get(_key(1)).value is not None  # 1 used after 2: 2 is now the oldest
    cache.put_many([(_key(3), _value(3))])
    assert cache.get(_key(2)).value is None
    assert cache.get(_key(1)).value is not None
    assert cache.get(_key(3)).value is not None
    entries, total = cache.size()
    assert entries == 2
    assert total <= int(2.5 * one)


def test_corrupt_or_partial_entry_is_reported_removed_and_never_used(
    migrated_pg_url: str,
) -> None:
    engine = sa.create_engine(migrated_pg_url)
    cache = FeatureCache(engine, max_bytes=1 << 30)
    cache.put_many([(_key(1), _value(1)), (_key(2), _value(2))])
    table = FeatureCacheRow.__table__
    with engine.begin() as conn:
        blob = conn.execute(sa.select(table.c.payload).where(table.c.key == _key(1).digest))
        flipped = bytearray(blob.scalar_one())
        flipped[len(flipped) // 2] ^= 0xFF
        conn.execute(
            table.update().where(table.c.key == _key(1).digest).values(payload=bytes(flipped))
        )
        truncated = conn.execute(
            sa.select(table.c.payload).where(table.c.key == _key(2).digest)
        ).scalar_one()[:100]
        conn.execute(table.update().where(table.c.key == _key(2).digest).values(payload=truncated))
    for key in (_key(1), _key(2)):
        lookup = cache.get(key)
        assert lookup.value is None
        assert lookup.corrupt == "checksum mismatch"
        assert cache.get(key).corrupt is None  # removed: now a plain miss
    assert cache.size()[0] == 0


def test_fsspec_backend_keeps_blobs_outside_and_detects_a_missing_blob(
    migrated_pg_url: str, tmp_path: Path
) -> None:
    engine = sa.create_engine(migrated_pg_url)
    cache = FeatureCache(engine, max_bytes=1 << 30, object_store=f"file://{tmp_path}/blobs")
    cache.put_many([(_key(1), _value(1)), (_key(2), _value(2))])
    blobs = sorted((tmp_path / "blobs").rglob("*.npz"))
    assert len(blobs) == 2
    found = cache.get(_key(1)).value
    assert found is not None
    assert _same(found, _value(1))
    (tmp_path / "blobs" / _key(2).digest[:2] / f"{_key(2).digest}.npz").unlink()
    assert cache.get(_key(2)).corrupt == "entry has no payload"


_WORKER = """
import sys
import numpy as np
import sqlalchemy as sa
sys.path[:0] = {paths!r}
from dipro_fhir.store.feature_cache import FeatureCache
from tests.integration.store.test_feature_cache import _key, _value, _same
cache = FeatureCache(sa.create_engine(sys.argv[1]), max_bytes=1 << 30)
first, last, check = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
cache.put_many([(_key(i), _value(i)) for i in range(first, last)])
for i in map(int, check):
    found = cache.get(_key(i)).value
    assert found is not None and _same(found, _value(i)), i
print("ok", cache.size()[0])
"""


def _worker(url: str, first: int, last: int, *check: int) -> subprocess.Popen[str]:
    code = _WORKER.format(paths=[str(REPO), str(REPO / "model")])
    args = [sys.executable, "-c", code, url, str(first), str(last), *map(str, check)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_worker_processes_share_the_cache_and_it_survives_restarts(
    migrated_pg_url: str,
) -> None:
    # Two OS processes write overlapping entries at the same time (insert-or-ignore).
    a, b = _worker(migrated_pg_url, 0, 30), _worker(migrated_pg_url, 20, 50)
    for proc in (a, b):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    # Fresh processes (a restart) read what the others wrote, entry for entry.
    c = _worker(migrated_pg_url, 0, 0, 0, 10, 25, 49)
    out, err = c.communicate(timeout=120)
    assert c.returncode == 0, err
    assert out.split() == ["ok", "50"]

"""Same seed, same bytes; a shard equals the same patients in the full run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from simulators import DatasetWriter, SimulationConfig, read_table, simulate
from simulators.dataset import TABLES, samples_table
from simulators.seeds import Stream, patient_rng

CFG = SimulationConfig(patients=30, days=1, seed=3, risk={"sepsis": 20.0}, chunk_patients=7)


def _write(path: Path, config: SimulationConfig) -> None:
    with DatasetWriter(path, config, fhir=True) as writer:
        for chunk in simulate(config):
            writer.write(chunk)


def test_same_seed_gives_identical_parquet_bytes(tmp_path: Path) -> None:
    _write(tmp_path / "a", CFG)
    _write(tmp_path / "b", CFG)
    for name in [*TABLES, "manifest"]:
        ext = "json" if name == "manifest" else "parquet"
        a = (tmp_path / "a" / f"{name}.{ext}").read_bytes()
        b = (tmp_path / "b" / f"{name}.{ext}").read_bytes()
        assert a == b, name


def test_different_seed_differs() -> None:
    a = samples_table(next(iter(simulate(CFG))))
    b = samples_table(
        next(iter(simulate(SimulationConfig(patients=30, days=1, seed=4, chunk_patients=7))))
    )
    assert not a.column("value").equals(b.column("value"))


def _rows(table: pa.Table, patient_ids: list[str]) -> pa.Table:
    mine = table.filter(
        pc.is_in(pc.cast(table.column("patient_id"), pa.string()), pa.array(patient_ids))
    )
    plain = pa.table(
        {
            n: pc.cast(c, c.type.value_type) if pa.types.is_dictionary(c.type) else c
            for n, c in zip(mine.column_names, mine.columns, strict=True)
        }
    )
    return plain.sort_by([(n, "ascending") for n in plain.column_names if n != "resource"] or [])


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("full")
    _write(path, CFG)
    return path


@pytest.mark.parametrize("name", ["samples", "ehr", "labels", "interventions", "patients"])
def test_shard_equals_full_run(tmp_path: Path, full: Path, name: str) -> None:
    shard = tmp_path / "shard"
    cfg = SimulationConfig(patients=30, days=1, seed=3, risk={"sepsis": 20.0}, chunk_patients=4)
    with DatasetWriter(shard, cfg, fhir=True) as writer:
        for chunk in simulate(cfg, indices=range(9, 20)):
            writer.write(chunk)
    ids = [cfg.patient_id(i) for i in range(9, 20)]
    a = _rows(read_table(full, name), ids)
    b = _rows(read_table(shard, name), ids)
    assert a.equals(b)
    assert a.num_rows or name in ("labels", "interventions")


def test_chunking_does_not_change_arrays() -> None:
    one = next(iter(simulate(SimulationConfig(patients=12, days=0.5, seed=9, chunk_patients=12))))
    parts = list(simulate(SimulationConfig(patients=12, days=0.5, seed=9, chunk_patients=5)))
    for sig, ch in one.channels.items():
        glued = np.concatenate(
            [np.where(p.channels[sig].sent, p.channels[sig].value, np.nan) for p in parts], axis=0
        )
        np.testing.assert_array_equal(np.where(ch.sent, ch.value, np.nan), glued, err_msg=sig.value)


def test_patient_streams_are_the_documented_spawn() -> None:
    import numpy.random as npr

    child = npr.SeedSequence(5).spawn(10)[7].spawn(3)[2]
    expected = npr.Generator(npr.PCG64(child)).random(4)
    np.testing.assert_array_equal(patient_rng(5, 7, Stream(2)).random(4), expected)

"""predictor.search.compare / `exante compare` and predictor.search.generators (seed 004 families)."""

import json
import warnings

import pytest
import torch

from predictor.cli.main import main
from predictor.engine.interval import Interval
from predictor.search.compare import DesignRow, _rank, compare
from predictor.search.generators import (
    TABLE5,
    ConvStackSpec,
    EncoderSpec,
    MLPSpec,
    equal_param_conv,
    spec_from_ref,
    table6_specs,
)
from profiling.errors import ExanteError
from profiling.model_refs import resolve_model

REFS = ["mlp:in=100,depth=100,width=10,out=1", "mlp:in=100,depth=10,width=100,out=1",
        "mlpseq:in=100,sizes=75-75-50-50-25-25-1"]


@pytest.mark.parametrize("spec", [
    MLPSpec(100, (10,) * 5), MLPSpec(100, (75, 50, 25), 3),
    ConvStackSpec((3, 8, 8), (4, 6), 5, 2), EncoderSpec(32, 4, 2, 64, 8, 3)])
def test_spec_refs_round_trip_and_count_params(spec):
    assert spec_from_ref(spec.ref) == spec
    model = resolve_model(spec.ref)
    assert sum(p.numel() for p in model.parameters()) == spec.params
    x = torch.zeros((2, *spec.input_shape))
    assert model(x).shape[0] == 2


def test_seed004_grids():
    grid = table6_specs()
    assert len(grid) == 18 and all(s.params == m["params"] for m, s in grid)
    assert sum(m["shape"] == "deep" for m, _ in grid) == 9
    assert all(MLPSpec(100, sizes[:-1], sizes[-1]).nodes + 1 == nodes
               for _, sizes, nodes, _ in TABLE5)
    wide = grid[1][1]
    conv = equal_param_conv(wide, (1, 10, 10))
    assert conv.depth == wide.depth and abs(conv.params / wide.params - 1) < 0.02
    for bad in ("convstack:in=1x4x4,filters=4,kernel=2", "mlpseq:in=10,sizes=5",
                "encoder:d=10,heads=3,layers=1", "convstack:filters=4", "mlpseq:in=x,sizes=3-1"):
        with pytest.raises(ExanteError):
            resolve_model(bad)


def test_compare_orders_ranks_and_ties():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = compare(REFS, "100", 32, mode="train_step", optimizer="adam")
    assert [d.ref for d in c.designs] == REFS
    by_energy = sorted(c.designs, key=lambda d: d.energy_j)
    assert [d.rank for d in by_energy] == [1, 2, 3]
    # the 100-deep MLP costs most per step (H100 reference: 3.15 J vs 0.48 J for 10 x 100)
    assert c.designs[0].rank == 3 and c.designs[0].energy_j > 3 * c.designs[1].energy_j
    for d in c.designs:
        assert d.energy_j_low < d.energy_j < d.energy_j_high and d.flops > 0
        assert d.kwh == pytest.approx(d.energy_j / 3.6e6 * c.pue)
    assert c.designs[2].params == 21576
    assert (c.designs[0].tie_group != c.designs[1].tie_group)


def test_rank_chains_overlapping_intervals():
    def row(ref, e, lo, hi):
        return DesignRow(ref, Interval(e, lo, hi), Interval.exact(1), 1, 1, 1, Interval.exact(0),
                         Interval.exact(0))
    rows = [row("a", 1.0, 0.9, 1.1), row("b", 1.05, 1.0, 1.2), row("c", 2.0, 1.9, 2.1),
            row("d", 1.15, 1.12, 1.3)]
    _rank(rows, "energy_j")
    assert [r.rank for r in rows] == [1, 2, 4, 3]
    assert rows[0].tie_group == rows[1].tie_group == rows[3].tie_group != rows[2].tie_group


def test_cli_compare_json_plot_and_errors(capsys, tmp_path):
    svg = tmp_path / "c.svg"
    assert main(["compare", *REFS[:2], "--input", "100", "--batch", "32", "--json",
                 "--epochs", "2", "--dataset-size", "1000", "--plot", str(svg)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [d["ref"] for d in out["designs"]] == REFS[:2]
    assert {"energy_j", "energy_j_low", "energy_j_high", "time_s", "params", "flops", "kwh",
            "co2_kg", "run_energy_j"} <= set(out["designs"][0])
    assert out["ranked_by"] == "run_energy_j" and svg.read_text().startswith("<?xml")
    assert main(["compare", REFS[0], "--input", "100", "--batch", "32"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("exante: error:") and "two designs" in err and "\n" not in err
    assert main(["compare", *REFS[:2], "--input", "100", "--batch", "32", "--epochs", "2"]) == 2
    assert "dataset-size" in capsys.readouterr().err


def test_design_row_holds_intervals_and_keeps_its_json_keys():
    """Issue 19: a compare row's energy, time, kWh and CO2 are Intervals; to_dict is flat,
    in the order of the JSON contract."""
    row = DesignRow("a", Interval(2.0, 1.0, 3.0), Interval(0.1, 0.05, 0.2), 20.0, 10, 1e6,
                    Interval(1e-6, 5e-7, 2e-6), Interval(4e-7, 2e-7, 8e-7))
    assert (row.energy_j, row.energy_j_low, row.energy_j_high) == (2.0, 1.0, 3.0)
    assert (row.kwh_high, row.co2_kg_low, row.time_s) == (2e-6, 2e-7, 0.1)
    d = row.to_dict()
    assert list(d) == ["ref", "energy_j", "energy_j_low", "energy_j_high", "time_s",
                       "time_s_low", "time_s_high", "power_w", "params", "flops", "kwh",
                       "kwh_low", "kwh_high", "co2_kg", "co2_kg_low", "co2_kg_high",
                       "run_energy_j", "memory_gb", "rank", "tie_group", "warnings"]

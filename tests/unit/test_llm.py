"""LLM training / serving ex ante (predictor/llm/, predictor/bench/mlenergy.py)."""

import json
import math

import pytest

from predictor.carbon.hardware import lookup
from predictor.carbon.llm import memory, mfu, parallel, serving
from profiling.errors import ExanteError


def test_zero_stages_divide_the_right_states():
    kw = dict(dp=8, tp=1, pp=1)
    none = memory.model_states_gb(1e9, "bf16", sharding="none", **kw)
    z1 = memory.model_states_gb(1e9, "bf16", sharding="zero1", **kw)
    z2 = memory.model_states_gb(1e9, "bf16", sharding="zero2", **kw)
    z3 = memory.model_states_gb(1e9, "bf16", sharding="zero3", **kw)
    assert none == pytest.approx(16) and z1 == pytest.approx(2 + 2 + 12 / 8)
    assert z2 == pytest.approx(2 + (2 + 12) / 8)
    assert z3 == pytest.approx(16 / 8)
    assert memory.model_states_gb(1e9, "bf16", sharding="fsdp", **kw) == z3
    assert memory.model_states_gb(1e9, "bf16", sharding="none", optimizer_dtype="bf16", **kw) \
        == pytest.approx(12)


def test_checkpointing_and_flash_shrink_activations():
    kw = dict(layers=32, hidden=4096, heads=32, seq_len=4096, micro_batch=1, tp=1)
    full = memory.activations_gb(checkpointing="none", flash=False, **kw)
    flash = memory.activations_gb(checkpointing="none", flash=True, **kw)
    ckpt = memory.activations_gb(checkpointing="full", flash=True, **kw)
    assert full > flash > ckpt
    assert flash == pytest.approx(32 * 4096 * 4096 * 34 / 1e9)


def test_auto_plan_reports_needs_and_has():
    p = memory.plan(175e9, "bf16", 80, dp=1, tp=1, pp=1, layers=96, hidden=12288, heads=96,
                    seq_len=2048, micro_batch=1)
    assert p.fits is False and "does not fit (needs" in p.verdict() and "has 80" in p.verdict()
    q = memory.plan(175e9, "bf16", 80, dp=128, tp=8, pp=1, layers=96, hidden=12288, heads=96,
                    seq_len=2048, micro_batch=1)
    assert q.fits is True and q.verdict().startswith("fits")


def test_parallel_overheads():
    assert parallel.bubble_fraction(1, 8) == 0 and parallel.bubble_fraction(4, 1) == 0.75
    assert parallel.ring_allreduce_s(1e9, 1, 100) == 0
    assert parallel.ring_allreduce_s(1e9, 2, 100) == pytest.approx(0.01)
    link = parallel.interconnect("ampere")
    assert link.intra_gbs == 300 and "default" in link.label
    with pytest.raises(ExanteError, match="unknown interconnect"):
        parallel.interconnect("ampere", "warp-drive")


def test_mfu_table_matches_runs_and_loro_is_honest():
    runs = mfu.load_runs()
    assert len(runs) >= 10 and all(r.row["source"] for r in runs)
    gpt3 = next(r for r in runs if r.run == "gpt3-175b")
    assert gpt3.mfu_published == pytest.approx(6 * 175e9 * 300e9 / (3552000 * 3600 * 125e12))
    res = mfu.loro_residuals(runs, slope=False)
    assert len(res) == len(runs) and any(abs(v) > 0.05 for v in res.values())
    est = mfu.default_mfu(lookup("a100-80gb"), 70e9)
    assert 0 < est.mfu_low < est.mfu < est.mfu_high <= 1 and "ampere" in est.source
    unseen = mfu.default_mfu(lookup("mi300x"), 70e9)
    assert "pooled" in unseen.source
    with pytest.raises(ExanteError):
        mfu.default_mfu(lookup("h100"), 1e9, flavour="vibes")


def test_serving_energy_scales_sensibly():
    lo = serving.serving_energy(8e9, "h100", 1, 8)
    hi = serving.serving_energy(8e9, "h100", 1, 128)
    assert hi.energy_per_1k_output_tokens_j < lo.energy_per_1k_output_tokens_j   # batching
    big = serving.serving_energy(70e9, "h100", 1, 8)
    assert big.energy_per_1k_output_tokens_j > lo.energy_per_1k_output_tokens_j
    r = serving.serving_energy(8e9, "h100", 1, 8, prompt_tokens=1000, output_tokens=0)
    assert r.energy_per_request_j == pytest.approx(r.energy_per_1k_prompt_tokens_j)
    with pytest.raises(ExanteError, match="weight precision"):
        serving.serving_energy(8e9, "h100", 1, 8, precision="fp3")


def test_moe_reads_the_expected_union_of_routed_experts():
    pr = serving.params_read
    assert pr(64, 8e9, 8e9) == 8e9                                  # dense: every weight
    assert pr(1, 235e9, 22e9) == pytest.approx(22e9)                # one token: its experts
    assert pr(8, 235e9, 22e9) == pytest.approx(235e9 * (1 - (1 - 22 / 235) ** 8))
    assert 22e9 * 2 < pr(8, 235e9, 22e9) < 22e9 * 8                 # overlap between tokens
    assert pr(4096, 235e9, 22e9) == pytest.approx(235e9)            # large batch: all experts
    moe8 = serving.roofline_step_s(lookup("h100"), 8, 8, 235e9, 22e9, "bf16")
    assert moe8 == pytest.approx(2 * pr(8, 235e9, 22e9) / (8 * 3350e9))


def test_serving_pays_the_allreduce_across_gpus_and_costs_fp8_at_the_16_bit_rate():
    b200 = lookup("b200")
    a, t_fix, t_tok, t_ar, _ = serving.shipped_coefficients("b200")
    assert t_ar > 0                                   # fitted > 0 on B200 (0 on H100)
    for n in (1, 4):
        e = serving.serving_energy(70e9, "b200", n, 16).energy_per_1k_output_tokens_j / 1000
        want = (a * serving.decode_feature(b200, n, 16, 70e9, 70e9, "bf16")
                + n * b200.tdp_w * (t_fix / 16 + t_tok) + (n - 1) * b200.tdp_w * t_ar)
        assert e == pytest.approx(want)
    assert serving.compute_peak_tflops(b200, "fp8") == serving.compute_peak_tflops(b200, "bf16")
    assert len(serving.shipped_coefficients("a100-80gb")) == 5     # geometric-mean fallback


def _fixture(tmp_path):
    (tmp_path / "tasks").mkdir()
    confs = []
    for model, p in (("m/a", 8.0), ("m/b", 14.0), ("m/c", 32.0)):
        for b in (8, 64):
            step = 2 * p * 1e9 / 3.35e12 + 0.003
            e = 700 * step / b + 700 * 2 * p * 1e9 / 989.5e12 * 2
            confs.append({"model_id": model, "gpu_model": "H100", "num_gpus": 1,
                          "max_num_seqs": b, "total_params_billions": p,
                          "activated_params_billions": p, "weight_precision": "bfloat16",
                          "avg_output_len": 500, "energy_per_token_joules": e,
                          "output_throughput_tokens_per_sec": b / step})
    (tmp_path / "tasks" / "chat.json").write_text(json.dumps({"configurations": confs}))
    return tmp_path


def test_mlenergy_bench_recovers_a_model_it_can_express(tmp_path, capsys):
    from predictor.bench.mlenergy import run_mlenergy_bench
    from predictor.cli.main import main

    r = run_mlenergy_bench(_fixture(tmp_path))
    assert r["rows"] == 6 and r["models"] == 3
    assert r["overall"]["mape_pct"] < 2          # exact structure: a=1, t_fix=3 ms
    c = r["coefficients_all_rows"]["h100"]
    assert c["fixed_step_s"] == pytest.approx(0.003, rel=0.05) and c["a"] == pytest.approx(1, rel=0.05)
    assert main(["bench", "mlenergy", str(tmp_path), "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"overall", "per_gpu", "per_model"} <= set(out)
    assert main(["bench", "mlenergy", str(tmp_path / "nope")]) == 2


def test_physics_throughput_small_transformer():
    from predictor.carbon.llm.throughput import TransformerConfig, estimate

    cfg = TransformerConfig(layers=4, hidden=1024, heads=16, seq_len=1024, tp=1, pp=1,
                            global_batch_tokens=8192)
    e = estimate(cfg, lookup("h100"), 8)
    assert 0 < e.mfu < 1 and e.parts["dp"] == 8 and e.parts["micro_batches"] == 1
    assert e.device_hours(1e9) > 0 and math.isfinite(e.step_time_s)
    slow = estimate(TransformerConfig(**{**cfg.__dict__, "flash": False}), lookup("h100"), 8)
    assert slow.step_time_s > e.step_time_s


def test_serving_unseen_gpu_says_so_and_cli(capsys):
    from predictor.cli.main import main

    r = serving.serving_energy(8e9, "a100-80gb", 1, 16)
    assert "no ML.ENERGY rows on a100-80gb" in r.source
    assert main(["calc", "--params", "8e9", "--device", "h100", "--concurrency", "32",
                 "--requests", "1000", "--intensity", "coal", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["energy_kwh"] == pytest.approx(out["device_energy_kwh"] * 1.58)
    assert out["device_energy_kwh"] == pytest.approx(out["energy_per_request_j"] * 1000 / 3.6e6)
    assert main(["calc", "--device", "h100", "--concurrency", "32"]) == 2


def test_tight_fit_is_flagged():
    p = memory.MemoryPlan(23.7, 0.0, 23.7, 24.0, True, "zero3", "none", "")
    assert "within 10 %" in p.verdict()
    assert "within" not in memory.MemoryPlan(10, 0, 10, 24.0, True, "none", "none", "").verdict()


def test_shipped_mfu_table_is_the_fit_of_the_shipped_runs():
    """llm_mfu.csv must be what derive_mfu.py fits on llm_runs.csv (no drift, no hand edit)."""
    runs = mfu.load_runs()
    t = mfu.shipped_table()
    fitted = mfu.fit_table(runs, slope=bool(t["slope"]))
    for gen, log_m in t["by_gen"].items():
        assert math.exp(log_m) == pytest.approx(math.exp(fitted["by_gen"][gen]), abs=1e-4)
    res = list(mfu.loro_residuals(runs, slope=bool(t["slope"])).values())
    assert t["q_low"] == pytest.approx(mfu._quantile(res, 0.05), abs=1e-4)
    assert t["q_high"] == pytest.approx(mfu._quantile(res, 0.95), abs=1e-4)
    assert t["goodput"] == pytest.approx(mfu.goodput(runs)[0], abs=1e-4)


@pytest.mark.parametrize("extra, match", [
    (["--seq-len", "abc"], "seq_len must be"),
    (["--layers", "4"], "all of layers, hidden and heads"),
    (["--layers", "4", "--hidden", "100", "--heads", "3"], "multiple of heads"),
    (["--interconnect", "foo", "--physics"], "unknown interconnect"),
    (["--active-params", "abc"], "active_params"),
    (["--concurrency", "8", "--weights", "fp3"], "serving mode (--concurrency) takes no --tokens"),
])
def test_llm_cli_bad_input_is_one_line(extra, match, capsys):
    from predictor.cli.main import main

    rc = main(["calc", "--params", "7e9", "--tokens", "1e9", "--device", "h100", "--count", "8",
               *extra])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and match in err, err

"""HTML of ``exante serve``: the two forms (POST), result pages led by a breakdown chart
(inline SVG, no script, no CDN) and error pages. Every echoed input goes through
:func:`html.escape`; numbers shown for a check carry ``data-key``/``data-value``."""

from __future__ import annotations

import functools
import html

from predictor.carbon.calc import DEFAULT_PUE as CALC_DEFAULT_PUE
from predictor.carbon.calc import human_energy, human_mass
from predictor.carbon.hardware import catalogue
from predictor.carbon.regions import DEFAULT_PUE, grid_regions
from predictor.cli.serve.forms import CALC_CHOICES, DTYPES, INPUT_DTYPES, OPTIMIZERS, WEIGHTS

_STYLE = """body{font-family:system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem}
form{border:1px solid #ccc;border-radius:6px;padding:1rem;margin:1rem 0}
label{display:inline-block;min-width:13rem;margin:.2rem 0}input,select{width:15rem}
.err{color:#a00;font-weight:bold}table{border-collapse:collapse}td,th{padding:.15rem .6rem;
text-align:left}th{border-bottom:1px solid #999}small{color:#555}pre{white-space:pre-wrap}
.big{font-size:1.4rem}"""
_E = html.escape


def page(title: str, body: str) -> str:
    """A whole HTML page with ``title`` and ``body`` (escaped title)."""
    lists = _datalists() if "<form" in body else ""
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_E(title)}"
            f"</title><style>{_STYLE}</style></head><body><h1>{_E(title)}</h1>{body}{lists}"
            f"<p><a href='/'>back to the forms</a></p></body></html>")


_LISTS = {"device": "devices", "hardware": "gpus", "region": "regions"}


@functools.lru_cache(maxsize=1)
def _datalists() -> str:
    """Suggestions for the device, hardware and region inputs (catalogue and grid keys)."""
    specs = catalogue()
    lists = {"devices": [h.key for h in specs],
             "gpus": [h.key for h in specs if h.kind == "gpu"],
             "regions": sorted(grid_regions())}
    return "".join(f"<datalist id={k}>" + "".join(f"<option value=\"{_E(v, quote=True)}\">"
                                                  for v in vals) + "</datalist>"
                   for k, vals in lists.items())


def _input(name: str, label: str, values: dict, default: str = "", hint: str = "") -> str:
    v = values.get(name, default)
    lst = f" list={_LISTS[name]}" if name in _LISTS else ""
    return (f"<label for={name}>{_E(label)}</label> <input id={name} name={name}{lst} "
            f"value=\"{_E(v, quote=True)}\"> <small>{_E(hint)}</small><br>")


def _select(name: str, label: str, values: dict, options: tuple[str, ...], hint: str) -> str:
    chosen = values.get(name, "")
    opts = "".join(f"<option value=\"{_E(o, quote=True)}\"{' selected' if o == chosen else ''}>"
                   f"{_E(o or '(default)')}</option>" for o in ("", *options))
    extra = (f"<option value=\"{_E(chosen, quote=True)}\" selected>{_E(chosen)}</option>"
             if chosen and chosen not in options else "")
    return (f"<label for={name}>{_E(label)}</label> <select id={name} name={name}>{opts}{extra}"
            f"</select> <small>{_E(hint)}</small><br>")


_LLM_FIELDS = ("params", "tokens", "flops", "active_params", "mfu", "mfu_mode", "mfu_flavour",
               "dtype", "sharding", "checkpointing", "optimizer_dtype", "layers", "hidden",
               "heads", "seq_len", "micro_batch", "global_batch_tokens", "flash",
               "fused_optimizer", "interconnect", "dp", "tp", "pp")


def calc_form(values: dict | None = None) -> str:
    """The calculator form (HTML)."""
    v = {} if values is None else values
    d = {} if values is not None else {"device": "v100", "count": "8", "hours": "36",
                                       "region": "aws:us-east-1"}
    f = lambda n, lab, hint="": _input(n, lab, v, d.get(n, ""), hint)  # noqa: E731
    ch = lambda n, lab, hint: _select(n, lab, v, CALC_CHOICES[n][0], hint)  # noqa: E731
    llm_open = " open" if any(k in v for k in _LLM_FIELDS) else ""
    return "".join([
        "<form id=calc-form action='/calc' method=post><h2>Calculator</h2>",
        f("device", "device", "e.g. v100, a100-80gb, h100, tpu-v3"),
        f("count", "count", "devices (default 1)"), f("hours", "hours (wall-clock)", "empty for an LLM run (below)"),
        f("gpu_hours", "or device-hours"),
        f("power_w", "power per device (W)", "empty: catalogue TDP"),
        f("utilization", "or utilization (0-1]"),
        f("pue", "PUE", f"empty: {CALC_DEFAULT_PUE:g} (calc's default)"),
        f("region", "region", "aws:.., gcp:.., azure:.., france, us:average"),
        f("intensity", "or intensity", "gCO2eq/kWh, or coal|gas|hydro|oil|nuclear"),
        f("offset_pct", "offset (%)"),
        ch("tpu_power", "TPU power", "measured: published per-chip; tdp: the chip TDP"),
        f"<details id=llm-fields{llm_open}><summary>LLM-scale training instead of hours"
        "</summary>",
        f("params", "parameters N", "e.g. 70e9"), f("tokens", "tokens D", "FLOPs = 6·N·D"),
        f("flops", "or training FLOPs"),
        f("active_params", "active parameters", "MoE: activated per token"),
        f("mfu", "MFU (0-1]", "empty: ex-ante default with an interval"),
        ch("mfu_mode", "MFU model", "default: published runs; physics: the transformer priced"),
        ch("mfu_flavour", "MFU flavour", "published hours (restarts incl.) or training"),
        ch("dtype", "dtype", "bf16 (a device without it falls back)"),
        ch("sharding", "sharding", "auto: the least that fits"),
        ch("checkpointing", "activation checkpointing", "auto: the least that fits"),
        ch("optimizer_dtype", "optimizer state dtype", "fp32: 12 bytes/param"),
        f("layers", "layers", "layers, hidden, heads: all or none"), f("hidden", "hidden size"),
        f("heads", "attention heads"), f("seq_len", "sequence length", "default 2048"),
        f("micro_batch", "micro-batch per device", "default 1"),
        f("global_batch_tokens", "tokens per step", "default 4e6"),
        ch("flash", "FlashAttention", "on"), ch("fused_optimizer", "fused Adam", "on"),
        f("interconnect", "interconnect INTRA[,INTER]", "e.g. nvlink3,ib-hdr"),
        f("dp", "data parallel", "default count/(tp·pp)"), f("tp", "tensor parallel"),
        f("pp", "pipeline parallel"),
        "</details><button type=submit>calculate</button></form>"])


def serving_form(values: dict | None = None) -> str:
    """The LLM serving form (HTML)."""
    v = {} if values is None else values
    d = {} if values is not None else {"params": "8e9", "device": "h100", "count": "1",
                                       "concurrency": "32", "requests": "1000"}
    f = lambda n, lab, hint="": _input(n, lab, v, d.get(n, ""), hint)  # noqa: E731
    return "".join([
        "<form id=serving-form action='/serving' method=post><h2>LLM serving</h2>",
        f("params", "parameters", "e.g. 8e9"),
        f("active_params", "active parameters", "MoE: activated per token"),
        f("device", "device", "GPU, e.g. h100, b200, a100-80gb"),
        f("count", "GPUs (tensor-parallel)", "default 1"),
        f("concurrency", "concurrency", "sequences served at once (vLLM max_num_seqs)"),
        f("requests", "requests", "default 1"),
        f("prompt_tokens", "prompt tokens / request", "default 1000"),
        f("output_tokens", "output tokens / request", "default 500"),
        _select("weights", "weights", v, WEIGHTS, "default bf16"),
        f("pue", "PUE", f"empty: {DEFAULT_PUE:g}"),
        f("region", "region"), f("intensity", "or intensity", "gCO2eq/kWh, or coal|gas|..."),
        "<button type=submit>estimate serving</button></form>"])


def estimate_form(values: dict | None = None) -> str:
    """The life-cycle estimate form (HTML)."""
    v = {} if values is None else values
    d = {} if values is not None else {
        "model": "mlp:in=100,depth=10,width=100,out=1", "input": "100", "batch": "256",
        "epochs": "10", "dataset_size": "100000"}
    f = lambda n, lab, hint="": _input(n, lab, v, d.get(n, ""), hint)  # noqa: E731
    return "".join([
        "<form id=estimate-form action='/estimate' method=post>"
        "<h2>Predict / estimate (fitted model)</h2>",
        f("model", "model reference", "torchvision:NAME, timm:NAME, hf:TYPE, mlp:.., "
          "mlpseq:.., convstack:.., encoder:.."),
        f("input", "per-sample input", "e.g. 3x224x224 (no batch dimension)"),
        _select("input_dtype", "input dtype", v, INPUT_DTYPES, "default float32; int64 for "
                "token ids"),
        "<h3>Training</h3>",
        f("epochs", "epochs"), f("dataset_size", "dataset size (samples)"),
        f("tokens", "or training tokens"), f("batch", "batch (global)"),
        _select("optimizer", "optimizer", v, OPTIMIZERS, "default adam"),
        _select("dtype", "dtype", v, DTYPES, "default fp32 (training and serving)"),
        f("trials", "search / tuning trials", "runs like the final one"),
        "<h3>Serving</h3>",
        f("inferences", "requests served"), f("inference_batch", "serving batch", "default 1"),
        "<h3>Where it runs</h3>",
        f("hardware", "hardware", "default h100; other GPUs by datasheet transfer"),
        f("gpus", "GPUs (data parallel)", "default 1"),
        f("pue", "PUE", f"empty: {DEFAULT_PUE:g} (estimate's default)"),
        f("region", "region", "empty: world average"),
        f("intensity", "or intensity", "gCO2eq/kWh"),
        "<button type=submit>estimate</button></form>"])


def index_page() -> str:
    """The start page with the three forms."""
    return page("exante — energy and CO2 before training",
                calc_form() + serving_form() + estimate_form())


def _fmt(x: float) -> str:
    return f"{x:,.4g}" if 1e-3 <= abs(x) < 1e7 or x == 0 else f"{x:.3e}"


def _cell(key: str, value: float, text: str | None = None) -> str:
    return (f"<td data-key={_E(key)} data-value=\"{value!r}\">"
            f"{_E(text if text is not None else _fmt(value))}</td>")


def _energy_unit(top_kwh: float) -> tuple[str, float]:
    """A unit in which the largest bar reads >= 0.1 (and under 10,000 when MWh helps): MWh,
    kWh, Wh or J (values given in kWh)."""
    if top_kwh >= 1e4:
        return "MWh", 1e-3
    for unit, factor in (("kWh", 1.0), ("Wh", 1e3), ("J", 3.6e6)):
        if top_kwh * factor >= 0.1:
            return unit, factor
    return "J", 3.6e6


def interval_chart(rows: list[tuple[str, float, float | None, float | None]], label: str,
                   unit: str = "kWh") -> str:
    """Horizontal bars of ``(name, value, low, high)`` in kWh with the interval as a whisker;
    drawn in MWh, kWh, Wh or J, whichever reads best."""
    top = max((max(v, h if h is not None else v) for _, v, _, h in rows), default=0) or 1.0
    unit, k = _energy_unit(top) if unit == "kWh" else (unit, 1.0)
    x0, span, out, y = 190, 330, [], 12
    for name, v, lo, hi in rows:
        w = span * v / top
        out.append(f'<text x="0" y="{y + 14}">{_E(name)}</text><rect x="{x0}" y="{y}" '
                   f'width="{w:.1f}" height="20" fill="#4a7ab5"><title>{_E(name)}: '
                   f'{_fmt(v * k)} {_E(unit)}</title></rect>')
        txt = f"{_fmt(v * k)} {unit}"
        if lo is not None and hi is not None:
            a, b, m = x0 + span * lo / top, x0 + span * hi / top, y + 10
            out.append(f'<path d="M{a:.1f} {m}H{b:.1f}M{a:.1f} {m - 6}v12M{b:.1f} {m - 6}v12" '
                       f'stroke="#222" stroke-width="1.5" fill="none"></path>')
            txt = f"{_fmt(v * k)} [{_fmt(lo * k)}, {_fmt(hi * k)}] {unit}"
        out.append(f'<text x="{x0 + span + 12}" y="{y + 14}">{_E(txt)}</text>')
        y += 30
    return (f'<svg role="img" aria-label="{_E(label, quote=True)}" width="820" '
            f'height="{y + 8}" font-size="13" xmlns="http://www.w3.org/2000/svg">'
            f'<title>{_E(label)}</title>{"".join(out)}</svg>')


def _training_rows(d: dict) -> str:
    """Rows of the LLM training plan, keyed as ``exante calc --json``: device-hours with
    their interval, the MFU with its source and interval, the memory verdict."""
    if d.get("training") is None:
        return ""
    t = d["training"]
    fits = {True: "fits", False: "does not fit", None: "not estimated"}[d["fits"]]
    rows = [f"<tr><td>device-hours, low</td>{_cell('device_hours_low', d['device_hours_low'])}"
            "</tr>",
            f"<tr><td>device-hours, high</td>"
            f"{_cell('device_hours_high', d['device_hours_high'])}</tr>",
            f"<tr><td>training FLOPs</td>{_cell('training.flops', t['flops'])}</tr>",
            f"<tr><td>MFU ({_E(str(t['mfu_flavour']))}; {_E(str(t['dtype']))} peak "
            f"{t['peak_tflops']:g} TFLOP/s)</td>{_cell('mfu', d['mfu'])}</tr>",
            f"<tr><td>MFU low</td>{_cell('mfu_low', d['mfu_low'])}</tr>",
            f"<tr><td>MFU high</td>{_cell('mfu_high', d['mfu_high'])}</tr>",
            f"<tr><td>MFU source</td><td data-key=mfu_source data-value="
            f"\"{_E(str(d['mfu_source']))}\">{_E(str(d['mfu_source']))}</td></tr>",
            f"<tr><td>parallel (dp, tp, pp)</td><td>{int(t['dp'])}, {int(t['tp'])}, "
            f"{int(t['pp'])}</td></tr>"]
    if d.get("memory_gb_per_device") is not None:
        rows.append(f"<tr><td>memory per device (GB)</td>"
                    f"{_cell('memory_gb_per_device', d['memory_gb_per_device'])}</tr>")
    verdict = t.get("memory_verdict") or fits
    rows.append(f"<tr><td>memory</td><td data-key=fits data-value=\"{_E(str(d['fits']))}\">"
                f"{_E(str(verdict))}</td></tr>")
    return "".join(rows)


def calc_page(r, values: dict) -> str:
    """The calculator result page (kWh, kg CO2eq, chart)."""
    d = r.to_dict()
    lo = hi = None
    if r.training is not None and r.device_hours > 0:   # energy scales with the device-hours
        lo, hi = d["device_hours_low"] / r.device_hours, d["device_hours_high"] / r.device_hours
    over = r.energy_kwh - r.device_energy_kwh
    dev = r.device_energy_kwh
    chart = interval_chart(
        [("device energy", dev, *((dev * lo, dev * hi) if lo else (None, None))),
         ("facility overhead (PUE)", over, *((over * lo, over * hi) if lo else (None, None)))],
        "energy breakdown" + (", with the device-hours interval" if lo else ""))
    devices = f"{r.count} × {r.device or 'custom'}"
    rows = "".join([
        f"<tr><td>devices</td><td>{_E(devices)}</td></tr>",
        f"<tr><td>device-hours</td>{_cell('device_hours', r.device_hours)}</tr>",
        _training_rows(d),
        f"<tr><td>power per device (W)</td>{_cell('power_w', r.power_w)}</tr>",
        f"<tr><td>device energy (before PUE)</td>{_cell('device_energy_kwh', r.device_energy_kwh, human_energy(r.device_energy_kwh))}</tr>",
        f"<tr><td>facility energy (PUE {r.pue:g})</td>{_cell('energy_kwh', r.energy_kwh, human_energy(r.energy_kwh))}</tr>",
        f"<tr><td>CO2eq at {r.grid_intensity_g_per_kwh:g} g/kWh ({_E(r.grid_label)})</td>"
        f"{_cell('co2_kg', r.co2_kg, human_mass(r.co2_kg))}</tr>",
        f"<tr><td>after offsets</td>{_cell('co2_kg_after_offset', r.co2_kg_after_offset, human_mass(r.co2_kg_after_offset))}</tr>"])
    srcs = "".join(f"<li><b>{_E(k)}</b>: {_E(v)}</li>" for k, v in r.sources.items())
    notes = "".join(f"<li>{_E(n)}</li>" for n in r.notes)
    return page("Calculator result", f"<p class=big>{_E(human_energy(r.energy_kwh))}, "
                f"{_E(human_mass(r.co2_kg))} CO2eq</p><h2>Energy breakdown</h2>{chart}"
                f"<table id=result>{rows}</table><h2>Sources</h2><ul>{srcs}</ul>"
                f"<h2>Notes</h2><ul>{notes}</ul>{calc_form(values)}")


def serving_page(r: dict, values: dict) -> str:
    """The serving report: J per 1k prompt / output tokens and per request (GPU), then the
    facility energy and CO2 of the requests."""
    chart = interval_chart([("1k prompt tokens", r["energy_per_1k_prompt_tokens_j"], None, None),
                            ("1k output tokens", r["energy_per_1k_output_tokens_j"], None, None),
                            ("one request", r["energy_per_request_j"], None, None)],
                           "GPU energy per 1k tokens and per request (J)", unit="J")
    keys = (("energy per 1k prompt tokens (J, GPU)", "energy_per_1k_prompt_tokens_j"),
            ("energy per 1k output tokens (J, GPU)", "energy_per_1k_output_tokens_j"),
            ("energy per request (J, GPU)", "energy_per_request_j"),
            ("decode step (s)", "decode_step_s"), ("requests", "requests"),
            ("device energy (kWh, before PUE)", "device_energy_kwh"),
            (f"facility energy (kWh, PUE {r['pue']:g})", "energy_kwh"),
            (f"kg CO2eq at {r['grid_intensity_g_per_kwh']:g} g/kWh ({r['grid']})", "co2_kg"))
    rows = "".join(f"<tr><td>{_E(label)}</td>{_cell(k, float(r[k]))}</tr>" for label, k in keys)
    notes = "".join(f"<li>{_E(str(n))}</li>" for n in r.get("notes", []))
    lead = (f"<p class=big>{_E(_fmt(r['energy_per_request_j']))} J per request (GPU); "
            f"{_E(human_energy(r['energy_kwh']))}, {_E(human_mass(r['co2_kg']))} CO2eq for "
            f"{_E(_fmt(r['requests']))} request(s)</p>")
    return page("Serving estimate", f"{lead}<h2>GPU energy</h2>{chart}<table id=result>{rows}"
                f"</table><h2>Source</h2><p>{_E(str(r['source']))}</p><h2>Notes</h2>"
                f"<ul>{notes}</ul>{serving_form(values)}")


def estimate_page(report, values: dict) -> str:
    """The estimate result page (kWh, kg CO2eq per stage, chart)."""
    d = report.to_dict()
    stages = d.get("stages", {})
    chart = interval_chart([(name, s["energy_kwh"], s.get("energy_kwh_low"),
                             s.get("energy_kwh_high")) for name, s in stages.items()],
                           "facility energy per stage, with its interval")
    head = ("<tr><th>stage</th><th>calls</th><th>GPU-hours</th><th>kWh (facility)</th>"
            "<th>low</th><th>high</th><th>kg CO2eq</th><th>low</th><th>high</th></tr>")
    body = "".join(
        f"<tr><td>{_E(name)}</td><td>{int(s.get('calls', 0))}</td>"
        f"{_cell(f'{name}.gpu_hours', s['gpu_hours'])}"
        + "".join(_cell(f"{name}.{k}", s[k]) for k in (
            "energy_kwh", "energy_kwh_low", "energy_kwh_high", "co2_kg", "co2_kg_low",
            "co2_kg_high")) + "</tr>" for name, s in stages.items())
    total = ("<tr><td><b>total</b></td><td></td><td></td>"
             + "".join(_cell(k, d[k]) for k in (
                 "total_energy_kwh", "total_energy_kwh_low", "total_energy_kwh_high",
                 "co2_kg", "co2_kg_low", "co2_kg_high")) + "</tr>")
    notes = "".join(f"<li>{_E(str(n))}</li>" for n in d.get("notes", []))
    lead = (f"<p class=big>{_E(human_energy(d['total_energy_kwh']))}, "
            f"{_E(human_mass(d['co2_kg']))} CO2eq <small>(interval "
            f"{_E(human_mass(d['co2_kg_low']))} – {_E(human_mass(d['co2_kg_high']))})</small></p>")
    return page("Life-cycle estimate", f"{lead}<h2>Energy per stage (facility, with interval)</h2>{chart}"
                f"<table id=result>{head}{body}{total}</table>"
                f"<p><small>PUE {d['pue']:g}; grid {d['grid_intensity_g_per_kwh']:g} gCO2eq/kWh "
                f"({_E(str(d['grid_label']))})</small></p><h2>Notes</h2><ul>{notes}</ul>"
                f"<details><summary>full report</summary><pre>{_E(report.to_text())}</pre>"
                f"</details>{estimate_form(values)}")


def error_page(message: str, form: str = "", values: dict | None = None) -> str:
    """A 400 page: the one-line message above the form, values kept."""
    again = {"calc": calc_form, "estimate": estimate_form, "serving": serving_form}.get(form)
    return page("Input error", f"<p class=err>{_E(message)}</p>"
                + (again(values or {}) if again else ""))

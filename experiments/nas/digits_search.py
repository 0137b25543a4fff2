"""Energy-aware architecture search on a small real task (scikit-learn's digits), on CPU.

Search space: MLPs ``64 -> widths -> 10`` (1-4 hidden layers, widths 8-512).  Each candidate is
*trained* here on CPU (PyTorch, Adam lr 1e-3, batch 32, ``--epochs`` epochs on 80 % of the
1 797 digits; accuracy on the other 20 %), and priced by the energy objective: the predicted
H100 energy of its training run = epochs x ceil(n_train / 32) x the predicted energy of one
Adam train step at batch 32 (``predictor.search.nas.EnergyObjective``, the shipped h100 artifact;
data loading and evaluation not counted).  With Optuna installed (``exante[nas]``) the search is
a two-objective NSGA-II study (maximise accuracy, minimise predicted energy); without it, random
search with the same budget.

The chosen design is the cheapest one on the Pareto front whose accuracy is within
``--tolerance`` (default 1 point) of the best accuracy found; its predicted saving is stated
against the most accurate design.  Writes ``digits_trials.csv``, ``digits_pareto.png`` and
``digits_search.md`` to ``--out``::

    python experiments/nas/digits_search.py --write-results     # or --out DIR
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments.outputs import add_output_args, output_dir  # noqa: E402
from predictor.cli.progress import bar  # noqa: E402
from predictor.search.generators import MLPSpec  # noqa: E402
from predictor.search.nas import EnergyObjective, optuna_objective  # noqa: E402

WIDTHS = (8, 16, 32, 64, 128, 256, 512)


def load_digits_split(seed: int):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)


def train_accuracy(spec: MLPSpec, data, epochs: int, batch: int, seed: int) -> float:
    """Train ``spec`` on CPU and return held-out accuracy."""
    xtr, xte, ytr, yte = data
    torch.manual_seed(seed)
    model = spec.build()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr).long()
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = model(torch.from_numpy(xte)).argmax(1).numpy()
    return float((pred == yte).mean())


def pareto_mask(acc, energy) -> np.ndarray:
    """Non-dominated points (higher accuracy, lower energy)."""
    acc, energy = np.asarray(acc), np.asarray(energy)
    keep = np.ones(len(acc), bool)
    for i in range(len(acc)):
        dom = (acc >= acc[i]) & (energy <= energy[i]) & ((acc > acc[i]) | (energy < energy[i]))
        keep[i] = not dom.any()
    return keep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_output_args(ap, ROOT / "experiments/nas/results")
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tolerance", type=float, default=0.01, help="accuracy points (0.01 = 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-optuna", action="store_true", help="random search even with Optuna")
    ap.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    args = ap.parse_args(argv)
    args.out = output_dir(args, ROOT / "experiments/nas/results", "nas")
    torch.set_num_threads(1)
    data = load_digits_split(args.seed)
    n_train = len(data[0])
    steps = args.epochs * math.ceil(n_train / args.batch)
    objective = EnergyObjective("h100", mode="train_step", batch=args.batch, optimizer="adam")

    def suggest(trial):
        depth = trial.suggest_int("depth", 1, 4)
        return MLPSpec(64, tuple(trial.suggest_categorical(f"w{i}", WIDTHS)
                                 for i in range(depth)), 10)

    def accuracy(spec, trial=None):
        return train_accuracy(spec, data, args.epochs, args.batch, args.seed)

    t0 = time.time()
    try:
        if args.no_optuna:
            raise ImportError
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(directions=["maximize", "minimize"],
                                    sampler=optuna.samplers.NSGAIISampler(seed=args.seed,
                                                                          population_size=10))
        study.optimize(optuna_objective(objective, suggest, accuracy), n_trials=args.trials,
                       show_progress_bar=not args.quiet)          # tqdm, on stderr
        specs = [suggest(optuna.trial.FixedTrial(t.params)) for t in study.trials]
        accs = [t.values[0] for t in study.trials]
        method = f"Optuna {optuna.__version__} NSGA-II (population 10)"
    except ImportError:
        rng = np.random.default_rng(args.seed)
        specs = [MLPSpec(64, tuple(int(rng.choice(WIDTHS)) for _ in range(rng.integers(1, 5))),
                         10) for _ in range(args.trials)]
        accs = [accuracy(s) for s in bar(specs, desc="trials", unit="trial",
                                         enabled=not args.quiet)]
        method = "random search (Optuna not installed)"
    search_s = time.time() - t0
    scores = objective.score_many(specs)
    df = pd.DataFrame({"ref": [s.ref for s in specs], "depth": [s.depth for s in specs],
                       "params": [s.params for s in specs], "accuracy": accs,
                       "step_energy_j": scores["energy_j"],
                       "run_energy_j": scores["energy_j"] * steps,
                       "run_energy_j_low": scores["energy_j_low"] * steps,
                       "run_energy_j_high": scores["energy_j_high"] * steps})
    df = df.drop_duplicates("ref").reset_index(drop=True)
    df["pareto"] = pareto_mask(df["accuracy"], df["run_energy_j"])
    best = df.loc[df["accuracy"].idxmax()]
    ok = df[df["pareto"] & (df["accuracy"] >= best["accuracy"] - args.tolerance)]
    chosen = ok.loc[ok["run_energy_j"].idxmin()]
    saving = 1 - chosen["run_energy_j"] / best["run_energy_j"]
    df.to_csv(os.path.join(args.out, "digits_trials.csv"), index=False)
    _plot(df, chosen, best, os.path.join(args.out, "digits_pareto.png"), args)
    with open(os.path.join(args.out, "digits_search.md"), "w") as fh:
        fh.write("# Energy-aware search on scikit-learn digits\n\n"
                 f"Generated by `python experiments/nas/digits_search.py` ({method}, "
                 f"{args.trials} trials, {len(df)} distinct designs, {args.epochs} epochs each, "
                 f"trained on CPU in {search_s:.0f} s). Energy: predicted H100 training run "
                 f"({steps} Adam steps at batch {args.batch}; shipped h100 artifact).\n\n"
                 f"- Most accurate: `{best['ref']}` — accuracy {best['accuracy']:.3f}, predicted "
                 f"{best['run_energy_j']:.0f} J.\n"
                 f"- Chosen (cheapest on the Pareto front within {100 * args.tolerance:g} point"
                 f"{'s' if args.tolerance != 0.01 else ''} of the best): `{chosen['ref']}` — "
                 f"accuracy {chosen['accuracy']:.3f}, predicted {chosen['run_energy_j']:.0f} J "
                 f"[{chosen['run_energy_j_low']:.0f}–{chosen['run_energy_j_high']:.0f}].\n"
                 f"- Predicted saving of the chosen design: {100 * saving:.0f} % of the most "
                 "accurate design's training energy (a prediction for an H100, not a "
                 "measurement; both designs' intervals come from the same predictor).\n\n"
                 "| design | params | accuracy | predicted run energy (J) | Pareto |\n"
                 "|---|---|---|---|---|\n")
        for _, r in df.sort_values("run_energy_j").iterrows():
            fh.write(f"| `{r['ref']}` | {r['params']:,} | {r['accuracy']:.3f} | "
                     f"{r['run_energy_j']:.0f} | {'yes' if r['pareto'] else ''} |\n")
    print(f"{method}: best {best['ref']} acc {best['accuracy']:.3f} {best['run_energy_j']:.0f} J;"
          f" chosen {chosen['ref']} acc {chosen['accuracy']:.3f} {chosen['run_energy_j']:.0f} J;"
          f" saving {100 * saving:.0f} %")
    return 0


def _plot(df, chosen, best, path, args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.scatter(df["run_energy_j"], df["accuracy"], c="#999999", s=18, label="trained design")
    f = df[df["pareto"]].sort_values("run_energy_j")
    ax.step(f["run_energy_j"], f["accuracy"], where="post", color="#1f77b4", lw=1.2)
    ax.errorbar(f["run_energy_j"], f["accuracy"],
                xerr=[f["run_energy_j"] - f["run_energy_j_low"],
                      f["run_energy_j_high"] - f["run_energy_j"]],
                fmt="o", color="#1f77b4", capsize=2, lw=0.8, label="Pareto front (90 % interval)")
    ax.plot([chosen["run_energy_j"]], [chosen["accuracy"]], "*", ms=14, color="#2ca02c",
            label=f"chosen: {chosen['ref'].split(':', 1)[1]}")
    ax.plot([best["run_energy_j"]], [best["accuracy"]], "s", ms=8, mfc="none", color="#d62728",
            label=f"most accurate: {best['ref'].split(':', 1)[1]}")
    ax.set_xscale("log")
    ax.set_xlabel(f"predicted H100 training energy, {args.epochs} epochs (J)")
    ax.set_ylabel("held-out accuracy (digits)")
    ax.set_title("Energy-aware MLP search on scikit-learn digits (trained on CPU)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())

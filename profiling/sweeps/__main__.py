"""``python -m profiling.sweeps``: print each sweep's tasks, configurations and expected H100 minutes."""

from profiling.sweeps.registry import SWEEPS, estimate_sweep


def main() -> None:
    """Print one line per registered sweep (a command-line table, hence print)."""
    print(f"{'sweep':14s} {'tasks':>6s} {'configs':>8s} {'graph':>6s} {'models':>7s} {'H100 min':>9s}")
    for name in SWEEPS:
        e = estimate_sweep(name)
        print(f"{name:14s} {e['tasks']:6d} {e['layer_configs'] + e['model_configs']:8d} {e['graph_configs']:6d} "
              f"{e['model_configs']:7d} {e['expected_h100_s'] / 60:9.1f}")


if __name__ == "__main__":
    main()

"""Where experiment scripts write: a folder outside the repository unless asked otherwise.

``add_output_args(ap, tracked)`` gives a script ``--out DIR`` and ``--write-results``;
``output_dir(args, tracked, name)`` resolves them: ``--write-results`` writes into the tracked
results folder (updating the repository's numbers, on purpose), ``--out`` where given, and by
default ``$EXANTE_RESULTS/<name>`` (``<tmp>/exante-results/<name>`` when unset), so a run
never overwrites tracked files by accident.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def default_root() -> Path:
    """``$EXANTE_RESULTS``, else ``<tmp>/exante-results``."""
    return Path(os.environ.get("EXANTE_RESULTS") or Path(tempfile.gettempdir(), "exante-results"))


def add_output_args(ap, tracked: Path | str) -> None:
    """``--out DIR`` and ``--write-results`` (write into ``tracked``, the repository's copy)."""
    ap.add_argument("--out", default=None,
                    help=f"output folder (default: {default_root()}/<script>; the tracked "
                         f"results only with --write-results)")
    ap.add_argument("--write-results", action="store_true",
                    help=f"write into the repository's results ({tracked}): updates tracked files")


def output_dir(args, tracked: Path | str, name: str) -> str:
    """The folder to write to (created), announced on stderr; ``--out`` together with
    ``--write-results`` is refused unless they name the same folder."""
    if getattr(args, "write_results", False):
        if args.out and os.path.abspath(args.out) != os.path.abspath(tracked):
            sys.exit(f"error: --out {args.out} and --write-results ({tracked}) disagree; "
                     "give one")
        out = Path(tracked)
    elif args.out:
        out = Path(args.out)
    else:
        out = default_root() / name
        print(f"writing to {out} (the repository's results: --write-results)", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    return str(out)


def replace_readme_section(readme: Path, start: str, end: str, block: str) -> None:
    """Write ``block`` (markers included) over ``start ... end`` in ``readme`` (a generated
    README section); refuse a README without both markers."""
    import re

    text = readme.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise SystemExit(f"README.md has no {start} ... {end} markers")
    readme.write_text(re.sub(re.escape(start) + ".*?" + re.escape(end), lambda m: block, text,
                             flags=re.S), encoding="utf-8")
    print("README.md section updated")

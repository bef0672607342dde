"""``python -m emdash._docgen [--check]``: rewrite (or check) the docs' generated regions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._render import DOCS, GeneratedRegionError, render_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emdash._docgen",
        description="Rewrite the generated regions of the reference docs from the code's tables.",
    )
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a region is stale"
    )
    parser.add_argument(
        "--root", type=Path, default=Path("."), help="the repository root (default: .)"
    )
    args = parser.parse_args(argv)
    stale: list[str] = []
    for relative in DOCS:
        path = args.root / relative
        try:
            text = path.read_text(encoding="utf-8")
            new = render_file(text, relative)
        except (OSError, GeneratedRegionError) as exc:
            print(f"emdash._docgen: {exc}", file=sys.stderr)
            return 1
        if new == text:
            continue
        stale.append(relative)
        if not args.check:
            path.write_text(new, encoding="utf-8")
            print(f"rewrote {relative}")
    if args.check and stale:
        print(
            "Generated regions are stale in: " + ", ".join(stale) + "; run `make docs`.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Rewrite the generated API reference in docs/API.md from the settings table and the endpoints' signatures.

    python scripts/api_reference.py [--check]

``--check`` rewrites nothing and exits 1 when docs/API.md is out of date (tests/explorer/test_api_reference.py does the
same check).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DOC = ROOT / "docs" / "API.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether docs/API.md is up to date")
    args = parser.parse_args()
    from explorer.api import with_reference

    current = DOC.read_text()
    wanted = with_reference(current)
    if args.check:
        sys.exit(0 if current == wanted else 1)
    if current != wanted:
        DOC.write_text(wanted)
    print(f"{DOC.relative_to(ROOT)} {'rewritten' if current != wanted else 'up to date'}")


if __name__ == "__main__":
    main()

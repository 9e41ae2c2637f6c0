"""Fail when CI skipped a test that needs root, or when a report ran no test at all.

Reads JUnit XML reports written by pytest. Outside CI (``CI`` unset) root skips are
reported but allowed: a developer without root still gets a green non-root suite.
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET


def main(paths: list[str]) -> int:
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    failed = False
    for path in paths:
        root = ET.parse(path).getroot()
        total = 0
        root_skips = []
        for case in root.iter("testcase"):
            total += 1
            for skipped in case.findall("skipped"):
                if "needs root" in (skipped.get("message") or ""):
                    root_skips.append(f"{case.get('classname')}::{case.get('name')}")
        if total == 0:
            print(f"check_skips: {path} ran no test", file=sys.stderr)
            failed = True
        if root_skips:
            verdict = "FAIL" if in_ci else "note"
            print(f"check_skips [{verdict}]: {len(root_skips)} root test(s) skipped in {path}")
            for name in root_skips[:20]:
                print(f"  {name}")
            failed = failed or in_ci
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

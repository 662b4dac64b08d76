#!/usr/bin/env python
"""Compare the plugin's training with the official LF2 code, case by case, and print the table.

    python tools/compare_official.py --official /path/to/LF2 [--cases target clustering source evaluation defaults]

``--official`` is a checkout of github.com/DJEddyking/LF2 (commit 9d2e615) outside this repository; it is run
from its own files (lf2_plugin/parity). The same cases are tests/test_official_parity.py (LF2_OFFICIAL_DIR).
Exits 1 if a row is outside its tolerance.
"""

import argparse
import sys

import torch

from lf2_plugin.parity import CASES, run_cases
from lf2_plugin.parity.cases import format_table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", required=True, help="checkout of github.com/DJEddyking/LF2")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = run_cases(args.official, args.cases, progress=lambda name: print(f"running {name} ...", flush=True))
    print(format_table(rows))
    failed = [row for row in rows if not row.passed]
    print(f"{len(rows) - len(failed)} of {len(rows)} rows within tolerance")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

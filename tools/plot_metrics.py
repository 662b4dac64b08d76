#!/usr/bin/env python
"""Plot a run's test metrics and per-level clustering statistics per epoch.

python tools/plot_metrics.py OUTPUT_DIR [--out FILE.png]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lf2_plugin.engine.plots import plot_run  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    print(plot_run(args.output_dir, args.out))

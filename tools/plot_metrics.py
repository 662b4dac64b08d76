#!/usr/bin/env python
"""Plot a run's test metrics and per-level clustering statistics per epoch.

python tools/plot_metrics.py OUTPUT_DIR [--out FILE.png]
"""

import argparse

from lf2_plugin.engine.plots import plot_run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    print(plot_run(args.output_dir, args.out))


if __name__ == "__main__":
    main()

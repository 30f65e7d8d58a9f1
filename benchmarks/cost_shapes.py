"""The automatic chunk on every cost shape at once, exact on a fake clock (no real time is
measured: the table is the same on any machine, however busy).

For each shape of :data:`captum_rise.testing.COST_SHAPES` and each N, the default's first
and second call (or a new closure over the same model: the same sizer) against the best
fixed power-of-two chunk's, and the batch sizes the default met for the first time in each call
(:func:`captum_rise.testing.default_against_fixed`). Targets (issue 37, held by
``tests/test_batching.py``): first call at most 1.25x, later calls at most 1.10x.

Usage: ``python benchmarks/cost_shapes.py [--n-items 2000,8000]``
"""

import argparse

from captum_rise.testing import COST_SHAPES, default_against_fixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-items", default="2000,8000")
    args = parser.parse_args()
    print("| shape | N | first / best | second / best | new sizes per call |")
    print("|---|---|---|---|---|")
    for n_items in (int(n) for n in args.n_items.split(",")):
        for name, shape in sorted(COST_SHAPES.items()):
            ratios, new_sizes = default_against_fixed(shape, n_items)
            cells = " | ".join(f"{r:.3f}" for r in ratios)
            print(f"| {name} | {n_items} | {cells} | {', '.join(map(str, new_sizes))} |")


if __name__ == "__main__":
    main()

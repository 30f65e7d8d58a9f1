"""Forwards that fail: RISE against a model server on the loopback address that answers
every 25th request with HTTP 500, against a healthy one, side by side (issue 37's case:
``n_masks=800, perturbations_per_eval=8, concurrent_calls=8``; the server takes 8 images
and 8 requests at a time, 20 ms a request). Rounds alternate healthy and failing; printed:
the median seconds, the ratio (target: at most 1.2x), whether every map equals the healthy
one, and how long a server that always fails takes to give its error.

Usage: ``python benchmarks/retries.py [--rounds 5] [--n-masks 800]``
"""

import argparse
import statistics
import time

import torch

from captum_rise import RISE, ForwardError
from captum_rise.testing import ModelServer, ServerForward


class SmallNet(torch.nn.Module):
    """A small convnet on 64x64 images, so that the server's latency dominates."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(4),
            torch.nn.Flatten(),
            torch.nn.Linear(128, 10),
            torch.nn.Softmax(dim=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n-masks", type=int, default=800)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = SmallNet().eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    settings = dict(target=3, n_masks=args.n_masks, seed=0, perturbations_per_eval=8)
    servers = {
        "healthy": ModelServer(model, latency=0.02).start(),
        "1 in 25 fails": ModelServer(model, latency=0.02, fail_every=25).start(),
    }
    seconds: dict[str, list[float]] = {name: [] for name in servers}
    maps: dict[str, list[torch.Tensor]] = {name: [] for name in servers}
    for _ in range(args.rounds):
        for name, server in servers.items():
            forward = ServerForward(server.url, max_batch_size=8)
            start = time.perf_counter()
            maps[name].append(RISE(forward).attribute(x, **settings, concurrent_calls=8))
            seconds[name].append(time.perf_counter() - start)
    failed = servers["1 in 25 fails"].failed
    down = ModelServer(model, latency=0.02, fail_every=1).start()
    start = time.perf_counter()
    try:
        RISE(ServerForward(down.url, 8)).attribute(x, **settings, concurrent_calls=8)
    except ForwardError as error:
        message = str(error)
    down_seconds = time.perf_counter() - start
    for server in [*servers.values(), down]:
        server.stop()
    healthy = statistics.median(seconds["healthy"])
    failing = statistics.median(seconds["1 in 25 fails"])
    equal = all(torch.equal(m, maps["healthy"][0]) for ms in maps.values() for m in ms)
    print(f"RISE N={args.n_masks}, 8 masks a request, 8 requests in flight, {args.rounds} rounds\n")
    print("| server | median s | runs s |")
    print("|---|---|---|")
    for name, runs in seconds.items():
        runs_text = ", ".join(f"{s:.2f}" for s in runs)
        print(f"| {name} | {statistics.median(runs):.2f} | {runs_text} |")
    print(f"\nfailing / healthy: {failing / healthy:.2f} ({failed} requests failed, all retried)")
    print(f"every map equals the healthy one: {equal}")
    print(f"a server that always fails: the error after {down_seconds:.2f} s: {message}")


if __name__ == "__main__":
    main()

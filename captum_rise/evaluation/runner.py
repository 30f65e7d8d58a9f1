"""Explain and score a dataset, on one process or on every rank of ``torch.distributed``.

When ``torch.distributed`` is initialised (e.g. under ``torchrun``), the images
still to do are dealt out to the ranks in turn; each rank explains its own
images one at a time, with no collective per image, so a rank with fewer
images or a failing image never holds the others up. Ranks report progress in
small files under ``DIR/.progress``, and rank 0 shows the images done over all
ranks, waits for every rank to finish, merges their part files into
``DIR/results.csv`` and writes the summary. ``DIR`` must be a folder every rank
can reach (a shared file system across machines).

An image's result depends only on the run's arguments and the image: its
seed is :func:`image_seed` of the run's seed and the image's id.
"""

import contextlib
import hashlib
import json
import platform
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

import captum
import numpy as np
import torch
import torch.distributed as dist
from captum._utils.progress import NullProgress
from torch import Tensor, nn
from torch.utils.data import Dataset

from captum_rise import __version__
from captum_rise._forward import device_of, forward_output, needs_softmax
from captum_rise._progress import progress_bar
from captum_rise._validation import check_int
from captum_rise.batching import Retries, synchronize
from captum_rise.evaluation.data import Box, box_region, image_ids_of
from captum_rise.evaluation.methods import Method, make_methods
from captum_rise.evaluation.report import write_report
from captum_rise.evaluation.results import (
    CONFIG_FILE,
    Key,
    PartWriter,
    Row,
    format_curve,
    is_success,
    merge_parts,
    read_config,
    read_rows,
)
from captum_rise.evaluation.summary import write_summary
from captum_rise.evaluation.thumbnails import REPORT_DIR, save_map, save_photo
from captum_rise.metrics.causal import deletion, insertion
from captum_rise.metrics.pointing import pointing_game

DEFAULT_METHODS = ("rise", "hsic", "gradcam", "ig", "occlusion")
LOCK_FILE = ".lock-rank-{rank}"
PROGRESS_DIR = ".progress"
POLL_SECONDS = 0.2


class RunInProgressError(RuntimeError):
    """Another run is writing to the same results folder."""


@contextlib.contextmanager
def _hold_folder(out_dir: Path, rank: int) -> Iterator[None]:
    """Holds an exclusive lock on ``out_dir`` for this rank while the run writes to it, so
    that a second run on the same folder is refused instead of interleaving its rows. The
    lock (``fcntl.flock``) ends with the process, however it ends."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    with open(out_dir / LOCK_FILE.format(rank=rank), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInProgressError(
                f"another run is writing to {out_dir} (its rank {rank} holds the folder): "
                "wait for it to finish, or choose another output folder"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def image_seed(run_seed: int, image_id: str) -> int:
    """The seed of one image: 62 bits of SHA-256 of the run seed and the image id."""
    digest = hashlib.sha256(f"{run_seed}\0{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2


def evaluate_dataset(
    model: Callable[..., Any],
    dataset: Dataset[Any],
    out_dir: str | Path,
    methods: Sequence[str] = DEFAULT_METHODS,
    *,
    image_ids: Sequence[str] | None = None,
    n_images: int | None = None,
    n_masks: int = 4000,
    n_designs: int = 1536,
    seed: int = 0,
    gradcam_layer: nn.Module | None = None,
    boxes: Mapping[str, Sequence[Box]] | None = None,
    curve_steps: int | None = None,
    save_maps: bool = False,
    memory_format: torch.memory_format = torch.contiguous_format,
    model_name: str = "model",
    class_names: Sequence[str] | None = None,
    report: bool = True,
    show_progress: bool = True,
) -> list[Row] | None:
    """Explains every image with every method, scores the maps, and writes the results.

    Writes ``out_dir/results.csv`` (one row per image and method, see
    :data:`captum_rise.evaluation.results.COLUMNS`), ``summary.md`` and
    ``summary.png`` (:mod:`captum_rise.evaluation.summary`), ``run.json`` (the
    settings) and, with ``save_maps``, ``maps/<method>/<image id>.npz``
    (compressed float32 ``(H, W)`` arrays under the key ``saliency``). With
    ``report``, each image's photo and maps are saved as thumbnails as they are
    made, and rank 0 writes the HTML report ``report/index.html`` at the end
    (:func:`captum_rise.evaluation.write_report`). A rerun
    with the same settings skips the rows already done (failed rows are tried
    again); a rerun with other settings is refused.

    Args:
        model: classifier in eval mode, ``(B, C, H, W)`` to ``(B, classes)``
            logits or probabilities, on the device to run on (under
            ``torchrun`` with GPUs, this rank's GPU); or any forward function
            (an ONNX Runtime session's :class:`captum_rise.runtimes.OnnxRuntimeForward`,
            numpy outputs) for the black-box methods, on the CPU.
        dataset: items ``(image (C, H, W), target)``; a target of None
            explains the model's top class. E.g.
            :class:`captum_rise.evaluation.ImageFiles` or a torchvision
            ``ImageFolder``.
        out_dir: results folder, created if needed; shared by all ranks.
        methods: names from :data:`captum_rise.evaluation.methods.METHOD_NAMES`.
        image_ids: one id per item (default :func:`image_ids_of`).
        n_images: only the first ``n_images`` items.
        n_masks, n_designs: RISE masks and HSIC designs per image.
        seed: the run's seed; each image's is :func:`image_seed`.
        gradcam_layer: Grad-CAM's layer (default: the last ``Conv2d``).
        boxes: object boxes per image id, in the pixels of the model input,
            for the pointing game (15 px tolerance).
        curve_steps: steps of the deletion and insertion curves (default: one
            row of pixels per step, the paper's).
        save_maps: also save the saliency maps.
        memory_format: of the images given to the methods (``channels_last``
            runs convolutions faster on the CPU).
        model_name: recorded in the rows and in the summary.
        class_names: the model's class names by index, shown in the report.
        report: save thumbnails and write the HTML report (a few tens of kB
            per image and method).
        show_progress: a progress bar of images over all ranks, on rank 0.

    Returns:
        On rank 0 (or without ``torch.distributed``): all rows of
        ``results.csv``. On other ranks: None, once their images are done.
    """
    out_dir = Path(out_dir)
    chosen = make_methods(methods, model, n_masks, n_designs, gradcam_layer)
    ids = _chosen_ids(dataset, image_ids, n_images)
    if curve_steps is not None:
        check_int("curve_steps", curve_steps)
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if _distributed() else (0, 1)
    config: RunSettings = {
        "model": model_name,
        "seed": seed,
        "curve_steps": curve_steps,
        "methods": {m.name: m.settings for m in chosen},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    with _hold_folder(out_dir, rank):
        done, todo = _start(out_dir, config, class_names, ids, chosen, rank, world_size)
        progress = _ImagesProgress(out_dir, world_size, len(todo), show_progress and rank == 0)
        report_dir = out_dir / REPORT_DIR if report else None
        run = _ImageRun(
            model, chosen, out_dir, device_of(model), memory_format, boxes, curve_steps,
            save_maps, report_dir, model_name, rank, seed,
        )  # fmt: skip
        mine = todo[rank::world_size]
        writer = PartWriter(out_dir, rank)
        try:
            for count, index in enumerate(mine, start=1):
                for row in run.rows(dataset, index, ids[index], done):
                    writer.write(row)
                _report_progress(out_dir, rank, count, finished=False)
                progress.update()
            _report_progress(out_dir, rank, len(mine), finished=True)
        finally:
            writer.close()
        if rank != 0:
            return None
        progress.wait_for_all()
        return _finish(out_dir, config, world_size, report)


def _chosen_ids(
    dataset: Dataset[Any], image_ids: Sequence[str] | None, n_images: int | None
) -> list[str]:
    """The ids of the items to explain: one distinct id per item, the first ``n_images``."""
    ids = list(image_ids) if image_ids is not None else image_ids_of(dataset)
    if len(ids) != len(dataset) or len(set(ids)) != len(ids):  # type: ignore[arg-type]
        raise ValueError("image_ids must give one distinct id per item of the dataset")
    if n_images is not None:
        ids = ids[: check_int("n_images", n_images)]
    return ids


def _start(
    out_dir: Path,
    config: "RunSettings",
    class_names: Sequence[str] | None,
    ids: list[str],
    chosen: list[Method],
    rank: int,
    world_size: int,
) -> tuple[set[tuple[str, str]], list[int]]:
    """The ``(image id, method)`` pairs done by an earlier run of the same settings (other
    settings are refused) and the indices of the images with a method still to do. Rank 0
    writes the settings and clears the ranks' progress; every rank has read what was done
    before any writes."""
    _check_same_settings(out_dir, config)
    done = {key for key, row in read_rows(out_dir).items() if is_success(row)}
    todo = [
        i for i, image_id in enumerate(ids) if any((image_id, m.name) not in done for m in chosen)
    ]
    if rank == 0:
        _write_config(out_dir, config, class_names)
        shutil.rmtree(out_dir / PROGRESS_DIR, ignore_errors=True)
    if world_size > 1:
        dist.barrier()
    return done, todo


class _ImagesProgress:
    """A progress bar of the images every rank has done (from their progress files),
    shown by rank 0 only (``shown``)."""

    def __init__(self, out_dir: Path, world_size: int, total: int, shown: bool) -> None:
        self.out_dir, self.world_size, self.shown = out_dir, world_size, shown
        self.bar = (
            progress_bar("images, all ranks", total, unit="image") if shown else NullProgress()
        )
        self.counted = 0  # images the bar shows as done

    def update(self) -> None:
        if self.shown:
            done = _images_done(self.out_dir, self.world_size)
            self.bar.update(done - self.counted)
            self.counted = done

    def wait_for_all(self) -> None:
        """Until every rank has finished its images, updating the bar; then closes it."""
        while not _all_finished(self.out_dir, self.world_size):
            self.update()
            time.sleep(POLL_SECONDS)
        self.update()
        self.bar.close()


def _finish(out_dir: Path, config: "RunSettings", world_size: int, report: bool) -> list[Row]:
    """Rank 0, once every rank is done: the ranks' parts merged into ``results.csv``, the
    summary and, with ``report``, the HTML report. Returns all rows."""
    rows = merge_parts(out_dir)
    shutil.rmtree(out_dir / PROGRESS_DIR, ignore_errors=True)
    header = {
        "model": config["model"],
        "seed": config["seed"],
        "ranks": world_size,
        **{f"{k} settings": v for k, v in config["methods"].items()},
    }
    write_summary(rows, out_dir, header)
    if report:
        write_report(out_dir)
    return rows


class _ImageRun:
    """Explains and scores one image with every method still to do."""

    def __init__(
        self,
        model: Callable[..., Any],
        methods: Sequence[Method],
        out_dir: Path,
        device: torch.device,
        memory_format: torch.memory_format,
        boxes: Mapping[str, Sequence[Box]] | None,
        curve_steps: int | None,
        save_maps: bool,
        report_dir: Path | None,
        model_name: str,
        rank: int,
        run_seed: int,
    ) -> None:
        self.model = model
        self.methods = methods
        self.out_dir = out_dir
        self.device = device
        self.memory_format = memory_format
        self.boxes = boxes or {}
        self.curve_steps = curve_steps
        self.save_maps = save_maps
        self.report_dir = report_dir
        self.model_name = model_name
        self.rank = rank
        self.run_seed = run_seed

    def rows(self, dataset: Dataset[Any], index: int, image_id: str, done: set[Key]) -> list[Row]:
        seed = image_seed(self.run_seed, image_id)
        pending = [m for m in self.methods if (image_id, m.name) not in done]
        base = {
            "image": image_id,
            "rank": str(self.rank),
            "seed": str(seed),
            "model": self.model_name,
        }
        try:
            x, target = self._load(dataset, index)
            base.update(self._prediction(x, index))
            if target is None:
                target = int(base["predicted"])
            if self.report_dir is not None:
                save_photo(self.report_dir, image_id, x[0])
        except Exception as error:  # an unreadable image is a failed row, not a failed run
            return [self._failure(base, m, "", error) for m in pending]
        region = self._region(image_id, x)
        rows = []
        for method in pending:
            try:
                rows.append(self._evaluate(base, method, x, target, seed, region))
            except Exception as error:
                rows.append(self._failure(base, method, str(target), error))
        return rows

    def _load(self, dataset: Dataset[Any], index: int) -> tuple[Tensor, int | None]:
        image, target = dataset[index]
        if not isinstance(image, Tensor) or image.dim() != 3:
            raise ValueError(
                f"dataset items must be (image (C, H, W), target), got {type(image).__name__}"
            )
        x = image.unsqueeze(0).to(self.device).contiguous(memory_format=self.memory_format)
        return x, None if target is None else int(target)

    def _prediction(self, x: Tensor, index: int) -> Row:
        """The columns ``predicted`` and ``predicted_score``: the top class of the model on
        ``x`` (1, C, H, W), item ``index`` of the dataset, and its probability (softmax of
        logits, as the curves score). The call is retried as the methods' calls are (a
        server's error fails the image only once its retries run out)."""
        with torch.no_grad():
            call = lambda: forward_output(self.model(x), x.device).float()
            output = Retries(unit="image").call(call, index, index + 1)
        if needs_softmax(output):
            output = torch.softmax(output, dim=1)
        score, predicted = output[0].max(dim=0)
        return {"predicted": str(int(predicted)), "predicted_score": f"{float(score):.6g}"}

    def _region(self, image_id: str, x: Tensor) -> Tensor | None:
        if image_id not in self.boxes:
            return None
        region = box_region(self.boxes[image_id], x.shape[2], x.shape[3])
        return region if region.any() else None

    def _evaluate(
        self, base: Row, method: Method, x: Tensor, target: int, seed: int, region: Tensor | None
    ) -> Row:
        synchronize(self.device)
        start = time.perf_counter()
        saliency = method.explain(x, target, seed).detach()
        synchronize(self.device)
        seconds = time.perf_counter() - start
        if saliency.shape != (1, 1, *x.shape[2:]) or not torch.isfinite(saliency).all():
            raise ValueError(
                f"{method.name} returned a map of shape {tuple(saliency.shape)} that is not finite"
            )
        deleted = deletion(self.model, x, saliency, target, n_steps=self.curve_steps)
        inserted = insertion(self.model, x, saliency, target, n_steps=self.curve_steps)
        hit = "" if region is None else str(int(pointing_game(saliency.cpu(), region[None])[0]))
        if self.save_maps:
            path = self.out_dir / "maps" / method.name / f"{base['image']}.npz"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(path, saliency=saliency[0, 0].float().cpu().numpy())
        if self.report_dir is not None:
            save_map(self.report_dir, base["image"], method.name, saliency[0, 0])
        return {
            **base,
            "method": method.name,
            "target": str(target),
            "deletion_auc": f"{float(deleted.auc[0]):.6g}",
            "insertion_auc": f"{float(inserted.auc[0]):.6g}",
            "pointing_hit": hit,
            "seconds": f"{seconds:.3f}",
            "settings": json.dumps(method.settings, sort_keys=True),
            "error": "",
            "deletion_curve": format_curve(deleted.fractions.tolist(), deleted.scores[0].tolist()),
            "insertion_curve": format_curve(
                inserted.fractions.tolist(), inserted.scores[0].tolist()
            ),
        }

    @staticmethod
    def _failure(base: Row, method: Method, target: str, error: Exception) -> Row:
        message = f"{type(error).__name__}: {error}".replace("\n", " ")
        return {
            **base,
            "method": method.name,
            "target": target,
            "deletion_auc": "",
            "insertion_auc": "",
            "pointing_hit": "",
            "seconds": "",
            "settings": json.dumps(method.settings, sort_keys=True),
            "error": message,
            "deletion_curve": "",
            "insertion_curve": "",
        }


class RunSettings(TypedDict):
    """What fixes a run's results, kept in its folder's config file."""

    model: str
    seed: int
    curve_steps: int | None
    methods: dict[str, dict[str, object]]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _check_same_settings(out_dir: Path, config: RunSettings) -> None:
    """Refuses to add to a results folder written with other settings."""
    path = out_dir / CONFIG_FILE
    if not path.exists():
        return
    previous = json.loads(path.read_text())
    now = {"model": config["model"], "seed": config["seed"], "curve_steps": config["curve_steps"]}
    differences = [
        f"{name}: {previous[name]!r} then, {value!r} now"
        for name, value in now.items()
        if name in previous and previous[name] != value
    ]
    for method, settings in config["methods"].items():
        if method in previous.get("methods", {}) and previous["methods"][method] != settings:
            differences.append(f"{method}: {previous['methods'][method]} then, {settings} now")
    if differences:
        raise ValueError(
            f"{out_dir} holds results of a run with other settings ({'; '.join(differences)}): "
            "rerun with the same arguments to resume it, or choose another output folder"
        )


def _write_config(
    out_dir: Path, config: RunSettings, class_names: Sequence[str] | None = None
) -> None:
    """Writes the settings, with the versions and class names the report shows."""
    previous = read_config(out_dir)
    merged = {
        **previous,
        **config,
        "methods": {**previous.get("methods", {}), **config["methods"]},
        "versions": _versions(),
    }
    if class_names is not None:
        merged["class_names"] = list(class_names)
    temporary = out_dir / f".{CONFIG_FILE}.tmp"  # other ranks may be reading it
    temporary.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    temporary.replace(out_dir / CONFIG_FILE)


def _versions() -> dict[str, str]:
    return {
        "captum_rise": __version__,
        "torch": torch.__version__,
        "captum": captum.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _report_progress(out_dir: Path, rank: int, count: int, finished: bool) -> None:
    folder = out_dir / PROGRESS_DIR
    folder.mkdir(exist_ok=True)
    temporary = folder / f".rank-{rank}.tmp"
    temporary.write_text(f"{count} {int(finished)}")
    temporary.replace(folder / f"rank-{rank}")


def _read_progress(out_dir: Path, world_size: int) -> list[tuple[int, bool]]:
    reports = []
    for rank in range(world_size):
        try:
            count, finished = (out_dir / PROGRESS_DIR / f"rank-{rank}").read_text().split()
            reports.append((int(count), finished == "1"))
        except (OSError, ValueError):
            reports.append((0, False))
    return reports


def _images_done(out_dir: Path, world_size: int) -> int:
    return sum(count for count, _ in _read_progress(out_dir, world_size))


def _all_finished(out_dir: Path, world_size: int) -> bool:
    return all(finished for _, finished in _read_progress(out_dir, world_size))

"""From a config to a dataset or DataLoaders: :func:`gather_dataset`, :func:`collate_detection`.

The config follows the seed's layout (plain dicts and OmegaConf ``DictConfig`` both work; this
module treats it as a :class:`~collections.abc.Mapping` and does not import OmegaConf)::

    transforms:
      transforms_list:              # optional; see ls_data.transforms.build_transforms
        - {name: random_crop, size: [16, 64, 64]}
        - {name: normalize_intensity, mode: percentile}
    datasets:
      database:                     # {name: <ls.datasets name>} or {_target_: pkg.mod.Class}
        name: skittlez
        index_path: crops.sqlite
      return_dataloaders: true      # false (default): return the Dataset itself
      batch_size: 2                 # overridden by a top-level worker_batch_size (per worker)
      num_workers: 2
      pin_memory: false
      val_fraction: 0.2             # 0: no validation split
      split_seed: 0                 # seeds random_split
      shuffle: true                 # train loader only
      drop_last: false              # train loader only
      seed: null                    # seeds shuffling and worker seeds when set
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, get_worker_info, random_split

from ls_data.errors import DataError
from ls_data.sampler import EpochShuffleSampler
from ls_data.transforms.base import Compose, build_transforms

__all__ = [
    "LOADER_KEYS",
    "build_dataloaders",
    "collate_detection",
    "gather_dataset",
    "loader_options",
    "worker_init_fn",
]

LOADER_KEYS: dict[str, Any] = {
    "return_dataloaders": False,
    "batch_size": 1,
    "num_workers": 0,
    "pin_memory": False,
    "val_fraction": 0.0,
    "split_seed": 0,
    "shuffle": True,
    "drop_last": False,
    "seed": None,
    "multiprocessing_context": "auto",
}
"""Keys of the ``datasets`` config section besides ``database``, with their defaults."""


def collate_detection(
    batch: Sequence[Sequence[Any]],
) -> tuple[list[Tensor], list[dict[str, Any]], list[dict[str, Any]]]:
    """Collate samples with different instance counts (and possibly shapes) into lists.

    Args:
        batch: Samples ``(image, target, meta)``; a pair ``(image, target)`` gets ``meta = {}``.

    Returns:
        ``(images, targets, metas)``: three lists, one entry per sample, in batch order.
    """
    images, targets, metas = [], [], []
    for i, sample in enumerate(batch):
        if not isinstance(sample, list | tuple) or len(sample) not in (2, 3):
            kind = f"a {len(sample)}-tuple" if isinstance(sample, list | tuple) else type(sample).__name__
            raise DataError(f"collate_detection: sample {i} must be (image, target, meta), got {kind}")
        images.append(sample[0])
        targets.append(sample[1])
        metas.append(sample[2] if len(sample) == 3 else {})
    return images, targets, metas


def _base_dataset(dataset: Any) -> Any:
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


def worker_init_fn(worker_id: int) -> None:
    """Reseed a set transform generator in each DataLoader worker.

    PyTorch already seeds every worker's torch, ``random`` and NumPy RNGs from its per-worker
    seed (``base_seed + worker_id``; NumPy through a SeedSequence-style hash), so transforms on
    the global RNG differ between workers. A pipeline with a set generator
    (:meth:`ls_data.transforms.Compose.set_generator`) would instead be copied into every
    worker with the same state; this reseeds it from ``torch.initial_seed()``, the worker's seed.
    Outside a worker it does nothing.
    """
    info = get_worker_info()
    if info is None:
        return
    transforms = getattr(_base_dataset(info.dataset), "transforms", None)
    if isinstance(transforms, Compose):
        transforms.reseed(torch.initial_seed())


def _worker_start_method(requested: str | None, num_workers: int) -> str | None:
    if num_workers == 0:
        return None
    if requested == "auto":
        return "forkserver" if "tensorstore" in sys.modules else None
    return requested


def _option(section: Mapping[str, Any], key: str, kind: type | tuple[type, ...], check, rule: str) -> Any:
    value = section.get(key, LOADER_KEYS[key])
    if value is None and LOADER_KEYS[key] is None:
        return None
    wrong_type = not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)
    if wrong_type or not check(value):
        raise DataError(f"datasets.{key} must be {rule}, got {value!r}")
    return value


def _in_distributed_run() -> bool:
    return dist.is_available() and dist.is_initialized()


def build_dataloaders(
    dataset: Dataset,
    *,
    batch_size: int = 1,
    num_workers: int = 0,
    pin_memory: bool = False,
    val_fraction: float = 0.0,
    split_seed: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
    seed: int | None = None,
    multiprocessing_context: str | None = "auto",
) -> dict[str, DataLoader]:
    """Split ``dataset`` into train / val and wrap each part in a DataLoader.

    Args:
        dataset: A map-style dataset (``__len__`` and ``__getitem__``).
        batch_size: Samples per batch (per process in a distributed run).
        num_workers: Worker processes per loader; when > 0 they are persistent across epochs.
        pin_memory: Pin batches in page-locked memory (for GPU training).
        val_fraction: Fraction in [0, 1) of the samples held out for validation with
            :func:`torch.utils.data.random_split` (at least one sample when > 0).
        split_seed: Seed of the split's generator (same split on every rank and run).
        shuffle: Shuffle the training samples each epoch.
        drop_last: Drop the last incomplete training batch.
        seed: Seed of the shuffling and of the workers' base seed; ``None``: one drawn from torch's
            global RNG.
        multiprocessing_context: how worker processes start when ``num_workers > 0``:
            ``"forkserver"``, ``"spawn"``, ``"fork"``, None (the platform default), or ``"auto"``:
            ``"forkserver"`` once TensorStore is imported in this process (ls-data's readers
            import it), else the platform default. A forked child of a process whose TensorStore
            threads run aborts, so fork is safe only for datasets that never touch TensorStore;
            forkserver and spawn need a picklable dataset (``SkittlezDataset`` is).

    Returns:
        ``{"train": loader}``, plus ``"val"`` when ``val_fraction > 0``. Batches are
        ``(images, targets, metas)`` lists (:func:`collate_detection`). When torch.distributed is
        initialised, each loader uses a :class:`~torch.utils.data.DistributedSampler` (the val
        one unshuffled; it pads with repeated samples to split evenly across ranks), and the
        caller must call ``loader.sampler.set_epoch(epoch)`` every epoch for a new shuffle. In one
        process the shuffled training loader uses an
        :class:`~ls_data.sampler.EpochShuffleSampler`: each epoch's order is drawn from
        ``seed + epoch`` (``set_epoch``, as a trainer calls it), so a run resumed in a new process
        trains an epoch in the same order as an unstopped run.
    """
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise DataError(
            f"dataset {type(dataset).__name__} must be map-style (define __len__ and __getitem__)"
        )
    n = len(dataset)
    n_val = 0
    if val_fraction > 0:
        n_val = max(1, round(n * val_fraction))
    if n - n_val < 1:
        raise DataError(
            f"dataset {type(dataset).__name__} has {n} samples: too few for val_fraction={val_fraction} "
            f"(train would get {n - n_val})"
        )
    if n_val:
        split = torch.Generator().manual_seed(split_seed)
        train_set, val_set = random_split(dataset, [n - n_val, n_val], generator=split)
        parts: dict[str, Dataset] = {"train": train_set, "val": val_set}
    else:
        parts = {"train": dataset}

    distributed = _in_distributed_run()
    # a seed of our own even when none is set (drawn from torch's global RNG, so a run seeded with
    # torch.manual_seed stays reproducible): the loaders then never draw from the global RNG
    # when an epoch starts, which would shift the augmentations of a run resumed mid-epoch
    base_seed = int(torch.randint(0, 2**62, ()).item()) if seed is None else seed
    loaders: dict[str, DataLoader] = {}
    for split_name, part in parts.items():
        train = split_name == "train"
        sampler = None
        if distributed:
            sampler = DistributedSampler(
                part, shuffle=shuffle and train, seed=seed or 0, drop_last=drop_last and train
            )
        elif shuffle and train:
            sampler = EpochShuffleSampler(len(part), seed=base_seed)
        generator = torch.Generator().manual_seed(base_seed + (0 if train else 1))
        loaders[split_name] = DataLoader(
            part,
            batch_size=batch_size,
            shuffle=shuffle and train and sampler is None,
            sampler=sampler,
            num_workers=num_workers,
            collate_fn=collate_detection,
            pin_memory=pin_memory,
            drop_last=drop_last and train,
            persistent_workers=num_workers > 0,
            worker_init_fn=worker_init_fn,
            generator=generator,
            multiprocessing_context=_worker_start_method(multiprocessing_context, num_workers),
        )
    return loaders


def gather_dataset(config: Mapping[str, Any]) -> Dataset | dict[str, DataLoader]:
    """The original system's entry: the dataset of a config, or its DataLoaders.

    A thin adapter kept for configs and scripts of the original system (see the module docstring
    for the layout); new code calls the typed functions it is made of:
    :func:`~ls_data.transforms.build_transforms` on ``transforms.transforms_list`` (passed to the
    dataset as ``transforms=``, nothing when absent or empty),
    :func:`~ls_data.dataset_entry.parse_dataset_entry` on ``datasets.database`` (its crop index
    built or reused first when the entry names a ``catalog``: in a distributed run rank 0 builds,
    the other ranks wait), and :func:`build_dataloaders` with :func:`loader_options`. The batch size
    is the top-level ``worker_batch_size`` when present (the runner's per-worker size), else
    ``datasets.batch_size``.

    Args:
        config: The whole experiment config (a Mapping).

    Returns:
        The dataset, or when ``datasets.return_dataloaders`` is true the loaders of
        :func:`build_dataloaders` (``{"train": ..., "val": ...}``).

    Raises:
        DataError: a missing section, an unknown key in ``datasets`` (the known ones are listed),
            a value of the wrong type, or a dataset that cannot be built (the key is named).
    """
    from ls_data.dataset_entry import parse_dataset_entry  # imports the readers (TensorStore): on use

    section, transforms_list = _gather_sections(config)
    transforms = build_transforms(transforms_list, where="transforms.transforms_list")
    options = loader_options(section, worker_batch_size=config.get("worker_batch_size"))
    entry = parse_dataset_entry(section["database"], "datasets.database")
    index = entry.index.build() if entry.index is not None else None
    dataset = entry.open(transforms, fingerprint=None if index is None else index.fingerprint)
    if not options.pop("return_dataloaders"):
        return dataset
    return build_dataloaders(dataset, **options)


def _gather_sections(config: Mapping[str, Any]) -> tuple[Mapping[str, Any], Any]:
    """The checked ``datasets`` section and ``transforms.transforms_list`` of a config."""
    if not isinstance(config, Mapping):
        raise DataError(f"gather_dataset: config must be a mapping, got {type(config).__name__}")
    section = config.get("datasets")
    if not isinstance(section, Mapping) or "database" not in section:
        raise DataError("gather_dataset: config needs a 'datasets' section with a 'database' entry")
    unknown = sorted(str(k) for k in section if k != "database" and k not in LOADER_KEYS)
    if unknown:
        raise DataError(
            f"datasets.{unknown[0]}: unknown key; known keys: database, {', '.join(LOADER_KEYS)}"
        )
    transforms_section = config.get("transforms")
    if transforms_section is not None and not isinstance(transforms_section, Mapping):
        raise DataError(
            f"transforms must be a mapping with 'transforms_list', got {type(transforms_section).__name__}"
        )
    return section, (transforms_section or {}).get("transforms_list")


def loader_options(section: Mapping[str, Any], *, worker_batch_size: int | None = None) -> dict[str, Any]:
    """The checked loader keys of a ``datasets`` section (:data:`LOADER_KEYS`, defaults filled in):
    ``return_dataloaders`` and the keyword arguments of :func:`build_dataloaders`.

    Args:
        section: The ``datasets`` section.
        worker_batch_size: The runner's per-worker batch size, used instead of ``batch_size``.

    Raises:
        DataError: a value of the wrong type or out of range, naming ``datasets.<key>``.
    """
    batch_size = worker_batch_size
    if batch_size is None:
        batch_size = _option(section, "batch_size", int, lambda v: v >= 1, "an int >= 1")
    elif isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"worker_batch_size must be an int >= 1, got {batch_size!r}")
    val_fraction = _option(section, "val_fraction", (int, float), lambda v: 0 <= v < 1, "a number in [0, 1)")
    return {
        "return_dataloaders": _option(section, "return_dataloaders", bool, lambda v: True, "true or false"),
        "batch_size": batch_size,
        "num_workers": _option(section, "num_workers", int, lambda v: v >= 0, "an int >= 0"),
        "pin_memory": _option(section, "pin_memory", bool, lambda v: True, "true or false"),
        "val_fraction": float(val_fraction),
        "split_seed": _option(section, "split_seed", int, lambda v: True, "an int"),
        "shuffle": _option(section, "shuffle", bool, lambda v: True, "true or false"),
        "drop_last": _option(section, "drop_last", bool, lambda v: True, "true or false"),
        "seed": _option(section, "seed", int, lambda v: v >= 0, "an int >= 0 or null"),
        "multiprocessing_context": _option(
            section, "multiprocessing_context", str, lambda v: v in ("auto", "forkserver", "spawn", "fork"),
            "'auto', 'forkserver', 'spawn' or 'fork'",
        ),
    }

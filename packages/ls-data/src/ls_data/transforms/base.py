"""Transform base classes, :class:`Compose` and :func:`build_transforms` (config -> pipeline).

Every transform is a callable ``t(image, target, meta) -> (image, target, meta)`` acting on a
whole sample (see :mod:`ls_data.transforms.targets` for the layout). Transforms return new dicts
and never modify the ones they are given.

Randomness: a random transform draws from ``self.generator`` when it is set (a
:class:`torch.Generator`, e.g. via :meth:`Compose.set_generator`), otherwise from torch's global
RNG. In DataLoader worker processes PyTorch seeds the global RNG differently in every worker
(``base_seed + worker_id``), so the default gives independent augmentations per worker; a set
generator is copied into every worker with the same state, which is why
:func:`ls_data.loader.worker_init_fn` reseeds it from the worker's seed.
"""

from __future__ import annotations

import inspect
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from ls_data.errors import DataError
from ls_data.registry import instantiate
from ls_data.transforms.targets import Sample, check_sample

__all__ = ["Compose", "RandomTransform", "Transform", "build_transforms"]


class Transform(ABC):
    """Base class: subclasses implement :meth:`apply`; ``__call__`` checks the sample first."""

    def __call__(self, image: Tensor, target: dict[str, Any], meta: dict[str, Any]) -> Sample:
        check_sample(image, target, meta, where=type(self).__name__)
        return self.apply(image, target, meta)

    @abstractmethod
    def apply(self, image: Tensor, target: dict[str, Any], meta: dict[str, Any]) -> Sample:
        """Transform a checked sample; return new ``(image, target, meta)``."""

    def _config(self) -> dict[str, Any]:
        """The constructor keywords and their current values (used by ``repr``)."""
        params = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in params if name != "self" and hasattr(self, name)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({args})"


def _restore_generator(state: bytes) -> torch.Generator:
    generator = torch.Generator()
    generator.set_state(torch.frombuffer(bytearray(state), dtype=torch.uint8))
    return generator


class _PickledGenerator:
    """Pickles a ``torch.Generator`` as its state bytes.

    DataLoader workers started by forkserver or spawn receive the dataset through torch's
    multiprocessing pickler, which fails on a Generator's state tensor. One holder per generator
    (cached by identity) lets pickle's memo restore transforms that share a generator (as
    ``Compose.set_generator`` makes them) with one shared generator again.
    """

    # weak both ways (the key, and the holder's reference to it): a holder lives as long as its
    # generator, not as long as the process
    _holders: ClassVar[weakref.WeakKeyDictionary[torch.Generator, _PickledGenerator]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, generator: torch.Generator) -> None:
        self._generator = weakref.ref(generator)

    @classmethod
    def of(cls, generator: torch.Generator) -> _PickledGenerator:
        holder = cls._holders.get(generator)
        if holder is None:
            holder = cls._holders[generator] = cls(generator)
        return holder

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        generator = self._generator()
        assert generator is not None  # created by __getstate__ of a transform that holds it
        return _restore_generator, (bytes(generator.get_state().numpy()),)


class RandomTransform(Transform):
    """A transform applied with probability ``p``, drawing from ``generator`` or the global RNG.

    Args:
        p: Probability in [0, 1].
    """

    generator: torch.Generator | None

    def __init__(self, *, p: float) -> None:
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= float(p) <= 1.0:
            raise DataError(f"{type(self).__name__}: p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)
        self.generator = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.generator is not None:
            state["generator"] = _PickledGenerator.of(self.generator)
        return state

    def _rand(self) -> float:
        """A uniform draw in [0, 1)."""
        return float(torch.rand((), generator=self.generator))

    def _coin(self, p: float | None = None) -> bool:
        """True with probability ``p`` (default ``self.p``)."""
        p = self.p if p is None else p
        return p >= 1.0 or (p > 0.0 and self._rand() < p)

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self._rand()

    def _randint(self, high: int) -> int:
        """A uniform integer in [0, high)."""
        return int(torch.randint(high, (), generator=self.generator))


class Compose:
    """Apply transforms in order.

    Args:
        transforms: Callables ``t(image, target, meta) -> (image, target, meta)``.
    """

    def __init__(self, transforms: Iterable[Callable[..., Any]]) -> None:
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not callable(t):
                raise DataError(f"Compose: transforms[{i}] is a {type(t).__name__}, which is not callable")

    def __call__(self, image: Tensor, target: dict[str, Any], meta: dict[str, Any]) -> Sample:
        for t in self.transforms:
            image, target, meta = t(image, target, meta)
        return image, target, meta

    def set_generator(self, generator: torch.Generator | None) -> None:
        """Make every random transform (nested Composes included) draw from ``generator``."""
        for t in self.transforms:
            if isinstance(t, Compose):
                t.set_generator(generator)
            elif hasattr(t, "generator"):
                t.generator = generator

    def generators(self) -> list[torch.Generator]:
        """The distinct generators set on the transforms (nested Composes included), in order."""
        found: dict[int, torch.Generator] = {}
        for t in self.transforms:
            inner = t.generators() if isinstance(t, Compose) else [getattr(t, "generator", None)]
            for g in inner:
                if isinstance(g, torch.Generator):
                    found.setdefault(id(g), g)
        return list(found.values())

    def reseed(self, seed: int) -> None:
        """Reseed every set generator from ``seed`` (transforms on the global RNG are left alone)."""
        for k, g in enumerate(self.generators()):
            g.manual_seed((seed + 7919 * k) % 2**63)

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, i: int) -> Callable[..., Any]:
        return self.transforms[i]

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        return iter(self.transforms)

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])" if inner else "Compose([])"


def _build_one(entry: Any, index: int, where: str) -> Callable[..., Any]:
    if callable(entry) and not isinstance(entry, Mapping):
        return entry  # an already built transform (e.g. instantiated by Hydra)
    built = instantiate(entry, kind="transform", where=f"{where}[{index}]")
    if not callable(built):
        raise DataError(f"{where}[{index}] built a {type(built).__name__}, which is not callable")
    return built


def build_transforms(
    config: Sequence[Mapping[str, Any] | Callable[..., Any]] | None, *, where: str = "transforms_list"
) -> Compose:
    """Build a :class:`Compose` from a list of transform configs.

    Each entry is ``{"name": <name in ls.transforms>, **kwargs}`` or a Hydra-style
    ``{"_target_": "package.module.Class", **kwargs}``; an already built callable is kept as is.
    Plain dicts and OmegaConf ``DictConfig`` / ``ListConfig`` both work.

    Args:
        config: The list (``None`` or empty gives an empty ``Compose``).
        where: Name of the list in error messages (e.g. ``"transforms.transforms_list"``).

    Raises:
        RegistryError: an unknown name (the known names and close matches are listed).
        DataError: a malformed entry, an unknown or missing key, or a value the transform
            rejects; the message names the entry index and the key.
    """
    if config is None:
        return Compose([])
    if isinstance(config, Mapping | str) or not isinstance(config, Iterable):
        raise DataError(f"{where} must be a list of transform configs, got {type(config).__name__}")
    return Compose(_build_one(entry, i, where) for i, entry in enumerate(config))

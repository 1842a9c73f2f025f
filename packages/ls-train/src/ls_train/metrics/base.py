"""The metric interface shared by every entry of the ``ls.metrics`` registry.

A metric accumulates crop after crop with :meth:`Metric.update` and reports a flat
``dict[str, float]`` with :meth:`Metric.compute`. Its accumulated state is a picklable dict
(:meth:`Metric.state`) that another instance with the same configuration adds to its own with
:meth:`Metric.merge`, so results from several Ray workers combine to exactly what one process
would have computed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

__all__ = ["Metric", "crop_key"]


def crop_key(meta: Mapping[str, Any] | None, fallback: int) -> str:
    """The id a crop is reported under: ``meta["crop_id"]`` when given, else ``"crop<fallback>"``."""
    if meta is not None and meta.get("crop_id") is not None:
        return str(meta["crop_id"])
    return f"crop{fallback}"


class Metric(ABC):
    """Base class of registered metrics.

    Subclasses take keyword-only constructor arguments (the Hydra config keys), return them
    from :meth:`config`, and implement the accumulation.
    """

    name: ClassVar[str]

    @abstractmethod
    def update(
        self,
        gt_labels: Any,
        pred_labels: Any,
        pred_scores: Mapping[int, float] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Add one crop.

        Args:
            gt_labels: ``(Z, Y, X)`` integer ground-truth label volume, 0 = background.
            pred_labels: ``(Z, Y, X)`` integer predicted label volume of the same shape.
            pred_scores: score of each predicted label id (needed by score-ranked metrics).
            meta: crop metadata; ``"crop_id"`` names the crop in per-crop results.
        """

    @abstractmethod
    def compute(self) -> dict[str, float]:
        """Summary over every crop seen (or merged) so far."""

    @abstractmethod
    def per_crop(self) -> list[dict[str, Any]]:
        """One row per crop: ``"crop_id"`` and that crop's values."""

    @abstractmethod
    def reset(self) -> None:
        """Forget every crop."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The constructor arguments, as given to ``create_metric``."""

    @abstractmethod
    def _payload(self) -> Any:
        """The accumulated data, picklable."""

    @abstractmethod
    def _merge_payload(self, payload: Any) -> None:
        """Add another instance's :meth:`_payload` to this one's."""

    def state(self) -> dict[str, Any]:
        """Picklable snapshot: ``{"metric": class name, "config": config(), "payload": ...}``."""
        return {"metric": type(self).__name__, "config": self.config(), "payload": self._payload()}

    def merge(self, states: Iterable[Mapping[str, Any]]) -> None:
        """Add the states of other instances (e.g. one per Ray worker) to this one.

        Raises:
            ValueError: a state from another metric class or another configuration.
        """
        mine = self.config()
        for i, st in enumerate(states):
            if not isinstance(st, Mapping) or {"metric", "config", "payload"} - set(st):
                raise ValueError(f"state {i} is not a metric state dict (keys metric, config, payload)")
            if st["metric"] != type(self).__name__:
                raise ValueError(f"state {i} comes from metric {st['metric']!r}, not {type(self).__name__!r}")
            if dict(st["config"]) != mine:
                raise ValueError(
                    f"state {i} of {type(self).__name__} was made with config {dict(st['config'])}, "
                    f"which differs from this instance's {mine}"
                )
            self._merge_payload(st["payload"])

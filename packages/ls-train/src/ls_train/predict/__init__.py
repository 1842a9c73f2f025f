"""Whole-volume prediction (``ls-predict``): tiles, stitching, OME-Zarr labels, Ray scale-out.

See :func:`ls_train.predict.run.run_prediction` for the passes, :mod:`ls_train.predict.stitch`
for the stitching rule and :class:`ls_train.predict.config.PredictConfig` for the settings.
"""

from ls_train.predict.config import PredictConfig, predict_config
from ls_train.predict.in_memory import ArrayPrediction, PredictionCancelled, predict_array, predict_file
from ls_train.predict.run import PredictionResult, run_prediction
from ls_train.predict.segmenters import DetectorSegmenter, Normalization, ThresholdSegmenter, TileLabels
from ls_train.predict.tiling import TileGrid

__all__ = [
    "ArrayPrediction",
    "DetectorSegmenter",
    "Normalization",
    "PredictConfig",
    "PredictionCancelled",
    "PredictionResult",
    "ThresholdSegmenter",
    "TileGrid",
    "TileLabels",
    "predict_array",
    "predict_config",
    "predict_file",
    "run_prediction",
]

"""The training input pipeline: per-rank crop batches, in memory or streamed by DataLoader workers.

- :mod:`training.data.sampler`: the seeded global batches and each rank's slice;
- :mod:`training.data.memory`: a fixed-size split decoded once, cropped on the device;
- :mod:`training.data.stream`: image files decoded and cropped in workers;
- :mod:`training.data.file_list`: the files of a tree or a list, listed once and cached;
- :mod:`training.data.source`: ``--data-mode`` and the two sources the loop reads the same way.
"""

from .batch import CropBatch, step_generator, to_unit_float
from .file_list import FileList, list_image_files
from .memory import ImageSet, MemorySource, load_split
from .sampler import DataConfigError, EpochBatchSampler, ShardedBatches
from .source import DATA_MODES, StreamEvalImages, StreamSource, choose_mode

__all__ = ["DATA_MODES", "CropBatch", "DataConfigError", "EpochBatchSampler", "FileList", "ImageSet",
           "MemorySource", "ShardedBatches", "StreamEvalImages", "StreamSource", "choose_mode", "list_image_files",
           "load_split", "step_generator", "to_unit_float"]

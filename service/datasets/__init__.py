"""Datasets: named numeric arrays, uploaded once and memory-mapped for training.

- `array_from_json` turns an inline JSON array into numpy, with every check (shared with
  evaluate and predict).
- `open_arrays` memory-maps a stored dataset's arrays (the trainer's way in).
- `DatasetService` does the work of the /datasets routes.

Nothing in this package imports Flask.
"""

from service.datasets.arrays import array_from_json, check_array_name
from service.datasets.reading import open_arrays
from service.datasets.service import DatasetLimits, DatasetService, FileUpload, ReceivedUpload

__all__ = ["DatasetLimits", "DatasetService", "FileUpload", "ReceivedUpload", "array_from_json",
           "check_array_name", "open_arrays"]

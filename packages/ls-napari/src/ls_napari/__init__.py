"""ls-napari: segment light-sheet volumes in napari with an ls-train checkpoint, inspect the objects,
evaluate against a ground truth, correct and save.

The napari contributions are declared in ``napari.yaml`` (npe2): the reader and writer
(:mod:`ls_napari.reader`, :mod:`ls_napari.writer`), the sample data (:mod:`ls_napari.sample_data`)
and the two widgets (:mod:`ls_napari.segment_widget`, :mod:`ls_napari.evaluate_widget`). The work
behind the widgets has no Qt in it: :mod:`ls_napari.segment` and :mod:`ls_napari.evaluation`.
"""

__version__ = "0.1.0"

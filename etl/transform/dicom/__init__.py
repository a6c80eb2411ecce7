"""DICOM case folder -> the phases of its dynamic series, one module per job.

``inventory`` (which files are images, by series) -> ``series_filter`` (which series a rule says are not
DCE) -> ``phases`` (a series' images into phases) and ``geometry`` (each phase's stack checked) ->
``selection`` (the case's study and dynamic, and the rule that decided for each series) -> ``pixels`` (the
voxels of a phase). ``header`` reads a file's header facts (with ``walker``, its fast path), ``tags`` is the one
tag-value reader (functional groups, hostile text cleaned), ``recorded`` reads recorded series UIDs; ``scan``
runs the chain. The public names are re-exported here.
"""

from etl.transform.dicom.header import looks_like_dicom, read_header
from etl.transform.dicom.inventory import Inventory
from etl.transform.dicom.model import Phase, Slice
from etl.transform.dicom.pixels import read_phase
from etl.transform.dicom.scan import scan
from etl.transform.dicom.series_filter import filter_series, series_filter_rules
from etl.transform.dicom.tags import tag_values

__all__ = ["Inventory", "Phase", "Slice", "filter_series", "looks_like_dicom", "read_header", "read_phase", "scan",
           "series_filter_rules", "tag_values"]

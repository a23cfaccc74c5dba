"""The labelling engine: one home for labels on disk, their formats and the runs that make them.

* :mod:`.store`: :class:`LabelStore`, the on-disk layout (``masks/``, ``cleaned/``, manifests),
  statuses (done, reviewed, failed, skipped) and the rule that a reviewed label is never replaced;
* :mod:`.formats`: COCO RLE and LabelMe polygons, written and read back;
* :mod:`.instances`: the rule that groups a label's pixels into words or lines;
* :mod:`.exports`: the COCO and LabelMe files of a label folder, and the zip of the app;
* :mod:`.runner`: labelling a list of images with any predictor (``upocr label``, the app's
  Annotate tab), crash-safe, resumable, overlapped, over several processes.
"""

from .exports import COCO_NAME, EXPORT_FORMATS, LABELME_DIR, LabelExport, export_zip, write_exports
from .formats import (
    HOLE_LABEL,
    LABELME_SHAPES,
    LABELME_VERSION,
    CocoBuilder,
    Polygon,
    coco_rle_to_mask,
    labelme_document,
    labelme_to_labels,
    mask_to_coco_rle,
    mask_to_polygons,
    polygons_to_mask,
    read_labelme,
    write_coco,
    write_labelme,
)
from .instances import INSTANCE_RULES, MAX_INSTANCES, Instance, find_instances, instance_outline
from .runner import (
    LabelConfig,
    LabelSummary,
    ProcessGroup,
    clean_stale_temp_files,
    finish_output,
    find_inputs,
    label_files,
    label_images,
    label_folder,
    shard,
)
from .store import (
    CLEANED_DIR,
    DONE,
    FAILED,
    MANIFEST_NAME,
    MASKS_DIR,
    REVIEWED,
    SCORES_DIR,
    SKIPPED,
    STATUSES,
    LabelClass,
    LabelCollisionError,
    LabelRunBusyError,
    LabelStore,
    LabelStoreError,
    LabelTaskMismatchError,
    ReviewedLabelError,
    decode_label,
    encode_label,
    find_label_collisions,
    label_classes,
    label_relpath,
    labelling_run,
    merge_manifests,
    read_manifest_records,
)

__all__ = [
    "CLEANED_DIR", "COCO_NAME", "DONE", "EXPORT_FORMATS", "FAILED", "HOLE_LABEL", "INSTANCE_RULES", "LABELME_DIR", "MAX_INSTANCES",
    "LABELME_SHAPES", "LABELME_VERSION", "MANIFEST_NAME", "MASKS_DIR", "REVIEWED", "SCORES_DIR", "SKIPPED", "STATUSES",
    "CocoBuilder", "Instance", "LabelClass",
    "LabelCollisionError", "LabelConfig", "LabelRunBusyError", "LabelExport", "LabelStore", "LabelStoreError", "LabelSummary",
    "LabelTaskMismatchError", "Polygon", "ProcessGroup", "ReviewedLabelError", "clean_stale_temp_files",
    "coco_rle_to_mask", "decode_label", "encode_label", "export_zip", "find_inputs", "find_instances",
    "find_label_collisions", "instance_outline",
    "finish_output", "label_classes", "label_files", "label_images", "label_folder", "label_relpath", "labelling_run", "labelme_document",
    "labelme_to_labels", "mask_to_coco_rle", "mask_to_polygons", "merge_manifests", "polygons_to_mask",
    "read_labelme", "read_manifest_records", "shard", "write_coco", "write_exports", "write_labelme",
]

"""The CVAT auto-annotation function, called as cvat-sdk calls it (its own context and shape
types): one mask (or polygon) per word, which decode with cvat-sdk to the pipeline's mask."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from _app_support import EXAMPLES

import cvat_sdk.auto_annotation as cvataa


class _Context(cvataa.DetectionFunctionContext):
    def __init__(self, conf_threshold=None, conv_mask_to_poly=False):
        self._conf, self._poly = conf_threshold, conv_mask_to_poly

    @property
    def frame_name(self):
        return "receipt.png"

    @property
    def conf_threshold(self):
        return self._conf

    @property
    def conv_mask_to_poly(self):
        return self._poly


@pytest.mark.parametrize("task", ["segmentation", "tampering"])
def test_cvat_function_shapes_decode_to_the_pipeline_mask(micro_model_dir, task):
    from cvat_sdk.masks import decode_mask

    from upocr.labeling import find_instances
    from upocr.labeling.cvat import create
    from upocr.pipeline import UPOCRPipeline
    from upocr.tasks import canonical_task, get_task

    function = create(model=str(micro_model_dir), task=task, threshold=0.1)
    spec = function.spec
    assert isinstance(spec, cvataa.DetectionFunctionSpec)
    names = {label.id: label.name for label in spec.labels}
    image = Image.open(EXAMPLES / "receipt.png")
    shapes = function.detect(_Context(), image)

    spec_task = get_task(canonical_task(task))
    pipeline = UPOCRPipeline.from_pretrained(str(micro_model_dir))
    expected = np.asarray(spec_task.propose(pipeline.run_all(np.asarray(image.convert("RGB")),
                                                             list(spec_task.labelled_from), threshold=0.1)).label)
    assert len(shapes) == len(find_instances(expected)) > 0
    drawn = np.zeros(expected.shape, np.int32)
    for shape in shapes:
        assert shape.type.value == "mask" and shape.label_id in names
        pixels = decode_mask(shape.points, image_width=image.width, image_height=image.height)
        assert (expected[pixels] == shape.label_id).all()
        drawn += pixels
    assert drawn.max() == 1 and ((drawn == 1) == (expected != 0)).all()  # the words add up to the mask

    polygons = function.detect(_Context(conv_mask_to_poly=True), image)
    assert len(polygons) == len(shapes) and all(p.type.value == "polygon" and len(p.points) >= 6 for p in polygons)
    assert len(function.detect(_Context(conf_threshold=1.01), image)) == 0  # no word is that sure

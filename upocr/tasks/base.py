"""What every task knows about itself: :class:`Task` and :class:`LabelClass`.

A task turns the network's raw output into its result object, a result into the label stored
on disk, a label into the training target, a target back into ground truth for the metrics, and
says which classes and colours its labels have. Code outside :mod:`upocr.tasks` asks the task
(:func:`upocr.tasks.get_task`) instead of comparing task names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from .names import IGNORE_TOLERANCE, IGNORE_VALUE

#: uint8 value of :data:`IGNORE_VALUE` (128) in training targets.
IGNORE_BYTE = int(round(IGNORE_VALUE * 255))
#: Label-map value meaning "ignore this pixel".
IGNORE_LABEL = 255


#: A pixel whose margin (see :class:`Proposal`) is below this is doubtful.
DOUBT_MARGIN = 0.5


@dataclass(frozen=True)
class Agreement:
    """``measure`` (what was compared), its ``value``, and whether it keeps the contract ``bound``."""

    measure: str
    value: float
    bound: str
    ok: bool
    higher_is_better: bool = True


@dataclass(eq=False)
class Proposal:
    """What a model proposes as the label of one image.

    ``label``: the class map; ``cleaned``: the text-free image (text removal); ``scores``: the
    model's probability of each pixel's class (float ``(H, W)``, in [0, 1]); ``margins``: how
    far each pixel is from the decision that gave its class (0 on the boundary, 1 certain).
    """

    label: np.ndarray
    cleaned: np.ndarray | None = None
    scores: np.ndarray | None = None
    margins: np.ndarray | None = None

    def confidence(self) -> float | None:
        """How decisive the model is where there is, or might be, text: the mean margin over
        the candidate pixels (those labelled text, and those whose margin is below
        :data:`DOUBT_MARGIN`). 1.0 when there are no candidates (no text and no doubt); ``None``
        without margins."""
        if self.margins is None:
            return None
        margins = np.asarray(self.margins, dtype=np.float32)
        candidates = (margins < DOUBT_MARGIN) | (np.asarray(self.label) != 0)
        if not candidates.any():
            return 1.0
        return float(margins[candidates].mean())


@dataclass(frozen=True)
class LabelClass:
    """One class of a label: its value in class maps and exports, its value in the PNG files
    under ``masks/`` and the colour used to show it."""

    value: int
    name: str
    png_value: int
    colour: tuple[int, int, int]

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "name": self.name, "png_value": self.png_value, "colour": list(self.colour)}


class Task:
    """One pixel-level OCR task. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    #: A few letters for progress bars.
    short_name: ClassVar[str]
    #: The classes of the task's labels, background (value 0) first.
    classes: ClassVar[tuple[LabelClass, ...]]
    #: Whether a label also carries the text-free image (``cleaned/``).
    has_cleaned_image: ClassVar[bool] = False
    #: Whether the segmentation threshold shapes this task's labels.
    uses_threshold: ClassVar[bool] = True
    #: Whether the training target is an image (not a label map): geometry is filled with the
    #: image's own border, not with "ignore".
    target_is_image: ClassVar[bool] = False
    #: Whether training images get colour jitter (the official recipe jitters segmentation only).
    colour_jitter: ClassVar[bool] = False
    #: Whether the synthetic engine forges text in this task's scenes (and keeps their boxes).
    forges_text: ClassVar[bool] = False
    #: Tasks the pipeline runs (one encoder pass) to label this one.
    labelled_from: ClassVar[tuple[str, ...]] = ()

    # ---------------------------------------------------------------- inference
    def decode(self, output: np.ndarray, rgb: np.ndarray, *, threshold: float, mask: np.ndarray | None = None,
               dilation: int = 7):
        """The result object for the raw network output ``output`` (float32 ``(H, W, 3)`` at the
        image's size) of the image ``rgb``."""
        raise NotImplementedError

    def label_of(self, results: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        """The label (a class map, values as in :attr:`classes`) and, when the task has one, the
        text-free image, from the pipeline's results ``{task: result}`` (see :attr:`labelled_from`)."""
        raise NotImplementedError

    def propose(self, results: Mapping[str, Any]) -> Proposal:
        """The label with the model's per-pixel scores and margins (when the task has them)."""
        label, cleaned = self.label_of(results)
        return Proposal(label, cleaned)

    # ---------------------------------------------------------------- labels on disk
    def encode_label(self, label: np.ndarray) -> np.ndarray:
        """The ``uint8`` ``(H, W)`` PNG content for a label of this task. Text tasks take a boolean
        or integer mask (non-zero = text) and give 0/255; tampering overrides this."""
        return (self._check_label(label) != 0).astype(np.uint8) * 255

    def decode_label(self, png: np.ndarray) -> np.ndarray:
        """Class values (``uint8`` ``(H, W)``) from the PNG content of a label."""
        raise NotImplementedError

    def _check_label(self, label: np.ndarray) -> np.ndarray:
        arr = np.asarray(label)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim != 2 or 0 in arr.shape:
            raise ValueError(f"a {self.name} label must be an (H, W) array, got shape {arr.shape}")
        if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"a {self.name} label must be a boolean or integer array, got {arr.dtype}")
        return arr

    @property
    def colours(self) -> dict[int, tuple[int, int, int]]:
        """Display colour of each foreground class value."""
        return {c.value: c.colour for c in self.classes if c.value}

    # ---------------------------------------------------------------- training and metrics
    def synthetic_pair(self, composite: np.ndarray, clean: Callable[[], np.ndarray], text_support: np.ndarray,
                       strokes: np.ndarray, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The input image and uint8 target of a synthetic scene (:mod:`upocr.data.synth`):
        ``composite`` is the scene with its text, ``clean()`` the scene without it, ``text_support``
        the (dilated) text region, ``strokes`` the text strokes, ``labels`` the tampering label map."""
        raise NotImplementedError

    def training_pair(self, classes: np.ndarray, cleaned: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The uint8 ``(H, W, 3)`` target and the uint8 ``(H, W)`` text mask (0/255) for a stored
        label (class map, and the text-free image for removal)."""
        raise NotImplementedError

    def ground_truth(self, target: np.ndarray) -> np.ndarray:
        """What the metrics compare against, from an ``(H, W, 3)`` target (uint8, or float in
        [0, 1]): the text-free uint8 image, or a class map with :data:`IGNORE_LABEL` where the
        target says "ignore"."""
        raise NotImplementedError

    def prediction(self, output: np.ndarray, threshold: float, **decision) -> np.ndarray:
        """What the metrics score, from a final-scale output ``(3, H, W)`` (clamped to [0, 1]).
        ``decision``: what the pipeline decides with besides the output, where a task uses it:
        ``image`` (uint8 ``(H, W, 3)``, the input) and a model's ``stroke_refinement`` and
        ``tampered_bias`` (see :class:`upocr.UPOCR`)."""
        raise NotImplementedError

    #: The metric that training validation reports for this task.
    validation_metric: ClassVar[str]

    def loss(self, outputs: list, batch: Mapping, vgg=None, **options):
        """This task's training loss on the multi-scale ``outputs`` (see :mod:`upocr.training.losses`)."""
        raise NotImplementedError

    def agreement(self, reference: np.ndarray, candidate: np.ndarray) -> "Agreement":
        """How well two :meth:`prediction` s of one image agree (an inference engine against
        float32), and whether that is within the contract an engine must keep."""
        raise NotImplementedError

    def scored(self, result) -> tuple[np.ndarray, str]:
        """What the metrics score in a result object, and what to call it in messages."""
        raise NotImplementedError

    def metrics(self, official: bool = False):
        """A fresh metric accumulator (:mod:`upocr.evaluation.metrics`)."""
        raise NotImplementedError

    def score(self, accumulator, result, truth: np.ndarray, name: str) -> dict:
        """Add one result to ``accumulator``; return its per-image scores."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<task {self.name}>"


#: Colour of text in masks shown over images (the editor's brush and layers).
TEXT_COLOUR = (255, 40, 110)
TEXT_CLASSES = (LabelClass(0, "background", 0, (0, 0, 0)), LabelClass(1, "text", 255, (255, 255, 255)))


class TextMaskTask(Task):
    """A task whose label is a text mask: background 0 and text 1, stored as 0/255 PNGs."""

    classes = TEXT_CLASSES

    @property
    def colours(self) -> dict[int, tuple[int, int, int]]:
        return {1: TEXT_COLOUR}

    def decode_label(self, png: np.ndarray) -> np.ndarray:
        return (np.asarray(png) >= 128).astype(np.uint8)


def ignored_pixels(target: np.ndarray) -> np.ndarray:
    """Pixels of an ``(H, W, 3)`` target in [0, 1] whose every channel is :data:`IGNORE_VALUE`."""
    return (np.abs(target.astype(np.float64) - IGNORE_VALUE) < IGNORE_TOLERANCE).all(axis=-1)


def unit_float(target: np.ndarray) -> np.ndarray:
    """An ``(H, W, 3)`` target as float64 in [0, 1] (uint8 targets are divided by 255)."""
    t = np.asarray(target)
    return t.astype(np.float64) / 255.0 if t.dtype == np.uint8 else t.astype(np.float64)

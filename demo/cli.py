"""Picking the model for the app: ``--model``, ``$UPOCR_MODEL`` or the bundled default weights."""

from __future__ import annotations

import logging

logger = logging.getLogger("upocr.studio")


#: The most pixels the app's network processes for one image (larger images run smaller): a
#: 4-megapixel budget keeps one request to seconds on a CPU.
DEFAULT_MAX_WORK_PIXELS = 4_000_000
#: Seconds one image may take in the app before it is stopped with a message.
DEFAULT_TIME_BUDGET = 120.0


def load_pipeline(model: str | None = None, **kwargs):
    """``(pipeline, None)``, or ``(None, message)`` when there is no model to load.

    Missing default weights (a copy of the app without ``assets/upocr-tiny``) leave the app
    without a model: its banner says so and how to pass one. A named model that fails to load
    is an error worth showing too (the app still starts so the message is visible).
    """
    from upocr.pipeline import NoDefaultWeightsError, UPOCRPipeline

    try:
        kwargs.setdefault("max_work_pixels", DEFAULT_MAX_WORK_PIXELS)
        kwargs.setdefault("time_budget", DEFAULT_TIME_BUDGET)
        kwargs.setdefault("long_running", True)  # a server: auto may pick an engine that compiles
        pipeline = UPOCRPipeline.from_pretrained(model, **kwargs)
        pipeline.prepare_engine(background=True)  # requests run in float32 until the engine is chosen
        return pipeline, None
    except NoDefaultWeightsError:
        return None, None  # the app's banner explains it
    except Exception as exc:  # noqa: BLE001 - reported in the banner and the log
        logger.exception("could not load the model %r", model)
        return None, f"Could not load the model {model!r}: {type(exc).__name__}: {exc}"

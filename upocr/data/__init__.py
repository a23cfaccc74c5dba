"""Training and evaluation data: a synthetic data engine with exact ground truth for all three
tasks (:mod:`upocr.data.synth`), readers for the public datasets and the project's label
folders (:mod:`upocr.data.datasets`) and the target encodings (:mod:`upocr.data.encoding`).

Importing this package is cheap; the submodules load their dependencies when imported.
"""

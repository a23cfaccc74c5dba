"""The package layout keeps its rules: no import cycles, task knowledge in the task layer."""

from __future__ import annotations

import importlib.util

import pytest
from helpers import REPO

ROOT = REPO


@pytest.fixture(scope="module")
def metrics():
    spec = importlib.util.spec_from_file_location("code_metrics", ROOT / "tools" / "code_metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_module_imports_itself_through_others(metrics):
    graph = metrics.import_graph(metrics.modules())
    assert graph["upocr.pipeline"] >= {"upocr.tasks", "upocr.modeling"}  # the graph sees real imports
    assert metrics.cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle(metrics):
    assert metrics.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_a_handful_of_places_outside_the_task_layer_compare_task_names(metrics):
    outside = metrics.task_name_comparisons(metrics.modules())
    assert len(outside) <= 5, outside


def test_every_task_answers_the_whole_interface():
    from upocr.tasks import TASKS, get_task
    from upocr.tasks.base import Task

    for name in TASKS:
        task = get_task(name)
        assert task.name == name and task.classes[0].value == 0
        for method in ("decode", "label_of", "decode_label", "training_pair", "ground_truth", "prediction",
                       "scored", "metrics", "score", "loss", "synthetic_pair", "agreement"):
            assert getattr(type(task), method) is not getattr(Task, method), (name, method)


def test_no_source_file_or_function_outgrows_the_size_rules(metrics):
    found = metrics.modules()
    assert len(found) > 50  # the walk sees the package and the app
    files = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in found.items()}
    assert max(files.values()) <= 600, max(files.items(), key=lambda kv: kv[1])
    assert metrics.long_functions(found, 80) == []
    assert metrics.long_functions(found, 60)  # the measure does find long functions

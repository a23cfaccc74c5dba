"""Layout numbers for the maintainers: import cycles, file and function lengths, task-name comparisons.

    python tools/code_metrics.py [--max-function 80] [--max-file 600]

Reads the sources under ``upocr/`` and ``demo/`` (not the tests) with :mod:`ast`; every import
counts, also those inside functions. Prints the cycles between modules, the files over
``--max-file`` lines, the functions over ``--max-function`` lines, and the places outside
``upocr/tasks/`` that compare a task name with ``==``/``!=``/``in``.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("upocr", "demo")
TASK_NAMES = {"TEXT_REMOVAL", "TEXT_SEGMENTATION", "TAMPERED_TEXT_DETECTION"}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(found: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in found}
    for module, path in found.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node)
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                while target and target not in found:
                    target = target.rpartition(".")[0]
                # a package's own __init__ importing its submodules is how packages are built
                if target and target != module and not module.startswith(target + ".") \
                        and not (is_package and target.startswith(module + ".")):
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def long_functions(found: dict[str, Path], limit: int) -> list[tuple[int, str]]:
    rows = []
    for module, path in found.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    rows.append((length, f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"))
    return sorted(rows, reverse=True)


def task_name_comparisons(found: dict[str, Path]) -> list[str]:
    rows = []
    for module, path in found.items():
        if module.startswith("upocr.tasks"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn))
                                                     for op in node.ops):
                names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                if names & TASK_NAMES:
                    rows.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-function", type=int, default=80)
    parser.add_argument("--max-file", type=int, default=600)
    args = parser.parse_args(argv)
    found = modules()
    found_cycles = cycles(import_graph(found))
    print(f"import cycles: {len(found_cycles)}")
    for c in found_cycles:
        print("  " + " <-> ".join(c))
    big = sorted(((len(p.read_text(encoding="utf-8").splitlines()), str(p.relative_to(ROOT))) for p in found.values()),
                 reverse=True)
    over = [row for row in big if row[0] > args.max_file]
    print(f"files over {args.max_file} lines: {len(over)} (largest {big[0][0]}: {big[0][1]})")
    for n, name in over:
        print(f"  {n:5d} {name}")
    functions = long_functions(found, args.max_function)
    print(f"functions over {args.max_function} lines: {len(functions)}")
    for n, name in functions:
        print(f"  {n:5d} {name}")
    comparisons = task_name_comparisons(found)
    print(f"task-name comparisons outside upocr/tasks: {len(comparisons)}")
    for row in comparisons:
        print(f"  {row}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

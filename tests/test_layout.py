"""The package reads as the data flow: no import cycle, modules and functions a reader can take in
one sitting, and every `Notebook:` line names a notebook that really uses the function."""
import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "minihash"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 80


def _modules() -> dict:
    mods = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = p.relative_to(ROOT).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return mods


def _imports(name: str, path: Path, mods: dict) -> set:
    """Every package module `name` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            while t and t not in mods:
                t = t.rpartition(".")[0]
            if t and t != name and t.startswith("minihash"):
                found.add(t)
    return found


def test_no_import_cycle():
    mods = _modules()
    graph = {m: _imports(m, p, mods) for m, p in mods.items()}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for d in graph[m]:
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [m])
    assert not cycles, f"import cycles: {cycles}"


def test_modules_and_functions_are_short():
    long = []
    for name, p in _modules().items():
        lines = p.read_text().splitlines()
        if len(lines) > MAX_MODULE_LINES:
            long.append(f"{name}: {len(lines)} lines")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES and "# long:" not in lines[node.lineno - 1]:
                    long.append(f"{name}.{node.name}: {n} lines and no '# long: <reason>'")
    assert not long, long


def _notebook_text() -> dict:
    return {p.name: "\n".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"])
            for p in (ROOT / "notebooks").glob("*.ipynb")}


def test_notebook_lines_name_notebooks_that_use_the_function():
    notebooks = _notebook_text()
    wrong = []
    for name, p in _modules().items():
        for node in ast.walk(ast.parse(p.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            for line in re.findall(r"Notebook:\s*(.+)", ast.get_docstring(node) or ""):
                for nb in re.findall(r"\d\d_\w+\.ipynb", line):
                    if nb not in notebooks:
                        wrong.append(f"{name}.{node.name}: {nb} does not exist")
                    elif not re.search(rf"\b{re.escape(node.name)}\b", notebooks[nb]):
                        wrong.append(f"{name}.{node.name}: {nb} never uses it")
    assert not wrong, wrong


@pytest.mark.parametrize("nb", sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb")))
def test_each_notebook_has_its_lesson_module(nb):
    assert (PKG / "lessons" / f"nb{nb}.py").is_file()

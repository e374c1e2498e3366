"""The notebooks as documents: outputs stripped in git, and the house style's shape.

(Running them is nbmake's job: `make test` executes every notebook in fast mode.)
"""
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ["00_overview", "01_audio_and_spectrograms", "02_distortions", "03_landmarks", "04_patch_transformer",
            "05_contrastive_learning", "06_optimal_transport", "07_balanced_hashing", "08_search", "09_benchmark",
            "10_your_own_audio"]


def cells(path):
    return json.loads(path.read_text())["cells"]


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_notebooks_are_numbered_in_teaching_order():
    names = [p.stem for p in NOTEBOOKS]
    assert names == [n for n in EXPECTED if n in names], "notebook names must follow the README table"
    assert names, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_outputs_are_stripped(path):
    for i, c in enumerate(cells(path)):
        if c["cell_type"] == "code":
            assert not c.get("outputs"), f"{path.name} cell {i} has outputs: run `make strip` before committing"
            assert c.get("execution_count") is None, f"{path.name} cell {i} has an execution count: `make strip`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_the_house_shape(path):
    cs = cells(path)
    first = source(cs[0])
    assert cs[0]["cell_type"] == "markdown" and first.lstrip().startswith("#"), f"{path.name}: a title first"
    assert "learning goals" in first.lower(), f"{path.name}: learning goals in the first cell"
    assert "reference" in first.lower(), f"{path.name}: references in the first cell"
    code = [c for c in cs if c["cell_type"] == "code"]
    tags = [c.get("metadata", {}).get("tags", []) for c in code]
    assert any("parameters" in t for t in tags), f"{path.name}: a code cell tagged `parameters`"
    params = next(source(c) for c, t in zip(code, tags) if "parameters" in t)
    assert "MINIHASH_FAST" in params and "CI" in params, f"{path.name}: fast mode switch in the parameters cell"
    assert any("skip-execution" in t and "pip install" in source(c) for c, t in zip(code, tags)), \
        f"{path.name}: an install cell (from the local clone) tagged skip-execution"
    text = "\n".join(source(c) for c in cs)
    assert "github.com/minihash" not in text and "colab" not in text.lower(), \
        f"{path.name}: no links to a repository or notebook service that does not exist"
    assert "lesson.check_" in text, f"{path.name}: self-checking exercises (its minihash.lessons module's checkers)"
    assert "further notes" in text.lower(), f"{path.name}: a 'Further notes' section"
    assert "interact(" in text or "Audio(" in text, f"{path.name}: a widget or an audio player"
    assert "interact_manual" not in text, f"{path.name}: interact, not interact_manual"
    assert any(c["cell_type"] == "markdown" and source(c).startswith("## Glossary") for c in cs), \
        f"{path.name}: a glossary cell"
    assert cs[-1]["cell_type"] == "markdown" and source(cs[-1]).startswith("## Recap"), \
        f"{path.name}: a recap cell ends the notebook"


DRAWS = re.compile(r"\bplt\.|\.plot\(|lesson\.plot_|evaluate\.plot_|plot_\w+\(")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_a_static_figure_comes_before_every_widget(path):
    """The house style: the plotting function with fixed values first, then `interact`: within the section (since the last
    `## ` heading), a code cell before the widget, or the widget's own cell before `interact(`, draws a figure."""
    cs = cells(path)
    section_start = 0
    for i, c in enumerate(cs):
        if c["cell_type"] == "markdown" and re.search(r"^## ", source(c), re.M):
            section_start = i
        if c["cell_type"] != "code" or "interact(" not in source(c):
            continue
        before = [source(cs[j]) for j in range(section_start, i) if cs[j]["cell_type"] == "code"]
        before.append(source(c).split("interact(")[0].split("\ndef ")[0])  # the cell's own code before the widget
        assert any(DRAWS.search(b) for b in before), f"{path.name} cell {i}: a static figure before the widget"


SHIPPED = "06_optimal_transport"  # a quick notebook (~20 s in fast mode) with a learner function used after its check


def test_a_notebook_as_shipped_finishes_with_its_exercises_not_done(monkeypatch):
    """Run as a learner gets it (stubs, no MINIHASH_SOLUTIONS): every exercise says "not yet done", none passes,
    and the cells after them still run (`make test` runs every notebook with the solutions instead)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.delenv("MINIHASH_SOLUTIONS", raising=False)  # the kernel inherits this environment
    monkeypatch.setenv("MINIHASH_FAST", "1")
    path = next(p for p in NOTEBOOKS if p.stem == SHIPPED)
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()  # raises if a cell fails
    ex = [c for c in nb.cells if "exercise" in c.metadata.get("tags", [])]
    assert ex
    for c in ex:
        text = "".join(o.get("text", "") for o in c.outputs)
        assert "not yet done" in text and "all checks passed" not in text, text
    last = nb.cells[-1] if nb.cells[-1].cell_type == "code" else next(c for c in nb.cells[::-1] if c.cell_type == "code")
    assert last.get("execution_count"), "the notebook ran to its last code cell"

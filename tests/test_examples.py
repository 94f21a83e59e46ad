"""The example notebooks in examples/: each runs top to bottom on tiny settings, and none is stored with outputs.

Each notebook reads ``LAMINA_EXAMPLES_TINY=1`` and shrinks its data and epochs; it runs in a Jupyter kernel
(nbclient) in a temporary folder with its own ``LAMINA_HOME``, as a user's notebook would, with the inline
plot backend, so a plot that fails to draw fails here.
"""

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the dev extra installs nbformat")
nbclient = pytest.importorskip("nbclient", reason="the dev extra installs nbclient")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


def test_the_five_notebooks_are_there():
    names = [nb.stem for nb in NOTEBOOKS]
    assert names == ["01_pets", "02_segmentation", "03_tabular", "04_collab", "05_datablock"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(notebook):
    nb = json.loads(notebook.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, \
                f"{notebook.name} cell {i} has stored outputs: clear them before committing"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


def _images(cell: dict) -> int:
    return sum("image/png" in out.get("data", {}) for out in cell["outputs"])


def _text(cell: dict) -> str:
    parts = []
    for out in cell["outputs"]:
        parts.append(out.get("text", ""))
        parts.append(out.get("data", {}).get("text/plain", ""))
        parts.append(out.get("data", {}).get("text/html", ""))
    return "".join(parts)


def _run(notebook: Path, tmp_path: Path, monkeypatch) -> list:
    """Execute ``notebook`` in a kernel started in ``tmp_path``; returns its code cells with outputs."""
    monkeypatch.setenv("LAMINA_EXAMPLES_TINY", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no pretrained weights are read or fetched
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    nb = nbformat.read(notebook, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    return [cell for cell in nb.cells if cell.cell_type == "code"]


VISION = ("01_pets", "02_segmentation", "05_datablock")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_tiny_settings(notebook, tmp_path, monkeypatch):
    cells = _run(notebook, tmp_path, monkeypatch)
    errors = [f"{out.ename}: {out.evalue}" for cell in cells for out in cell.outputs if out.output_type == "error"]
    assert not errors
    shows = [cell for cell in cells if cell.source.startswith(("dls.show_batch", "learn.show_results"))]
    assert shows and all(cell.outputs for cell in shows)
    if notebook.stem in VISION:  # a figure per show call
        assert all(_images(cell) >= 1 for cell in shows)
    fits = [cell for cell in cells if ".fit_one_cycle(" in cell.source]
    assert fits and all("valid_loss" in _text(cell) for cell in fits)  # the epoch table was shown
    if notebook.stem == "01_pets":
        assert "is this a cat?" in _text(cells[-2]) and _text(cells[-1]).strip() in ("'True'", "'False'")

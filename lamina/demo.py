"""The README's main job: ``python -m lamina.demo``.

Trains a small network on a synthetic classification problem and prints the epoch table, to show
the loop end to end on any machine in seconds.
"""

from __future__ import annotations

from .learner import Learner
from .metrics import accuracy
from .testing import synth_classification, tiny_mlp


def main() -> None:
    """Fit a tiny MLP on separable synthetic data and report its validation accuracy."""
    dls = synth_classification(n=4096, n_in=8, n_classes=4, bs=64, seed=42, noise=0.05)
    learn = Learner(dls, tiny_mlp(n_in=8, n_out=4, hidden=32), metrics=accuracy)
    print("lamina demo: a small network on synthetic 4-class data")
    learn.fit_one_cycle(3, 1e-2)
    loss, acc = learn.validate()
    print(f"validation loss {loss:.4f}, accuracy {acc:.3f}")


if __name__ == "__main__":
    main()

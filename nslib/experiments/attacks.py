"""The premise of every experiment (not numbered in the paper): adversarial examples fool a
standard CNN. The standard model's accuracy on clean test images and under FGSM and PGD-40.

Our choices: L-inf eps 0.3 (MNIST's standard budget); PGD-40 with step 0.01 and a random
start; the figure shows the first 8 test images and their PGD-40 twins.
"""
from __future__ import annotations

import torch

from .context import Context, Result


def run(ctx: Context) -> Result:
    """The standard model under FGSM and PGD-40 at eps 0.3, and a figure of examples."""
    from ..attacks import FGSM, PGD
    from ..evaluation import accuracy
    from ..plotting import plot_examples

    model = ctx.model("mnist_standard")
    x, y = ctx.test_batch()
    attacks = {"FGSM": FGSM(model, eps=0.3),
               "PGD-40": PGD(model, eps=0.3, alpha=0.01, steps=40)}
    rows = [{"model": "mnist_standard", "attack": "clean", "eps": 0.0, "accuracy": accuracy(model, x, y)}]
    adversarial = {}
    for name, attack in attacks.items():
        adversarial[name] = attack(x, y)
        rows.append({"model": "mnist_standard", "attack": name, "eps": 0.3,
                     "accuracy": accuracy(model, adversarial[name], y)})
    with torch.no_grad():
        pred, pred_adv = model(x[:8]).argmax(1), model(adversarial["PGD-40"][:8]).argmax(1)
    fig = plot_examples(x[:8].cpu(), adversarial["PGD-40"][:8].cpu(), y[:8].cpu(), pred.cpu(), pred_adv.cpu(),
                        title="Standard model: benign vs PGD-40 (ε = 0.3) examples")
    for row in rows:
        print(f"  {row['attack']:7s} accuracy {row['accuracy']:.3f}")
    clean, fgsm_acc, pgd_acc = (r["accuracy"] for r in rows)
    finding = (f"The standard model is {clean:.1%} accurate on {ctx.n} clean test images but only "
               f"{fgsm_acc:.1%} under FGSM and {pgd_acc:.1%} under PGD-40 at ε = 0.3 "
               "(`attacks.csv`, `adversarial_examples.png`).")
    return Result(finding, {"attacks.csv": rows, "adversarial_examples.png": fig})

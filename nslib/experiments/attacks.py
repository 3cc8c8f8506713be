"""The premise of every experiment (not numbered in the paper): adversarial examples fool a
standard CNN. The standard model's accuracy on clean test images and under FGSM and PGD-40.

Our choices: the setting's L-inf eps (0.3, MNIST's standard budget; 8/255 on CIFAR-10); PGD-40
with the step of ``nslib.evaluation.default_suite`` (0.01 at eps 0.3) and a random start; the
figure shows the first 8 test images and their PGD-40 twins.
"""
from __future__ import annotations

import torch

from .context import Context, Result


def run(ctx: Context) -> Result:
    """The standard model under FGSM and PGD-40 at the setting's eps, and a figure of examples."""
    from ..attacks import FGSM, PGD
    from ..evaluation import accuracy, default_suite
    from ..plotting import plot_examples

    name, eps = ctx.model_name("standard"), ctx.setting.eps
    model = ctx.model(name)
    x, y = ctx.test_batch()
    attacks = {"FGSM": FGSM(model, eps=eps),
               "PGD-40": PGD(model, eps=eps, alpha=default_suite(eps)["pgd40"]["alpha"], steps=40)}
    rows = [{"model": name, "attack": "clean", "eps": 0.0, "accuracy": accuracy(model, x, y)}]
    adversarial = {}
    for attack_name, attack in attacks.items():
        adversarial[attack_name] = attack(x, y)
        rows.append({"model": name, "attack": attack_name, "eps": eps,
                     "accuracy": accuracy(model, adversarial[attack_name], y)})
    with torch.no_grad():
        pred, pred_adv = model(x[:8]).argmax(1), model(adversarial["PGD-40"][:8]).argmax(1)
    fig = plot_examples(x[:8].cpu(), adversarial["PGD-40"][:8].cpu(), y[:8].cpu(), pred.cpu(), pred_adv.cpu(),
                        title=f"Standard model: benign vs PGD-40 (ε = {eps:.4g}) examples")
    for row in rows:
        print(f"  {row['attack']:7s} accuracy {row['accuracy']:.3f}")
    clean, fgsm_acc, pgd_acc = (r["accuracy"] for r in rows)
    finding = (f"The standard model is {clean:.1%} accurate on {ctx.n} clean test images but only "
               f"{fgsm_acc:.1%} under FGSM and {pgd_acc:.1%} under PGD-40 at ε = {eps:.4g} "
               "(`attacks.csv`, `adversarial_examples.png`).")
    return Result(finding, {"attacks.csv": rows, "adversarial_examples.png": fig})

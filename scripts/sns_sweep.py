"""E7: the SNS knobs -- penalty weight lambda, top-k, and which layers are constrained.

Trains one SNS model per setting at a reduced budget (ours: the first 2,000 mnist5k
training images, 10 epochs, PGD-10 with eps ramped 0 -> 0.3 over 4 epochs, Adam 1e-3,
batch 100, seed 0), each into ``runs/sweep/<name>/`` (resumable), then evaluates it on
the first 500 test images (clean; PGD-40, eps 0.3, step 0.01, random start; layer
sensitivity under that attack) and writes ``data/sweeps/sns_sweep.json``, which the
course ships so notebook 04 and ``reproduce --quick`` can show E7 without retraining.
``lambda = 0`` is PGD-AT at the same budget, the baseline every setting is judged by.

    python scripts/sns_sweep.py             # all settings, two at a time
    python scripts/sns_sweep.py --jobs 1 --only lam0.01
"""
from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "sweeps" / "sns_sweep.json"
DEFAULT = {"lam": 0.01, "k": 0.1, "layers": ["conv3", "conv4", "fc1"]}
BUDGET = {"train_n": 2000, "epochs": 10, "eps": 0.3, "steps": 10, "eps_warmup_epochs": 4,
          "lr": 1e-3, "batch_size": 100, "seed": 0, "test_n": 500}

SETTINGS = (
    [("lambda", f"lam{v:g}", {"lam": v}) for v in (0.0, 0.003, 0.01, 0.03, 0.1)]
    + [("k", f"k{v:g}", {"k": v}) for v in (1, 3, 20)]
    + [("layers", "layers_" + "+".join(v), {"layers": v}) for v in (["conv3"], ["conv4"], ["fc1"])]
)


def run(name: str, knob: str, change: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    from nslib import data, models
    from nslib.attacks import pgd
    from nslib.evaluation import accuracy
    from nslib.sensitivity import layer_sensitivity, neuron_sensitivity
    from nslib.training import train

    settings = {**DEFAULT, **change}
    recipe = "pgd_at" if settings["lam"] == 0 else "sns"
    kwargs = {} if recipe == "pgd_at" else dict(settings)
    model = models.build("smallcnn", dataset="mnist5k")
    start = time.time()
    train(model, data.load("mnist5k", "train", limit=BUDGET["train_n"]), recipe, BUDGET["epochs"],
          eps=BUDGET["eps"], steps=BUDGET["steps"], eps_warmup_epochs=BUDGET["eps_warmup_epochs"],
          lr=BUDGET["lr"], batch_size=BUDGET["batch_size"], seed=BUDGET["seed"],
          out=ROOT / "runs" / "sweep" / name, progress=False, eval_every=BUDGET["epochs"],
          **kwargs)
    seconds = time.time() - start
    model.eval()
    x, y = data.load("mnist5k", "test").tensors(BUDGET["test_n"])
    torch.manual_seed(0)
    x_adv = pgd(model, x, y, eps=0.3, alpha=0.01, steps=40)
    sens = layer_sensitivity(neuron_sensitivity(model, x, x_adv, DEFAULT["layers"]))
    record = {"name": name, "knob": knob, "recipe": recipe, **settings,
              "clean_acc": accuracy(model, x, y), "pgd40_acc": accuracy(model, x_adv, y),
              "sensitivity": {k: round(v, 4) for k, v in sens.items()}, "train_seconds": round(seconds)}
    print(json.dumps(record), flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side (one thread each)")
    parser.add_argument("--only", nargs="*", help="names of settings to run (default: all)")
    args = parser.parse_args()
    chosen = [s for s in SETTINGS if not args.only or s[1] in args.only]
    with ProcessPoolExecutor(args.jobs) as pool:
        records = list(pool.map(run, *zip(*[(n, k, c) for k, n, c in chosen])))
    previous = json.loads(OUT.read_text())["runs"] if OUT.exists() else []
    merged = {r["name"]: r for r in previous + records}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"budget": BUDGET, "default": DEFAULT,
                               "runs": [merged[n] for _, n, _ in SETTINGS if n in merged]}, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

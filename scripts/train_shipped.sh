#!/usr/bin/env bash
# Train the MNIST models the course ships in data/checkpoints/ (see data/checkpoints/README.md).
#
#   scripts/train_shipped.sh                      # all four: standard pgd_at trades sns
#   scripts/train_shipped.sh mnist_pgd_at         # just one
#
# Each model trains on the embedded mnist5k train split (4,000 images), seed 0, into
# runs/shipped/<name>/ (resumable: run the same command again after a crash), then is
# evaluated on the 1,000 held-out test images (clean, FGSM eps 0.3, PGD-40 eps 0.3 step
# 0.01 random start), saved as data/checkpoints/<name>.pt with its recipe and metrics,
# and recorded in data/checkpoints/manifest.json. One CPU thread per run by default
# (NSLIB_THREADS to change), so several can run side by side on a small machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
NAMES=("$@")
[ ${#NAMES[@]} -eq 0 ] && NAMES=(mnist_standard mnist_pgd_at mnist_trades mnist_sns)

# Common budget of the robust models: PGD-10, step 2.5*eps/10, eps ramped 0 -> 0.3 over
# the first 16 of 40 epochs, Adam 1e-3, batch 100 (SPEC.md's reference PGD-AT recipe).
ROBUST="--epochs 40 --eps 0.3 --steps 10 --eps-warmup-epochs 16 --lr 1e-3 --batch-size 100 --seed 0"

for name in "${NAMES[@]}"; do
  case "$name" in
    mnist_standard) args="--recipe standard --epochs 10 --lr 1e-3 --batch-size 100 --seed 0" ;;
    mnist_pgd_at)   args="--recipe pgd_at $ROBUST" ;;
    mnist_trades)   args="--recipe trades --beta 6.0 $ROBUST" ;;
    mnist_sns)      args="--recipe sns --lambda 0.01 --layers conv3 conv4 fc1 --k 0.1 --ce-on adv $ROBUST" ;;
    *) echo "unknown model $name; choose mnist_standard mnist_pgd_at mnist_trades mnist_sns" >&2; exit 2 ;;
  esac
  echo "== $name: python -m nslib train --data mnist5k --model smallcnn $args --out runs/shipped/$name"
  start=$(date +%s)
  NSLIB_THREADS=${NSLIB_THREADS:-1} $PY -m nslib train --data mnist5k --model smallcnn $args \
      --out "runs/shipped/$name" --eval-n 500 --no-progress
  seconds=$(( $(date +%s) - start ))
  $PY - "$name" "$seconds" "$args" <<'EOF'
import json, sys
import torch
from nslib.checkpoints import CHECKPOINT_DIR, load_checkpoint, save_checkpoint, update_manifest
from nslib.data import load
from nslib.evaluation import headline_metrics

name, seconds, args = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.set_num_threads(int(__import__("os").environ.get("NSLIB_THREADS", "1")))
model, info = load_checkpoint(f"runs/shipped/{name}/model.pt")
x, y = load("mnist5k", "test").tensors()
metrics = {
    **headline_metrics(model, x, y, eps=0.3, seed=0),
    "eval": "mnist5k test (1000): FGSM eps 0.3; PGD-40 Linf eps 0.3 step 0.01 random start, seed 0",
    "train_seconds": seconds,
    "train_threads": torch.get_num_threads(),
}
path = CHECKPOINT_DIR / f"{name}.pt"
recipe = dict(info["recipe"], command=f"python -m nslib train --data mnist5k --model smallcnn {args} --out runs/shipped/{name}")
save_checkpoint(path, model, recipe=recipe, metrics=metrics, log=info.get("log", []))
update_manifest(name, path)
print(json.dumps({"name": name, **metrics}))
with open("runs/shipped/summary.jsonl", "a") as fh:
    fh.write(json.dumps({"name": name, "recipe": recipe, **metrics}) + "\n")
EOF
done

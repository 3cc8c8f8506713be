#!/usr/bin/env bash
# The CUDA check, as one prepared run for one GPU session: bash scripts/gpu_check.sh [log folder]
#
# Measures the CIFAR-10 engine's targets (docs/gpu.md#what-is-measured-and-what-is-estimated) and checks
# the code on CUDA, within 8 minutes: each part has a time limit in seconds (T_<PART>, e.g.
# T_TESTS=120) and the default limits add up to 480 s. A part cut by its limit keeps what it printed (every
# script prints each result as it is measured; PYTHONUNBUFFERED). Logs go to $1 (default gpu-check/), one
# file per part; exits 1 if a part failed or was cut. PARTS picks parts by name, e.g. PARTS="parity timing".
# MODES: the compile modes the benches time (default reduce-overhead; "default reduce-overhead" compares).
#
# The timing part (reproduce's wall time by parts) resumes: run again with PARTS=timing on the same machine
# (its folder, ${TMPDIR:-/tmp}/gpu-check-timing, is kept while the machine is) and it goes on from the part
# its limit cut, until every step is timed: a full run takes longer than one call.
#
# The device machine has torch but not the test-only packages: carry them as wheels (docs/gpu.md#the-command-still-to-run:
# bash scripts/gpu_wheels.sh here, then the one-line command there).
#
# GPU_CHECK_DRY=1 runs every part on the CPU at tiny sizes, with ten times the time limits (about 20 minutes on
# 2 cores): it checks this script and the scripts it calls end to end, and its numbers mean nothing.
set -u -o pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-check}
py=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}  # needs torch with CUDA
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # nslib from here, in subprocesses too
failed=()
all="bench_attacks bench_training parity tests timing reproduce slow_tests"
parts=" ${PARTS:-bench_attacks bench_training parity tests timing} "   # the last two of $all: on request
for name in $parts; do   # a misspelt part would run nothing and pass
    [[ " $all " == *" $name "* ]] || { echo "unknown part '$name' in PARTS; choose from: $all" >&2; exit 2; }
done
mkdir -p "$out"
dry=${GPU_CHECK_DRY:-0}
part() {  # part NAME LIMIT COMMAND...: run COMMAND for at most LIMIT seconds (x10 on a dry run), output in $out/NAME.log
    local name=$1 limit=$2; shift 2
    [[ $parts == *" $name "* ]] || return 0
    [ "$dry" = 1 ] && limit=$((limit * 10))   # a 2-core CPU is far slower than the GPU the limits are set for
    echo "== $name (at most ${limit}s): $*"
    local start=$SECONDS
    timeout "$limit" "$@" > "$out/$name.log" 2>&1 || failed+=("$name (exit $?; 124: cut at ${limit}s)")
    echo "   $((SECONDS - start))s; last line: $(tail -n 1 "$out/$name.log")"
}
if [ "$dry" = 1 ]; then   # the CPU at tiny sizes: the plumbing, not the numbers
    dev=cpu precision=fp32 modes="default"
    attacks=(--arch smallcnn --n 64 --batch-size 16 32 --repeats 1)
    training=(--arch smallcnn --batch-size 16 32 --batches 2 --repeats 1)
    parity=(--tiny) timing=(--images 8 --autoattack quick --out "${TMPDIR:-/tmp}/gpu-check-timing-dry")
    tests=(tests/test_compile.py tests/test_fusion.py)
    "$py" -c "import torch; print(torch.__version__, 'cpu (GPU_CHECK_DRY=1: tiny sizes, the numbers mean nothing)')" \
        | tee "$out/device.txt"
else
    dev=cuda precision=bf16 modes=${MODES:-reduce-overhead}
    attacks=(--arch resnet18 --n 2048 --batch-size 128 512 2048 --repeats 3)
    training=(--arch resnet18 --batch-size 128 512 --batches 10 --repeats 3)
    parity=() timing=(--compile reduce-overhead --out "${TMPDIR:-/tmp}/gpu-check-timing") tests=(tests)
    "$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.__version__, torch.cuda.get_device_name())" \
        | tee "$out/device.txt" || exit 1
fi
# 1. PGD-10 on ResNet-18 against torchattacks (fp32) in the same process, at batches 128, 512 and 2048: ours
#    in bf16, and in bf16 under torch.compile in each of $MODES (reduce-overhead: CUDA graphs). Target: a
#    speed-up (their time / ours) of at least 3x at batch 512.
part bench_attacks "${T_BENCH_ATTACKS:-80}" "$py" bench/attacks.py --device "$dev" "${attacks[@]}" --rows pgd-bf16 \
    --compile $modes
# 2. A training step as train() runs it (the cifar10-resnet18 recipe in bf16), at batches 128 and 512, per
#    mode of $MODES: PGD-AT, SNS with its fused pass, SNS. Targets: a 50,000-image epoch in at most 15 s at
#    batch 128, SNS (fused) at most 1.10x PGD-AT. Each block prints when it ends (compiling takes most of it).
part bench_training "${T_BENCH_TRAINING:-150}" "$py" bench/training.py --device "$dev" "${training[@]}" \
    --precision "$precision" --compile $modes --variants pgd_at sns+fuse sns
# 3. bf16 parity on a trained ResNet-18 (upsampled mnist5k, PGD-AT for a few epochs): PGD-40 robust accuracy
#    in bf16 within 0.5 points of fp32 on the same 1,000 images. About a minute.
part parity "${T_PARITY:-50}" "$py" scripts/parity_resnet18.py --device "$dev" "${parity[@]}"
# 4. The test suite on CUDA (NSLIB_TEST_DEVICE; the header names the GPU) without the slow tests; in parallel
#    where pytest-xdist is there (one file per worker).
xdist=$("$py" -c "import xdist" 2>/dev/null && [ "$dev" = cuda ] && echo "-n 4 --dist loadfile")
part tests "${T_TESTS:-120}" env NSLIB_TEST_DEVICE=$dev "$py" -m pytest "${tests[@]}" -m "not slow" -p no:cacheprovider \
    -q -rs $xdist
# 5. reproduce --setting cifar10-resnet18 --full --seeds 1 by parts, on 50,000 + 10,000 random images of the
#    real size: every model and sweep run trained for 1 epoch, every evaluation at its real size; each model,
#    sweep run and step printed with its projection to the setting's epochs as it ends. It resumes (above):
#    what its limit cuts, a second call (PARTS=timing T_TIMING=...) measures.
part timing "${T_TIMING:-80}" "$py" scripts/time_cifar10_reproduce.py --setting cifar10-resnet18 --full --seeds 1 \
    --epochs 1 --device "$dev" --precision "$precision" --resume "${timing[@]}"
# On request (PARTS=...): the quick reproduction on CUDA (about 2 minutes), and the slow tests (bf16 parity on
# the shipped MNIST models, and the newcomer test, which needs pip's cache or the network).
part reproduce "${T_REPRODUCE:-150}" "$py" -m nslib reproduce --quick --device "$dev" --force --no-progress \
    --out "${TMPDIR:-/tmp}/gpu-check-results"   # not under $out: the device returns 8 files at most
part slow_tests "${T_SLOW:-120}" env NSLIB_TEST_DEVICE=$dev "$py" -m pytest tests -m slow -p no:cacheprovider -rs
if [ ${#failed[@]} -gt 0 ]; then echo "FAILED: ${failed[*]} (logs in $out/)"; exit 1; fi
echo "all parts passed (logs in $out/)"

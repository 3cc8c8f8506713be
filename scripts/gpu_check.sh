#!/usr/bin/env bash
# The CUDA check, as one command for a session with a GPU: bash scripts/gpu_check.sh [log folder]
# Logs go to $1 (default gpu-check/); exits 1 if any part failed. Each part has a time limit in seconds
# (override: T_TESTS, T_REPRODUCE, T_BENCH, T_SLOW, T_TIMING) so the default parts stay near 10 minutes
# of device time. PARTS picks parts by name (default "tests reproduce bench slow_tests"; "timing" is
# the projected wall time of E1-E7 in the CIFAR-10 setting), e.g. PARTS="bench timing".
set -u -o pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-check}
py=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}  # needs torch with CUDA
mkdir -p "$out"
failed=()
parts=" ${PARTS:-tests reproduce bench slow_tests} "   # PARTS="bench timing": only those parts
for name in $parts; do   # a misspelt part would run nothing and pass
    case $name in tests|reproduce|bench|slow_tests|timing) ;;
        *) echo "unknown part '$name' in PARTS; choose from: tests reproduce bench slow_tests timing" >&2; exit 2;;
    esac
done
part() {  # part NAME LIMIT COMMAND...: run COMMAND for at most LIMIT seconds, output into $out/NAME.log
    local name=$1 limit=$2; shift 2
    [[ $parts == *" $name "* ]] || return 0
    echo "== $name (at most ${limit}s): $*"
    local start=$SECONDS
    timeout "$limit" "$@" > "$out/$name.log" 2>&1 || failed+=("$name (exit $?)")
    echo "   $((SECONDS - start))s; last line: $(tail -n 1 "$out/$name.log")"
}
"$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.__version__, torch.cuda.get_device_name())" \
    | tee "$out/device.txt" || exit 1
# 1. The whole test suite on CUDA (NSLIB_TEST_DEVICE; the header names the GPU), the slow newcomer
#    test in part 4 so that a hang there cannot cost these results. About 2-4 min.
part tests "${T_TESTS:-300}" env NSLIB_TEST_DEVICE=cuda "$py" -m pytest tests -m "not slow" -p no:cacheprovider -rs --durations=20
# 2. The quick reproduction (shipped checkpoints, 200 images, every step of E1-E7) on CUDA, into a
#    fresh folder, every step forced. About 1-2 min.
part reproduce "${T_REPRODUCE:-150}" "$py" -m nslib reproduce --quick --device cuda --force --no-progress --out "$out/results"
# 3. FGSM and PGD against torchattacks (ours/theirs < 1: nslib is faster), smallcnn on mnist5k,
#    then resnet18 on random 32x32 images.
#    The ResNet-18 rows include PGD-10 in bf16 and bf16 + torch.compile (docs/gpu.md; target: >= 3x
#    torchattacks' throughput), then a PGD-AT and an SNS training step on ResNet-18 in bf16 with the
#    projected 50,000-image epoch (targets: <= 15 s, SNS <= 1.10x PGD-AT). About 2-3 min.
part bench "${T_BENCH:-240}" bash -c "'$py' bench/attacks.py --device cuda && '$py' bench/attacks.py --device cuda --arch resnet18 --n 8192 --batch-size 512 --repeats 3 --compile && '$py' bench/training.py --device cuda --arch resnet18 --batch-size 512 --batches 10 --repeats 3 --precision bf16 --compile"
# 4. The slow tests: bf16 parity on the shipped models (tests/test_precision.py), and `make reproduce`
#    in a fresh clone and .venv (needs pip's cache or the network).
part slow_tests "${T_SLOW:-120}" env NSLIB_TEST_DEVICE=cuda "$py" -m pytest tests -m slow -p no:cacheprovider -rs
# 5. (PARTS=timing) E1-E7 in the CIFAR-10 setting on 50,000 + 10,000 random images of the real size, every
#    model and sweep run trained for 1 epoch, projected to the setting's epochs (the accuracies mean
#    nothing; the training part is an upper bound, the evaluation on noise a lower one). Each step's
#    time is printed as it ends. The whole run at the setting's epochs (40 to 90 minutes by
#    docs/gpu.md's estimate): the same command without --epochs.
part timing "${T_TIMING:-480}" "$py" scripts/time_cifar10_reproduce.py --setting cifar10-resnet18 --full --seeds 1 \
    --epochs 1 --precision bf16
if [ ${#failed[@]} -gt 0 ]; then echo "FAILED: ${failed[*]} (logs in $out/)"; exit 1; fi
echo "all parts passed (logs in $out/)"

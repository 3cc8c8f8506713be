"""Exercises: the student edition is current; each checker fails the stub, passes the solution.

Each exercise cell runs on its own after the notebook's setup cell (its first code cell after the
install cell of ``nslib.launch``),
because the checkers in ``nslib.exercises`` build their own inputs.
"""
import contextlib
import io
from pathlib import Path

import nbformat
import pytest

from nslib import editions, launch

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_strip_solutions_keeps_indentation_and_rejects_unbalanced_markers():
    src = "def f(x):\n    # BEGIN SOLUTION\n    return x + 1\n    # END SOLUTION\n\ncheck(f)"
    assert editions.strip_solutions(src) == f"def f(x):\n    {editions.STUB}\n\ncheck(f)"
    with pytest.raises(ValueError, match="without"):
        editions.strip_solutions("# BEGIN SOLUTION\nx = 1")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_edition_is_current(path):
    student_path = ROOT / "student" / path.name
    assert student_path.exists(), "run `python -m nslib student` to write the student edition"
    expected = editions.student_notebook(nbformat.read(path, as_version=4), f"student/{path.name}",
                                         launch.repository_url())
    actual = nbformat.read(student_path, as_version=4)
    assert [c.source for c in actual.cells] == [c.source for c in expected.cells], (
        "student edition is stale: run `python -m nslib student`")
    assert all(not c.get("outputs") for c in actual.cells if c.cell_type == "code")


def _run(cells, namespace):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for source in cells:
            exec(compile(source, "<cell>", "exec"), namespace)
    return out.getvalue()


def _assert_names_the_mistake(result, out: str, message: str | None, *, passed: int | None = None) -> None:
    """A correct answer (``message`` None) passes every check, ``passed`` of them when given; a
    mistaken one fails, and the printed [FAIL] lines name ``message``, without a traceback."""
    if message is None:
        assert result and "[FAIL]" not in out and (passed is None or result.passed == passed), out
    else:
        assert not result and message in out and "Traceback" not in out, out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_checkers_fail_the_stub_and_pass_the_solution(path, monkeypatch):
    monkeypatch.setenv("NSLIB_QUICK", "1")
    notebook = nbformat.read(path, as_version=4)
    indices = editions.exercise_cells(notebook)
    assert len(indices) >= 2, f"{path.name} should have at least two exercises"
    setup = next(c.source for c in notebook.cells if c.cell_type == "code" and not launch.is_install_cell(c))
    for i in indices:
        solution = notebook.cells[i].source
        stub = editions.strip_solutions(solution)
        namespace = {"__name__": "__main__"}
        solved = _run([setup, solution], namespace)
        assert "[PASS]" in solved and "[FAIL]" not in solved, f"cell {i} solution:\n{solved}"
        check = getattr(namespace["exercises"], editions._CHECK_CALL.match(solution.rstrip().splitlines()[-1]).group(1))
        assert solved.count("[PASS]") == check.checks, f"cell {i}: `checks` of {check.__name__} is stale"
        unsolved = _run([setup, stub], {"__name__": "__main__"})
        assert "[FAIL]" in unsolved and "[PASS]" not in unsolved, f"cell {i} stub:\n{unsolved}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_carry_no_machine_noise(path):
    """No execution timestamps or widget state: run `python -m nslib clean-notebooks`."""
    notebook = nbformat.read(path, as_version=4)
    assert "widgets" not in notebook.metadata
    assert not any("execution" in c.metadata for c in notebook.cells)


def test_checker_turns_errors_into_fail_lines_and_returns_the_outcome(capsys):
    """A student's exception, or a result the checker cannot compare, is a [FAIL] line naming
    the problem, never a traceback; the returned Checked is true only when everything passed."""
    import torch

    from nslib import exercises

    def raises(x, mean, std):
        raise ValueError("bad channel count")

    result = exercises.check_normalize(raises)
    out = capsys.readouterr().out
    assert not result and result.failed == 1
    assert "[FAIL]" in out and "ValueError: bad channel count" in out and "tensor([0.5, 1.0, 0.0, 0.25]" in out

    result = exercises.check_success_rate(lambda clean, adv, labels: "two thirds")  # float() cannot take it
    out = capsys.readouterr().out
    assert not result and "[FAIL]" in out and "could not be checked (ValueError" in out

    result = exercises.check_normalize(lambda x, mean, std: (x - torch.tensor(mean).view(1, -1, 1, 1))
                                       / torch.tensor(std).view(1, -1, 1, 1))
    out = capsys.readouterr().out
    assert result and result.passed == 3 and "[FAIL]" not in out
    assert repr(result) == "Checked(passed=3, failed=0, checks=3, score=1.00)"


def _success_rate(clean, adv, labels):
    correct = clean == labels
    return ((correct & (adv != labels)).sum() / correct.sum()).item()


def test_grade_prints_one_line_and_scores_only_under_the_grader(capsys, monkeypatch):
    """The test cell: one line for the student (no value, so Run All goes on); under nbgrader the
    [FAIL] lines too, and the points earned as the cell's value (nbgrader's partial credit)."""
    from nslib.exercises.grading import grade

    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    assert grade("check_success_rate", _success_rate, 1, "success_rate") is None
    assert capsys.readouterr().out == "success_rate passes all 3 checks (1 of 1 points).\n"
    assert grade("check_success_rate", lambda clean, adv, labels: 0.0, 1, "success_rate") is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "does not pass yet" in out and "goes on without it" in out, out
    assert grade("check_success_rate", None, 1, "success_rate") is None
    assert "is not defined: run its exercise cell" in capsys.readouterr().out

    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert grade("check_success_rate", _success_rate, 1, "success_rate") == 1
    assert grade("check_success_rate", lambda clean, adv, labels: 0.0, 1, "success_rate") == 0
    out = capsys.readouterr().out
    assert "[FAIL] success rate on clean_pred=[0, 1, 2, 3]" in out
    assert grade("check_success_rate", lambda *a: 1 / 0, 1, "success_rate") == 0  # an error is a [FAIL], not raised
    assert "ZeroDivisionError" in capsys.readouterr().out
    from nslib import exercises
    assert exercises.check_success_rate(_success_rate).passed == 0  # the exercise cell leaves it to the test cell
    assert capsys.readouterr().out == "(graded by the test cell below)\n"


def test_partial_credit_counts_checks_once_a_main_check_passes(capsys):
    """A PGD with one or two mistakes earns its share of the 10 checks; a function that only adds
    noise (no attack) passes side checks but no main check, and earns nothing."""
    import torch

    from nslib import exercises

    no_projection = exercises.check_pgd(lambda *args: _pgd(*args, project=False))
    assert 0 < no_projection.score < 1 and no_projection.score == no_projection.passed / 10, no_projection
    assert exercises.check_pgd(lambda *args: _pgd(*args, restore=False, backward=True)).score == 0.8

    def noise(model, images, labels, eps, alpha, steps):
        return (images + torch.empty_like(images).uniform_(-eps, eps)).clamp(0, 1)

    result = exercises.check_pgd(noise)
    assert result.passed >= 5 and result.score == 0, result
    assert exercises.check_success_rate(lambda clean, adv, labels: 0.0).score == 0  # right only where the rate is 0
    capsys.readouterr()


def test_grading_uses_a_fresh_copy_of_the_checker_and_its_references(capsys, monkeypatch):
    """Rebinding the checkers, their helpers or the reference implementations in the kernel does not
    change a grade: the test cell grades with modules imported anew from the installed files."""
    import nslib.attacks
    import nslib.exercises.checking
    import nslib.exercises.lesson01
    from nslib import exercises
    from nslib.exercises.grading import grade

    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")

    def stub(model, images, labels, eps):
        raise NotImplementedError

    def zeros(model, images, labels, eps=0.1):
        return images * 0

    passed = type(exercises.check_fgsm(_success_rate))([(True, True)], 3)
    monkeypatch.setattr(exercises, "check_fgsm", lambda fn: passed)
    monkeypatch.setattr(nslib.exercises.lesson01, "check_fgsm", lambda fn: passed)
    monkeypatch.setattr(nslib.exercises.checking, "_report", lambda *a, **k: True)
    monkeypatch.setattr(nslib.attacks, "fgsm", zeros)  # the reference the checker compares with
    assert grade("check_fgsm", stub, 2, "my_fgsm") == 0
    assert grade("check_fgsm", zeros, 2, "my_fgsm") == 0
    monkeypatch.undo()
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert nslib.attacks.fgsm is not zeros and exercises.check_fgsm is not passed  # the kernel's modules are back
    capsys.readouterr()


def test_a_runaway_function_is_stopped_with_a_fail_line(capsys, monkeypatch):
    from nslib import exercises
    from nslib.exercises import checking

    monkeypatch.setattr(checking, "BUDGET_S", 1)

    def forever(clean, adv, labels):
        while True:
            pass

    result = exercises.check_success_rate(forever)
    out = capsys.readouterr().out
    assert not result and result.score == 0 and "still running after 1 s" in out, out


def test_yours_or_hands_on_the_students_function_only_once_it_passes(capsys):
    from nslib import exercises

    def fallback(clean, adv, labels):
        return 0.5

    def mine(clean, adv, labels):
        return _success_rate(clean, adv, labels)

    assert exercises.yours_or("mine", {"mine": mine}, fallback, "nslib's") == (fallback, "nslib's")
    assert capsys.readouterr().out == "using nslib's until your mine passes its checks\n"
    assert exercises.yours_or("mine", {}, fallback, "nslib's")[0] is fallback  # the cell was skipped
    exercises.check_success_rate(mine)
    capsys.readouterr()
    assert exercises.yours_or("mine", {"mine": mine}, fallback, "nslib's") == (mine, "your mine")
    assert capsys.readouterr().out == "using your mine (it passes its checks)\n"


def test_an_error_names_the_line_of_the_students_code(capsys):
    """The hint never refers to a traceback the checker hid: the [FAIL] line quotes the line that raised."""
    from nslib import exercises

    def normalize(x, mean, std):
        scale = torch_tensor(std)
        return (x - 1) / scale

    exercises.check_normalize(normalize)
    out = capsys.readouterr().out
    assert "NameError" in out and "at `scale = torch_tensor(std)`" in out and "Traceback" not in out, out
    assert "read the line the error points to" not in out


# --- 03_sensitive_neurons_and_ablation: the diagnostics of check_stabilising_hook ----------------

def _stabilising_hook(indices, benign_output, *, mistake=None):
    """The exercise's solution, or one common wrong answer to it."""
    def hook(module, inputs, output):
        if mistake != "no batch check" and output.shape[0] != benign_output.shape[0]:
            raise ValueError(f"batch {output.shape[0]} != benign batch {benign_output.shape[0]}")
        if mistake == "all neurons":
            return benign_output.clone()
        if mistake == "benign mutated":  # starts from the stored benign tensor and writes into it
            keep = [c for c in range(output.shape[1]) if c not in indices]
            benign_output[:, keep] = output[:, keep]
            return benign_output
        patched = output if mistake in ("in place", "no return") else output.clone()
        if mistake == "dim 0":
            patched[indices] = benign_output[indices]
        else:
            patched[:, indices] = 0 if mistake == "zeroed" else benign_output[:, indices]
        return None if mistake == "no return" else patched
    return hook


@pytest.mark.parametrize("mistake, message", [
    (None, None),
    ("no return", "returned None: it changed `output` in place"),
    ("in place", "wrote into the layer's own output tensor: patch a copy"),
    ("benign mutated", "changed benign_output (the stored benign tensor)"),
    ("dim 0", "replaced along dim 0; neurons lie along dim 1"),
    ("all neurons", "every neuron of the layer was replaced"),
    ("zeroed", "set to zero (that is deactivation"),
    ("no batch check", "broadcast the one benign image over the whole batch"),
])
def test_check_stabilising_hook_names_the_mistake(mistake, message, capsys):
    from nslib import exercises

    result = exercises.check_stabilising_hook(
        lambda indices, benign_output: _stabilising_hook(indices, benign_output, mistake=mistake))
    out = capsys.readouterr().out
    _assert_names_the_mistake(result, out, message, passed=4)


# --- 04_robust_training_and_sns: the diagnostics of the training-step checkers ---------------

def _pgd_at_step(model, optimizer, images, labels, eps, alpha, steps, *, attack_mode="eval", train_mode=True,
                 zero_grad=True, clean=False, leak=False):
    """A PGD-AT step with one of the common mistakes switched on."""
    import torch
    import torch.nn.functional as F

    from nslib.attacks import PGD

    if attack_mode == "train":  # a hand-written attack that forgets model.eval()
        model.train()
        x_adv = images.clone()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            grad, = torch.autograd.grad(F.cross_entropy(model(x_adv), labels), x_adv)
            x_adv = (images + (x_adv.detach() + alpha * grad.sign() - images).clamp(-eps, eps)).clamp(0, 1)
    else:
        x_adv = PGD(model, eps=eps, alpha=alpha, steps=steps)(images, labels)
    if zero_grad:
        optimizer.zero_grad()
    if leak:  # an input gradient taken with .backward(): it also lands in the parameters' .grad
        model.eval()
        probe = x_adv.clone().requires_grad_(True)
        F.cross_entropy(model(probe), labels).backward()
    model.train(train_mode)
    loss = F.cross_entropy(model(images if clean else x_adv), labels)
    loss.backward()
    optimizer.step()
    return loss.item()


@pytest.mark.parametrize("mistake, message", [
    ({}, None),
    ({"zero_grad": False}, "call optimizer.zero_grad() before loss.backward()"),
    ({"clean": True}, "descends the clean loss"),
    ({"attack_mode": "train"}, "run the attack with the model in eval mode"),
    ({"train_mode": False}, "call model.train() before the training forward"),
    ({"leak": True}, "writes into the parameters' .grad"),
])
def test_check_pgd_at_step_names_the_mistake(mistake, message, capsys):
    from nslib import exercises

    result = exercises.check_pgd_at_step(lambda *args: _pgd_at_step(*args, **mistake))
    out = capsys.readouterr().out
    _assert_names_the_mistake(result, out, message)


def _sns_step(model, optimizer, images, labels, layers, k, lam, eps, alpha, steps, *, combine="sum",
              use_lam=True, per_example=False, keep_hooks=False, detach=False):
    """An SNS step with one of the common mistakes switched on (hooks written by hand)."""
    import torch.nn.functional as F

    from nslib.attacks import PGD
    from nslib.sensitivity import neuron_distance

    x_adv = PGD(model, eps=eps, alpha=alpha, steps=steps)(images, labels)
    model.train()
    store = {}
    modules = dict(model.named_modules())
    handles = [modules[name].register_forward_hook(
        lambda m, i, out, name=name: store.setdefault(name, []).append(out.detach() if detach else out))
        for name in layers]
    logits_adv = model(x_adv)
    model(images)
    if not keep_hooks:
        for handle in handles:
            handle.remove()
    terms = []
    for name in layers:
        adv, benign = store[name]
        dist = neuron_distance(benign, adv)
        if per_example:
            terms.append(dist.topk(k, dim=1).values.sum() / images.shape[0])
        else:
            terms.append(dist[:, dist.detach().mean(0).topk(k).indices].sum() / images.shape[0])
    penalty = {"sum": sum(terms), "mean": sum(terms) / len(terms), "last": terms[-1]}[combine]
    loss = F.cross_entropy(logits_adv, labels) + (lam if use_lam else 1.0) * penalty
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


@pytest.mark.parametrize("mistake, message", [
    ({}, None),
    ({"combine": "last"}, "only the last layer's penalty counts"),
    ({"combine": "mean"}, "the layers' penalties are averaged"),
    ({"use_lam": False}, "the penalty is not multiplied by lam"),
    ({"per_example": True}, "the top-k neurons are chosen per example"),
    ({"detach": True}, "it carries no gradient"),
    ({"keep_hooks": True}, "forward hooks are still attached to conv1, conv2, fc1"),
])
def test_check_sns_step_names_the_mistake(mistake, message, capsys):
    from nslib import exercises

    result = exercises.check_sns_step(lambda *args: _sns_step(*args, **mistake))
    out = capsys.readouterr().out
    _assert_names_the_mistake(result, out, message)


# --- 01_attacks: check_pgd ----------------------------------------------------------------

def _pgd(model, images, labels, eps, alpha, steps, *, start=True, project=True, clamp=True, sign=True,
         ascent=True, eval_mode=True, restore=True, backward=False, regrad=True, seed_inside=False):
    """L-inf PGD as a student might write it; each keyword switches off one part (a common mistake)."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    if eval_mode:
        model.eval()
    x = images.clone().detach()
    if seed_inside:
        torch.manual_seed(0)
    adv = x + torch.empty_like(x).uniform_(-eps, eps) if start else x.clone()
    adv = adv.clamp(0, 1) if clamp else adv
    grad = None
    for _ in range(steps):
        if grad is None or regrad:
            adv = adv.detach().requires_grad_(True)
            loss = F.cross_entropy(model(adv), labels)
            if backward:
                loss.backward()
                grad = adv.grad
            else:
                (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + (alpha if ascent else -alpha) * (grad.sign() if sign else grad)
        adv = x + (adv - x).clamp(-eps, eps) if project else adv
        adv = adv.clamp(0, 1) if clamp else adv
    if restore:
        model.train(was_training)
    return adv.detach()


@pytest.mark.parametrize("mistake, message", [
    ({}, None),
    ({"start": False}, "with steps=0 your function returned the input unchanged"),
    ({"seed_inside": True}, "two calls with different RNG states gave the same start"),
    ({"project": False}, "not projected back into the eps-ball"),
    ({"clamp": False}, "clamp x' to [0, 1]"),
    ({"sign": False}, "not by the raw gradient"),
    ({"ascent": False}, "that is gradient descent"),
    ({"eval_mode": False}, "the model ran in train mode during your attack"),
    ({"restore": False}, "the model came in train mode and left in eval mode"),
    ({"backward": True}, "loss.backward() fills the weights' gradients"),
    ({"regrad": False}, "is the gradient recomputed at the current x' in every step"),
])
def test_check_pgd_names_the_mistake(mistake, message, capsys):
    from nslib import exercises

    result = exercises.check_pgd(lambda *args: _pgd(*args, **mistake))
    out = capsys.readouterr().out
    _assert_names_the_mistake(result, out, message, passed=10)
    assert message is None or out.count("[FAIL]") <= 2, out  # one mistake, one or two specific lines


def test_check_pgd_spots_changed_inputs_and_leaves_the_rng_alone(capsys):
    import torch

    from nslib import exercises

    def in_place(model, images, labels, eps, alpha, steps):
        adv = _pgd(model, images, labels, eps, alpha, steps)
        images.copy_(adv)
        return adv

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    result = exercises.check_pgd(in_place)
    assert torch.equal(torch.rand(3), expected), "check_pgd consumed the caller's random numbers"
    out = capsys.readouterr().out
    assert not result and "work on a copy" in out, out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_name_the_installed_kernel(path):
    """A kernelspec unlike the installed kernel's makes JupyterLab open the notebook as modified."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    assert editions.KERNELSPEC == {"display_name": spec.display_name, "language": spec.language, "name": "python3"}
    for edition in (path, ROOT / "student" / path.name):
        assert nbformat.read(edition, as_version=4).metadata.kernelspec == editions.KERNELSPEC, (
            f"{edition.name}: run `make student`")


# --- 02_neuron_sensitivity and 05_your_own_model: the checkers name the common mistakes -------

def _top_k(mistake):
    import torch

    def fn(sigma, k):
        if mistake == "ascending":
            return torch.argsort(sigma, stable=True)[:k]
        if mistake == "unstable ties":  # equal values, higher index first
            return torch.tensor(sorted(range(len(sigma)), key=lambda i: (-sigma[i].item(), -i))[:k])
        if mistake == "values":
            return sigma.sort(descending=True).values[:k]
        if mistake == "list":
            return torch.argsort(sigma, descending=True, stable=True)[:k].tolist()
        return torch.argsort(sigma, descending=True, stable=True)[:k]
    return fn


@pytest.mark.parametrize("mistake, message", [
    ("ascending", "the k *least* sensitive neurons: sort in descending order"),
    ("unstable ties", "equal sensitivities must keep the lower index first: use a stable sort"),
    ("values", "return the neurons' indices (integers), not their sensitivities"),
    ("list", "return the indices as a LongTensor"),
])
def test_check_top_k_neurons_names_the_mistake(mistake, message, capsys):
    from nslib import exercises

    assert exercises.check_top_k_neurons(_top_k(None))
    capsys.readouterr()
    assert not exercises.check_top_k_neurons(_top_k(mistake))
    out = capsys.readouterr().out
    assert message in out and "Traceback" not in out, out


def test_check_sensitivity_ratio_names_the_mistake(capsys):
    from nslib import exercises

    assert not exercises.check_sensitivity_ratio(lambda a, b: {l: (b[l].mean() / a[l].mean()).item() for l in a})
    assert "inverted" in capsys.readouterr().out
    assert not exercises.check_sensitivity_ratio(lambda a, b: {l: (a[l] / b[l]).mean().item() for l in a})
    assert "not the mean of per-neuron ratios" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, message", [
    ("adversarial scale", "the denominator must use the benign outputs"),
    ("no abs", "take the absolute value in the denominator"),
    ("no division", "that is the layer sensitivity alone"),
])
def test_check_relative_sensitivity_names_the_mistake(mistake, message, capsys):
    from nslib import exercises, hooks, sensitivity

    def fn(model, benign, adversarial, layer):
        sigma = sensitivity.neuron_sensitivity(model, benign, adversarial, [layer])[layer].mean()
        outputs = hooks.activations(model, adversarial if mistake == "adversarial scale" else benign, [layer])[layer]
        scale = outputs.mean() if mistake == "no abs" else outputs.abs().mean()
        return sigma.item() if mistake == "no division" else (sigma / scale).item()

    assert not exercises.check_relative_sensitivity(fn)
    out = capsys.readouterr().out
    assert message in out and "Traceback" not in out, out


def test_check_top_k_overlap_names_the_mistake(capsys):
    from nslib import exercises

    def shared(a, b, k):
        return len(set(a.topk(k).indices.tolist()) & set(b.topk(k).indices.tolist()))

    assert not exercises.check_top_k_overlap(lambda a, b, k: shared(a, b, k) / len(a))
    assert "not by the 50 neurons" in capsys.readouterr().out
    assert not exercises.check_top_k_overlap(shared)
    assert "not a count" in capsys.readouterr().out


def test_clean_notebook_drops_progress_bars_and_keeps_other_outputs():
    """tqdm's bars carry a random widget id and timings: never stored in a notebook."""
    bar = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "b5ee", "version_major": 2, "version_minor": 0},
        "text/plain": "attacks:  40%|####      | 2/5 [00:03<00:04, 1.5s/it]"})
    text_bar = nbformat.v4.new_output("stream", name="stderr", text="E7 sweep: 100%|##########| 3/3 [00:09<00:00]\n")
    explorer = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "c0ff", "version_major": 2, "version_minor": 0},
        "text/plain": "explorer (live in JupyterLab)"})
    printed = nbformat.v4.new_output("stream", name="stdout", text="accuracy 97%|PGD 0/5\n")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("run()")])
    notebook.cells[0].outputs = [bar, text_bar, explorer, printed]
    assert editions.clean_notebook(notebook).cells[0].outputs == [explorer, printed]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_edition_reads_as_written_for_students(path):
    """No solution, instructor answer, test marker or grading internals reach the student edition."""
    student = editions.student_notebook(nbformat.read(path, as_version=4))
    for index, cell in enumerate(student.cells):
        for word in ("BEGIN SOLUTION", "Instructor answer", "NBVAL", "nbval", "nbgrader", "autograde"):
            assert word not in cell.source, f"{path.name} cell {index} shows {word!r} to students"


# --- forbidden shortcuts: an answer that calls the implementation it should write scores 0 ---------

def _cheats() -> dict:
    """``{(checker, forbidden implementation): an answer that calls it}``, one per ``forbid`` entry."""
    import torch

    import nslib.ablation
    import nslib.attacks
    import nslib.hooks
    import nslib.models
    import nslib.recipes
    import nslib.sensitivity
    import nslib.training

    def identity_layer(output, patch):  # run ``output`` through a one-layer model patched by nslib.ablation
        wrapper = torch.nn.Sequential(torch.nn.Identity())
        with patch(wrapper):
            return wrapper(output)

    def stabilising(indices, benign):
        index = torch.tensor(indices)
        return lambda module, inputs, output: identity_layer(output, lambda w: nslib.ablation._patched(
            {"0": (w[0], index)}, nslib.ablation._from_stored({"0": benign[:, index]})))

    def trades(clean, adv):
        logits = iter([adv, clean])  # the loss's two forward passes: x' first, then x
        _, parts = nslib.recipes.trades_loss(lambda _: next(logits), clean, clean.argmax(1), net=None, eps=0,
                                             alpha=0, steps=0, beta=1.0)
        return torch.as_tensor(parts["kl"])

    def relative(model, benign, adversarial, layer):
        sigma = nslib.sensitivity.neuron_sensitivity(model, benign, adversarial, [layer])
        scale = nslib.sensitivity.activation_scale(model, benign, [layer])
        return nslib.sensitivity.relative_sensitivity(nslib.sensitivity.layer_sensitivity(sigma), scale)[layer]

    def step(loss_fn):
        def run(model, optimizer, images, labels, *args):
            loss = loss_fn(model, images, labels, *args)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return loss.item()
        return run

    cheats = {
        ("check_normalize", "nslib.models.Normalize"): lambda x, mean, std: nslib.models.Normalize(mean, std)(x),
        ("check_neuron_count", "nslib.hooks.summary"): lambda model, layer, example: next(
            row["neurons"] for row in nslib.hooks.summary(model, example) if row["name"] == layer),
        ("check_fgsm", "nslib.attacks"): lambda model, x, y, eps: nslib.attacks.fgsm(model, x, y, eps=eps),
        ("check_pgd", "nslib.attacks"): lambda model, x, y, eps, alpha, steps: nslib.attacks.pgd(
            model, x, y, eps=eps, alpha=alpha, steps=steps),
        ("check_sensitivity_from_activations", "nslib.sensitivity"): lambda a, b: nslib.sensitivity.neuron_distance(
            a, b).mean(0),
        ("check_top_k_neurons", "nslib.sensitivity"): lambda sigma, k: nslib.sensitivity.sensitive_neurons(
            {"layer": sigma}, k=k)["layer"],
        ("check_top_k_neurons", "nslib.ablation"): lambda sigma, k: nslib.ablation.select_neurons(sigma, k),
        ("check_deactivation_hook", "nslib.ablation"): lambda indices: lambda module, inputs, output: identity_layer(
            output, lambda w: nslib.ablation.deactivate(w, {"0": indices})),
        ("check_stabilising_hook", "nslib.ablation"): stabilising,
        ("check_trades_kl", "nslib.recipes"): trades,
        ("check_sns_penalty", "nslib.recipes"): lambda a, b, k: nslib.sensitivity.neuron_distance(a, b)[
            :, nslib.recipes._top_neurons({}, "l", nslib.sensitivity.neuron_distance(a, b).detach().mean(0), 0, k,
                                          None, 0, 0.9)].sum() / a.shape[0],
        ("check_eps_ramp", "nslib.training"): lambda *args: nslib.training.ramp(*args),
        ("check_relative_sensitivity", "nslib.sensitivity.relative_sensitivity"): relative,
        ("check_relative_sensitivity", "nslib.sensitivity.activation_scale"): relative,
        ("check_pgd_at_step", "nslib.recipes"): step(lambda model, x, y, eps, alpha, steps: nslib.recipes.pgd_at_loss(
            model.train(), x, y, net=model, eps=eps, alpha=alpha, steps=steps)[0]),
        ("check_sns_step", "nslib.recipes"): step(lambda model, x, y, layers, k, lam, eps, alpha, steps: (
            nslib.recipes.sns_loss(model.train(), x, y, net=model, eps=eps, alpha=alpha, steps=steps, state={},
                                   lam=lam, layers=layers, k=k)[0])),
    }
    try:
        import torchattacks
    except ImportError:
        return cheats
    cheats[("check_fgsm", "torchattacks")] = lambda model, x, y, eps: torchattacks.FGSM(model, eps=eps)(x, y)
    cheats[("check_pgd", "torchattacks")] = lambda model, x, y, eps, alpha, steps: torchattacks.PGD(
        model, eps=eps, alpha=alpha, steps=steps)(x, y)
    return cheats


def _forbidden_pairs() -> set:
    import importlib.util

    from nslib import exercises

    checkers = [getattr(exercises, name) for name in exercises.__all__ if name.startswith("check_")]
    return {(check.__name__, spec) for check in checkers for spec in check.forbid
            if spec != "torchattacks" or importlib.util.find_spec("torchattacks")}


def test_every_forbidden_implementation_has_a_cheating_answer_in_the_tests():
    assert set(_cheats()) == _forbidden_pairs()


@pytest.mark.parametrize("check, spec", sorted(_forbidden_pairs()))
def test_an_answer_that_calls_the_forbidden_implementation_scores_zero(check, spec, capsys):
    from nslib import exercises

    result = getattr(exercises, check)(_cheats()[(check, spec)])
    out = capsys.readouterr().out
    assert not result and result.score == 0 and result.shortcut and spec in result.shortcut, out
    assert "your code calls " in out and spec in out and "write yourself" in out, out


def _exercise_prose(notebook, index: int) -> str:
    """The exercise's statement (the markdown from its ``**Exercise`` cell on) and its cell."""
    text, i = [notebook.cells[index].source], index - 1
    while i >= 0 and notebook.cells[i].cell_type == "markdown":
        text.append(notebook.cells[i].source)
        if "**Exercise" in notebook.cells[i].source:
            break
        i -= 1
    return "\n".join(reversed(text))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_nslib_function_an_exercise_names_is_allowed_or_forbidden(path):
    """An exercise's text names nslib's functions either as tools (``allow``) or as the reference its
    checker compares with, which the answer must not call (``forbid``, a failing case above)."""
    import re

    from nslib import exercises

    notebook = nbformat.read(path, as_version=4)
    pattern = re.compile(r"\b(?:nslib\.)?(attacks|ablation|hooks|sensitivity|training|recipes|models|evaluation)"
                         r"\.(\w+)")
    for index in editions.exercise_cells(notebook):
        check = getattr(exercises, editions._CHECK_CALL.match(
            notebook.cells[index].source.rstrip().splitlines()[-1]).group(1))
        spans = re.findall(r"`([^`]+)`", _exercise_prose(notebook, index))
        named = {f"nslib.{m}.{a}" for span in spans for m, a in pattern.findall(span)}
        known = check.allow + check.forbid
        unclassified = [n for n in named if not any(n == k or n.startswith(k + ".") for k in known)]
        assert not unclassified, f"{check.__name__}: add {unclassified} to its allow or forbid"


@pytest.mark.parametrize("check, wrong, shown", [
    ("check_success_rate", lambda clean, adv, labels: ((clean == labels) & (adv != labels)).float().mean().item(),
     ["clean_pred=[0, 1, 2, 3], adv_pred=[0, 5, 5, 3], labels=[0, 1, 2, 9]", "divide by how many those are"]),
    ("check_stabilised_success_rate", lambda model, benign, adversarial, labels, neurons: 0.5,
     ["benign images", "classified correctly by the plain model", "hint:"]),
    ("check_trades_kl", lambda clean, adv: (adv.softmax(1) * (adv.log_softmax(1) - clean.log_softmax(1))).sum(1).mean(),
     ["logits_clean = [[0.0, 0.0]]", "the clean prediction p(x) is the reference distribution"]),
    ("check_eps_ramp", lambda eps, epoch, step, steps, warmup: eps * min(1.0, (epoch + step / steps) / warmup),
     ["eps_ramp(eps=0.3, epoch=0, step=49, steps_per_epoch=100, warmup_epochs=16)", "the current batch counts"]),
    ("check_sensitivity_ratio", lambda a, b: {layer: 1.0 for layer in a}, ["sigma_a = [1.0, 2.0, 3.0]", "hint:"]),
    ("check_normalize", lambda x, mean, std: x - mean[0], ["x = [[[[0.5, 1.0]], [[0.0, 0.25]]]]", "hint:"]),
])
def test_a_wrong_number_shows_the_inputs_and_a_hint(check, wrong, shown, capsys):
    from nslib import exercises

    getattr(exercises, check)(wrong)
    out = capsys.readouterr().out
    assert all(text in out for text in shown) and "Traceback" not in out, out


def test_an_in_place_deactivation_hook_fails_and_says_why_it_must_return_a_copy(capsys):
    from nslib import exercises

    def in_place(indices):
        def hook(module, inputs, output):
            output[:, indices] = 0
        return hook

    assert not exercises.check_deactivation_hook(in_place)
    out = capsys.readouterr().out
    assert "returned None: it changed `output` in place" in out and "autograd may keep it" in out, out

"""The classroom kit: the instructor notebooks carry nbgrader's metadata (points by exercise size),
the audit flags code that reaches into the grading, and nbgrader itself grades hand-made
submissions of notebooks 01 and 04 as it should: a correct one in full, the unfilled student
version 0, one with typical mistakes partly, and cheating ones (rebinding the checker or the
grading, calling nslib's own implementation) 0 for what they cheated on.

The nbgrader runs (a subprocess per command) use a course directory with the graded parts of each
notebook (title, install and setup cells, exercises, test cells, open questions): grading needs
nothing else, and the whole notebooks' run is timed in the report, not here. The instructor
guide's own commands are run on notebook 00 by tests/test_guide.py.
"""
import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from nslib import classroom, editions, launch
from nslib.exercises.audit import audit

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_instructor_notebooks_carry_current_nbgrader_metadata(path):
    notebook = nbformat.read(path, as_version=4)
    expected = editions.add_grading(nbformat.from_dict(notebook), path.stem.split("_")[0])
    assert nbformat.writes(expected) == nbformat.writes(notebook), "run `python -m nslib clean-notebooks`"
    kinds = [c.metadata["nbgrader"] for c in notebook.cells if "nbgrader" in c.metadata]
    solutions = [m for m in kinds if m["solution"] and not m["grade"]]
    tests = [m for m in kinds if m["grade"] and not m["solution"]]
    assert len(solutions) == len(tests) == len(editions.exercise_cells(notebook)) >= 2
    assert all(m["locked"] and m["points"] == editions.POINTS[m["grade_id"].split("_test_")[1]] for m in tests)
    assert len({m["grade_id"] for m in kinds}) == len(kinds), "grade ids must be unique"


def test_points_follow_the_exercises_size():
    """PGD and an SNS step weigh more than a two-line success rate; every checker has its points."""
    from nslib import exercises

    checkers = {name for name in exercises.__all__ if name.startswith("check_")}
    assert set(editions.POINTS) == checkers
    assert editions.POINTS["check_pgd"] > editions.POINTS["check_fgsm"] > editions.POINTS["check_success_rate"]
    assert editions.POINTS["check_sns_step"] > editions.POINTS["check_sns_penalty"] > editions.POINTS["check_trades_kl"]


def test_add_grading_rejects_an_exercise_without_its_checker_call():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        f"def f(x):\n    {editions.BEGIN}\n    return x\n    {editions.END}\nprint(f(1))")])
    with pytest.raises(ValueError, match=r"must end with its checker call .*print\(f\(1\)\)"):
        editions.add_grading(notebook, "99")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_course_notebooks_pass_the_audit(path):
    """The audit flags nothing in the course's own cells (a false alarm would zero an honest student)."""
    for edition in (path, ROOT / "student" / path.name):
        assert audit(nbformat.read(edition, as_version=4)) == []


@pytest.mark.parametrize("source, why", [
    ("exercises.require = lambda *a, **k: None", "changes nslib.exercises.require"),
    ("import nslib.exercises.grading as g\ng.grade = lambda *a: a[2]", "changes nslib.exercises.grading.grade"),
    ("nslib.attacks.fgsm = lambda *a, **k: None", "changes nslib.attacks.fgsm"),
    ("setattr(exercises, 'check_pgd', print)", "setattr() on nslib.exercises"),
    ("torch.Tensor.sign = lambda self: self", "changes torch.Tensor.sign"),
    ("import sys\nsys.modules['nslib.exercises'] = None", "uses sys.modules"),
    ("get_ipython().display_formatter.formatters.clear()", "get_ipython()"),
    ("import signal\nsignal.alarm(0)", "imports signal"),
    ("exec('exercises.require = None')", "exec()"),
    ("import importlib\nimportlib.reload(exercises)", "uses importlib.reload"),
    ("def f():\n    return f.__code__", "uses .__code__"),
    ("%config PlainTextFormatter.pprint = False", "IPython magic"),
])
def test_the_audit_names_code_that_reaches_into_the_grading(source, why):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import nslib\nimport torch\nfrom nslib import exercises"),
        nbformat.v4.new_code_cell(source)])
    findings = audit(notebook)
    assert findings and all(f.startswith("cell 1, line ") for f in findings) and why in "\n".join(findings)


def test_the_audit_leaves_ordinary_code_alone():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import torch\nfrom torch import nn\nimport torch.nn.functional as F\nfrom nslib import exercises\n"
        "torch.backends.cudnn.benchmark = False\nmodel = nn.Linear(2, 2)\nmodel.weight.data[0] = 1\n"
        "names = [n for n, _ in model.named_modules()]\nx = torch.zeros(3)\nx[0] = F.relu(x[1])\n"
        "%matplotlib inline\nexercises.check_pgd(print)")])
    assert audit(notebook) == []


def test_course_config_is_a_config_nbgrader_reads(tmp_path):
    from traitlets.config.loader import PyFileConfigLoader

    (tmp_path / "nbgrader_config.py").write_text(classroom.course_config(tmp_path, "nslib", tmp_path / "exchange"))
    (tmp_path / "student_config.py").write_text(classroom.student_config("nslib", tmp_path / "exchange"))
    course = PyFileConfigLoader("nbgrader_config.py", path=str(tmp_path)).load_config()
    assert course.CourseDirectory.course_id == "nslib" and course.Execute.skip_cells_with_tag == classroom.SKIP_TAG
    assert "nslib.classroom.AuditSubmission" in course.Autograde.autograde_preprocessors
    students = PyFileConfigLoader("student_config.py", path=str(tmp_path)).load_config()
    timeout = students.Execute.timeout_func
    assert timeout(nbformat.v4.new_code_cell("x", metadata={"nbgrader": {"grade": True}})) == classroom.CELL_LIMIT_S
    assert timeout(nbformat.v4.new_code_cell("x")) == classroom.OTHER_CELL_LIMIT_S
    assert "import nslib" not in (tmp_path / "student_config.py").read_text()  # a server without nslib reads it


def test_feedback_maths_become_mathml_and_code_keeps_its_dollars():
    text = classroom.maths_to_mathml("budget $\\varepsilon = 0.3$; $$\\frac{1}{B}\\sum_j x_j$$ and `echo $HOME` $5")
    assert text.count("<math") == 2 and "`echo $HOME`" in text and "$5" in text and "\\varepsilon" not in text


# --- nbgrader on hand-made submissions of notebooks 01 and 04 ----------------------------------------

def _graded_parts(path: Path) -> nbformat.NotebookNode:
    """The notebook's title, install and setup cells and every cell nbgrader grades or that holds an exercise."""
    notebook = nbformat.read(path, as_version=4)
    setup = next(i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and not launch.is_install_cell(c))
    notebook.cells = notebook.cells[:setup + 1] + [c for c in notebook.cells[setup + 1:] if "nbgrader" in c.metadata]
    return notebook


def _submit(course: Path, student: str, released: Path, answers: dict, extra: tuple[str, ...] = ()) -> None:
    """``student``'s submission: the released notebook with the exercise cells ``answers`` ({check: source})
    filled in (and then the open questions answered), and ``extra`` cells after the setup cell."""
    notebook = nbformat.read(released, as_version=4)
    for cell in notebook.cells:
        check = cell.metadata.get("nbgrader", {}).get("grade_id", "").partition("_")[2]
        if cell.metadata.get("nbgrader", {}).get("solution") and check in answers:
            cell.source = answers[check]
        if cell.cell_type == "markdown" and cell.source == editions.TEXT_STUB and answers:
            cell.source = "**Your answer.** What I did, saw and conclude."
    setup = next(i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and not launch.is_install_cell(c))
    notebook.cells[setup + 1:setup + 1] = [nbformat.v4.new_code_cell(source) for source in extra]
    folder = course / "submitted" / student / released.parent.name
    folder.mkdir(parents=True)
    nbformat.write(notebook, folder / released.name)


def _replace(source: str, old: str, new: str) -> str:
    assert old in source, old
    return source.replace(old, new)


def _solutions(path: Path) -> dict:
    notebook = nbformat.read(path, as_version=4)
    return {editions._CHECK_CALL.match(notebook.cells[i].source.rstrip().splitlines()[-1]).group(1):
            notebook.cells[i].source for i in editions.exercise_cells(notebook)}


def _in_process_points(path: Path, check: str, source: str) -> float:
    """The points the same answer earns from its checker run here (the reference for the partial scores)."""
    from nslib import exercises

    notebook = nbformat.read(path, as_version=4)
    setup = next(c.source for c in notebook.cells if c.cell_type == "code" and not launch.is_install_cell(c))
    namespace = {"__name__": "__main__"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(setup + "\n" + "\n".join(source.rstrip().splitlines()[:-1]), "<answer>", "exec"), namespace)
        fn = namespace[editions._CHECK_CALL.match(source.rstrip().splitlines()[-1]).group(2)]
        return round(editions.POINTS[check] * getattr(exercises, check)(fn).score, 2)


def _mistakes(stem: str, solutions: dict) -> dict:
    """Typical mistakes, one per exercise (some exercises left correct)."""
    if stem == "01_attacks":
        return {"check_fgsm": solutions["check_fgsm"],
                "check_pgd": _replace(solutions["check_pgd"], "x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 1)",
                                      "x_adv = x_adv.clamp(0, 1)"),  # no projection onto the eps-ball
                "check_success_rate": _replace(solutions["check_success_rate"],
                                               "(adv_pred[correct] != labels[correct]).float().mean().item()",
                                               "(adv_pred != labels).float().mean().item()")}
    return {"check_pgd_at_step": _replace(solutions["check_pgd_at_step"], "    optimizer.zero_grad()", "    pass"),
            "check_trades_kl": solutions["check_trades_kl"],
            "check_sns_penalty": _replace(solutions["check_sns_penalty"], "dist[:, chosen].sum() / benign_act.shape[0]",
                                          "dist[:, chosen].sum()"),  # not averaged over the batch
            "check_sns_step": _replace(solutions["check_sns_step"], "    optimizer.zero_grad()\n", ""),
            "check_eps_ramp": _replace(solutions["check_eps_ramp"], "(step + 1)", "step")}


def _shortcuts(stem: str, solutions: dict) -> dict:
    """nslib's own implementation where the exercise asks for one's own (the others correct)."""
    answers = dict(solutions)
    if stem == "01_attacks":
        answers["check_fgsm"] = ("def my_fgsm(model, images, labels, eps):\n"
                                 "    return nslib.attacks.fgsm(model, images, labels, eps=eps)\n\n\n"
                                 "exercises.check_fgsm(my_fgsm)")
        answers["check_pgd"] = ("def my_pgd(model, images, labels, eps, alpha, steps):\n"
                                "    return PGD(model, eps=eps, alpha=alpha, steps=steps)(images, labels)\n\n\n"
                                "exercises.check_pgd(my_pgd)")
        return answers
    answers["check_eps_ramp"] = ("def eps_ramp(eps, epoch, step, steps_per_epoch, warmup_epochs):\n"
                                 "    return ramp(eps, epoch, step, steps_per_epoch, warmup_epochs)\n\n\n"
                                 "exercises.check_eps_ramp(eps_ramp)")
    return answers


#: Cells a cheating submission adds: the measured one-liner, and a rebinding of the grading itself.
REBINDINGS = ("exercises.require = lambda *a, **k: None",
              "import nslib.exercises.grading\nnslib.exercises.grading.grade = lambda check, fn, points, name: points")


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    # nbgrader runs `alembic` by name: the environment's scripts first on PATH (make test calls
    # .venv/bin/python without activating the environment)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, capture_output=True, text=True,
                            timeout=3600, env={**os.environ, "PATH": path})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
@pytest.mark.parametrize("stem", ["01_attacks", "04_robust_training_and_sns"])
def test_nbgrader_scores_correct_stub_mixed_and_cheating_submissions(stem, tmp_path):
    pytest.importorskip("nbgrader")
    from nbgrader.api import Gradebook

    course, path = tmp_path / "course", ROOT / "notebooks" / f"{stem}.ipynb"
    (course / "source" / stem).mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(classroom.course_config(course, "nslib", tmp_path / "exchange"))
    nbformat.write(_graded_parts(path), course / "source" / stem / path.name)
    _nbgrader(course, "generate_assignment", stem)
    released = course / "release" / stem / path.name
    solutions = _solutions(path)
    mixed = _mistakes(stem, solutions)
    _submit(course, "correct", released, solutions)
    _submit(course, "stub", released, {})
    _submit(course, "mixed", released, mixed)
    _submit(course, "rebinding", released, {}, REBINDINGS)
    _submit(course, "shortcut", released, _shortcuts(stem, solutions))
    log = _nbgrader(course, "autograde", stem).stderr
    assert "the audit flags" in log and "rebinding" in log

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        def scores(student):
            notebook = gradebook.find_submission_notebook(path.stem, stem, student)
            return {g.name.split("_test_")[1]: g.score for g in notebook.grades if "_test_" in g.name}

        points = {check: editions.POINTS[check] for check in solutions}
        assert scores("correct") == points
        assert scores("stub") == dict.fromkeys(points, 0)
        assert scores("rebinding") == dict.fromkeys(points, 0)
        got = scores("mixed")
        expected = {check: _in_process_points(path, check, source) for check, source in mixed.items()}
        assert got == pytest.approx(expected)
        assert any(0 < got[c] < points[c] for c in points), "one mistake among many checks earns partial points"
        cheats = {c for c in points if _shortcuts(stem, solutions)[c] != solutions[c]}
        assert scores("shortcut") == {c: 0 if c in cheats else points[c] for c in points}
        assert gradebook.find_submission(stem, "correct").needs_manual_grade  # the open questions wait
        assert not gradebook.find_submission(stem, "stub").needs_manual_grade  # unanswered: 0, nothing to read
    flagged = nbformat.read(course / "autograded" / "rebinding" / stem / path.name, as_version=4)
    assert "Not graded automatically" in str([c.outputs for c in flagged.cells if c.cell_type == "code"])

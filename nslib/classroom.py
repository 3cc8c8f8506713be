"""The classroom kit around nbgrader: its configuration, the audit of submissions, readable
feedback, a grades CSV that says what still waits for manual grading.

    python -m nslib.classroom config --out nbgrader_config.py --course-id nslib --exchange /srv/nbgrader/exchange
    python -m nslib.classroom config --students --out /etc/jupyter/nbgrader_config.py ...
    python -m nslib.classroom pending 01_attacks     # exit status 1 while an answer waits for a person

The course configuration (the instructor's course directory) makes nbgrader's stubs ours, runs
notebooks in quick mode with a minute for each exercise and test cell (:data:`CELL_LIMIT_S`) and
without the cells tagged ``optional``, audits each submission after executing it
(:class:`AuditSubmission`), renders feedback readably offline (:class:`ReadableFeedback`) and
exports grades with a ``needs_manual_grade`` column (:class:`GradesCsv`). The students'
configuration (a hub's global ``nbgrader_config.py``) names the course and the exchange and runs
*Validate* exactly as autograde runs the notebook; it imports nothing from nslib.
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

__all__ = ["course_config", "student_config", "pending", "AuditSubmission", "ReadableFeedback", "GradesCsv",
           "CELL_LIMIT_S", "OTHER_CELL_LIMIT_S", "SKIP_TAG"]

#: Seconds for an exercise cell or a test cell when nbgrader executes a notebook (a runaway loop costs this).
CELL_LIMIT_S = 60
#: Seconds for any other cell (the course's computations in quick mode, the open exercises).
OTHER_CELL_LIMIT_S = 300
#: Cells with this tag show something nothing later needs: nbgrader does not execute them.
SKIP_TAG = "optional"
#: Settings shared by both configurations: how nbgrader executes a notebook (autograde, validate).
_EXECUTE = f'''# How nbgrader executes a notebook (autograde, and the students' Validate): quick mode; an exercise
# or test cell gets {CELL_LIMIT_S} s (a loop that never ends), any other cell {OTHER_CELL_LIMIT_S} s; cells tagged
# "{SKIP_TAG}" (demonstrations nothing later needs) are not run.
import os

os.environ.setdefault("NSLIB_QUICK", "1")
c.Execute.timeout = {OTHER_CELL_LIMIT_S}


def _cell_timeout(cell):
    nbgrader = cell.get("metadata", {{}}).get("nbgrader", {{}})
    return {CELL_LIMIT_S} if nbgrader.get("solution") or nbgrader.get("grade") else {OTHER_CELL_LIMIT_S}


c.Execute.timeout_func = _cell_timeout
c.Execute.skip_cells_with_tag = "{SKIP_TAG}"
'''


def course_config(root: str | Path, course_id: str, exchange: str | Path) -> str:
    """The text of the course directory's ``nbgrader_config.py`` (the instructor's)."""
    from nbgrader.converters import Autograde

    from .editions import NBGRADER_CONFIG

    stubs = "\n".join(f"c.{section}.{key} = {json.dumps(value)}"
                      for section, values in NBGRADER_CONFIG.items() for key, value in values.items())
    steps = [f"{p.__module__}.{p.__name__}" if isinstance(p, type) else p
             for p in Autograde.class_traits()["autograde_preprocessors"].default()]
    steps.insert(steps.index("nbgrader.preprocessors.execute.Execute") + 1, "nslib.classroom.AuditSubmission")
    root = Path(root).resolve()
    return f'''# nbgrader's configuration for the nslib course, written by `python -m nslib.classroom config`.
# nbgrader must run in the course's environment: this import fails loudly where nslib is missing.
import nslib.classroom  # noqa: F401

c = get_config()  # noqa: F821
c.CourseDirectory.root = {str(root)!r}
c.CourseDirectory.course_id = {course_id!r}
c.Exchange.root = {str(exchange)!r}
# the student edition's stubs (nbgrader's release equals student/)
{stubs}
{_EXECUTE}os.environ.setdefault("NSLIB_RUNS", {str(root / "runs")!r})   # notebook 05 trains while it is graded
# after executing a submission, audit it (a notebook that reaches into the grading scores 0)
c.Autograde.autograde_preprocessors = {json.dumps(steps, indent=4)}
# feedback: long lines wrap, the maths renders without a network (MathML)
c.GenerateFeedback.preprocessors = ["nbgrader.preprocessors.GetGrades",
                                    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
                                    "nslib.classroom.ReadableFeedback"]
# grades.csv with a needs_manual_grade column
c.ExportApp.plugin_class = "nslib.classroom.GradesCsv"
'''


def student_config(course_id: str, exchange: str | Path) -> str:
    """The text of a hub's global ``nbgrader_config.py`` for students (fetch, Validate, submit)."""
    return f'''# nbgrader's configuration for students of the nslib course, written by
# `python -m nslib.classroom config --students`. It imports nothing from nslib.
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = {course_id!r}
c.Exchange.root = {str(exchange)!r}
{_EXECUTE}'''


def pending(gradebook: str | Path, assignment: str) -> list[tuple[str, str]]:
    """``(student, notebook)`` of every submitted notebook of ``assignment`` with an answer that
    waits for manual grading, from nbgrader's ``gradebook`` (``gradebook.db``)."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{Path(gradebook).resolve()}") as book:
        return [(notebook.student.id, notebook.name) for submission in book.assignment_submissions(assignment)
                for notebook in submission.notebooks if notebook.needs_manual_grade]


try:  # the nbgrader classes exist where nbgrader is installed (the `classroom` extra)
    from nbgrader.plugins import ExportPlugin
    from nbgrader.preprocessors import NbGraderPreprocessor
except ImportError:  # pragma: no cover - nslib without the classroom extra
    ExportPlugin = NbGraderPreprocessor = object


class AuditSubmission(NbGraderPreprocessor):
    """After execution, before scoring: a submission that :func:`nslib.exercises.audit.audit` flags
    scores 0 on every autograded test of the notebook; each test cell's output says why (the
    feedback shows it; the instructor can grade the notebook by hand in the formgrader)."""

    def preprocess(self, nb, resources):
        from nbformat.v4 import new_output

        from .exercises.audit import audit

        findings = audit(nb, skip=_is_test_cell)
        if findings:
            where = resources.get("nbgrader", {})
            self.log.warning("%s, %s: the audit flags %d line(s); its autograded tests score 0:\n  %s",
                             where.get("student", "a student"), where.get("notebook", "a notebook"), len(findings),
                             "\n  ".join(findings))
            message = ("Not graded automatically: this notebook contains code that reaches into the grading, "
                       "so its autograded tests score 0 until your instructor reviews it:\n  " + "\n  ".join(findings))
            for cell in nb.cells:
                if _is_test_cell(cell):
                    cell.outputs = [new_output("error", ename="SubmissionAudit", evalue=message,
                                               traceback=message.splitlines())]
        return nb, resources


def _is_test_cell(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


#: Feedback's extra style: output lines wrap instead of running off the box.
_WRAP_CSS = "div.output_area pre, div.output_text pre, pre { white-space: pre-wrap; overflow-wrap: anywhere; }"
#: Code spans and fences (their $ signs are not maths), display maths, inline maths.
_CODE = re.compile(r"(```.*?```|`[^`\n]*`)", re.S)
_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
_INLINE = re.compile(r"(?<![\\$])\$(?![\s$])([^$\n]+?)(?<![\s\\])\$(?!\d)")


class ReadableFeedback(NbGraderPreprocessor):
    """Feedback a student can read offline: markdown maths as MathML (browsers render it without
    MathJax's network download; what latex2mathml cannot convert stays as its LaTeX text) and
    output lines that wrap. Runs after ``CSSHTMLHeaderPreprocessor`` in ``GenerateFeedback``."""

    def preprocess(self, nb, resources):
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = maths_to_mathml(cell.source)
        resources.setdefault("inlining", {}).setdefault("css", []).append(_WRAP_CSS)
        return nb, resources


def maths_to_mathml(markdown: str) -> str:
    """``markdown`` with its ``$...$`` and ``$$...$$`` maths replaced by MathML (code left alone).

    Example:
        >>> maths_to_mathml("budget $\\\\varepsilon$, code `$HOME`").count("<math")
        1
    """
    from latex2mathml.converter import convert

    def render(match, display: bool) -> str:
        try:
            mathml = convert(match.group(1).strip(), display="block" if display else "inline")
        except Exception:  # noqa: BLE001 - LaTeX it cannot read stays as text
            return match.group(0)
        return mathml.replace("\n", " ")

    parts = _CODE.split(markdown)
    for i in range(0, len(parts), 2):  # the even parts are not code
        text = _DISPLAY.sub(lambda m: render(m, True), parts[i])
        parts[i] = _INLINE.sub(lambda m: render(m, False), text)
    return "".join(parts)


class GradesCsv(ExportPlugin):
    """nbgrader's CSV of grades with a ``needs_manual_grade`` column: ``yes`` while an answer of the
    submission waits for a person (its score is then not final), ``no`` when it is complete."""

    def export(self, gradebook) -> None:
        from nbgrader.api import MissingEntry

        columns = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                   "raw_score", "late_submission_penalty", "score", "max_score", "needs_manual_grade"]
        with open(self.to or "grades.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            for assignment in gradebook.assignments:
                if self.assignment and assignment.name not in self.assignment:
                    continue
                for student in gradebook.students:
                    if self.student and student.id not in self.student:
                        continue
                    row = {"assignment": assignment.name, "duedate": assignment.duedate or "",
                           "student_id": student.id, "last_name": student.last_name or "",
                           "first_name": student.first_name or "", "email": student.email or "",
                           "max_score": assignment.max_score}
                    try:
                        sub = gradebook.find_submission(assignment.name, student.id)
                    except MissingEntry:  # nothing submitted: zero, and nothing to wait for
                        row.update(timestamp="", raw_score=0.0, late_submission_penalty=0.0, score=0.0,
                                   needs_manual_grade="no")
                    else:
                        penalty = sub.late_submission_penalty or 0.0
                        row.update(timestamp=sub.timestamp or "", raw_score=sub.score, late_submission_penalty=penalty,
                                   score=max(0.0, sub.score - penalty),
                                   needs_manual_grade="yes" if sub.needs_manual_grade else "no")
                    writer.writerow(row)


def main(argv: list[str] | None = None) -> int:
    """``python -m nslib.classroom config|pending|student-lab``."""
    parser = argparse.ArgumentParser(prog="python -m nslib.classroom", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    config = commands.add_parser("config", help="write nbgrader_config.py (the course's, or --students')")
    config.add_argument("--out", required=True, help="the file to write (written only when all is well)")
    config.add_argument("--course-id", required=True)
    config.add_argument("--exchange", required=True, help="the exchange folder every user can write")
    config.add_argument("--root", default=".", help="the course directory (default: the current folder)")
    config.add_argument("--students", action="store_true", help="the students' (global) configuration")
    waiting = commands.add_parser("pending", help="list the submissions whose answers wait for manual grading")
    waiting.add_argument("assignment")
    waiting.add_argument("--gradebook", default="gradebook.db")
    lab = commands.add_parser("student-lab", help="write a Jupyter config folder that hides nbgrader's "
                                                  "instructor menus (JUPYTER_CONFIG_PATH)")
    lab.add_argument("folder")
    args = parser.parse_args(argv)
    if args.command == "config":
        try:
            text = (student_config(args.course_id, args.exchange) if args.students else
                    course_config(args.root, args.course_id, args.exchange))
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text)
        except (ImportError, OSError) as error:
            parser.exit(2, f"nslib: error: {error} (nothing written; install the `classroom` extra, or choose "
                           "a writable --out)\n")
        print(f"wrote {args.out}")
    elif args.command == "pending":
        if not Path(args.gradebook).is_file():
            parser.exit(2, f"nslib: error: no gradebook {args.gradebook}: run this in the course directory\n")
        waits = pending(args.gradebook, args.assignment)
        for student, notebook in waits:
            print(f"pending: {student} {notebook} (an answer waits for manual grading in the formgrader)")
        print(f"{len(waits)} notebook(s) of {args.assignment} wait for manual grading" if waits else
              f"no notebook of {args.assignment} waits for manual grading")
        return 1 if waits else 0
    else:
        write_student_lab(args.folder)
    return 0


#: JupyterLab plugins a student's lab leaves out: nbgrader's for instructors (the assignment list and Validate
#: stay; the Nbgrader menu then hides the instructors' items), and JupyterLab's offer to fetch news from the web.
STUDENT_LAB_DISABLED = ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
                        "@jupyter/nbgrader:course-list", "@jupyterlab/apputils-extension:announcements")


def write_student_lab(folder: str | Path) -> Path:
    """A Jupyter config folder (for ``JUPYTER_CONFIG_PATH``) whose JupyterLab hides nbgrader's
    instructor plugins and whose server leaves out the formgrader; returns the page config's path."""
    folder = Path(folder)
    (folder / "labconfig").mkdir(parents=True, exist_ok=True)
    page = folder / "labconfig" / "page_config.json"
    page.write_text(json.dumps({"disabledExtensions": dict.fromkeys(STUDENT_LAB_DISABLED, True)},
                               indent=2) + "\n")
    (folder / "jupyter_server_config.d").mkdir(exist_ok=True)
    server = {"ServerApp": {"jpserver_extensions": {"nbgrader.server_extensions.formgrader": False,
                                                    "nbgrader.server_extensions.course_list": False}}}
    (folder / "jupyter_server_config.d" / "nslib-student-lab.json").write_text(json.dumps(server, indent=2) + "\n")
    return page


if __name__ == "__main__":
    sys.exit(main())

# Two commands on a fresh machine (see README.md):
#   make reproduce   - the course's main job on the shipped data, into results/
#   make test        - install what tests need, run pytest and nbval over notebooks/
# Both create and reuse the virtual environment in $(VENV). Also:
#   make test-fast      - pytest without the slow end-to-end tests (the newcomer test) and notebooks
#   make lab            - JupyterLab on student/, the student edition (exercises without solutions),
#                         without nbgrader's instructor menus
#   make lab-instructor - JupyterLab on notebooks/, the instructor edition (with solutions)
#   make hub            - dist/hub/: the wheel and the student edition, what a JupyterHub needs
#                         (no solutions; docs/instructor.md section 6)
#   make lock           - re-resolve every dependency to its newest release, record it in constraints.txt

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.nslib-installed
# The versions CI tested, installed by default (`make lock` re-resolves and re-records them).
CONSTRAINTS := constraints.txt
# The extras `make` installs: the course (JupyterLab, widgets), the tests and the classroom kit.
EXTRAS := course,test,classroom
# CI's quick mode for the notebooks: shipped checkpoints, small N, few epochs.
export NSLIB_QUICK ?= 1

.PHONY: venv reproduce test test-fast lab lab-instructor student hub clean lock

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint $(CONSTRAINTS) --editable '.[$(EXTRAS)]'
	# torchattacks is a test-only reference. Its published metadata pins an old
	# `requests` that would downgrade what jupyterlab needs, so it is installed
	# without its dependencies (torch, numpy, scipy, requests are already here).
	$(BIN)/python -m pip install --quiet --constraint $(CONSTRAINTS) --no-deps 'torchattacks==3.5.1'
	touch $(STAMP)

venv: $(STAMP)

reproduce: venv
	$(BIN)/python -m nslib reproduce --quick

test: venv
	$(BIN)/python -m pytest tests notebooks --nbval --nbval-current-env \
	    --nbval-sanitize-with .nbval-sanitize.cfg --nbval-cell-timeout 900 -p no:cacheprovider

test-fast: venv
	$(BIN)/python -m pytest tests -m "not slow" -x -q -p no:cacheprovider

# A Jupyter config folder that hides nbgrader's instructor menus (formgrader, create assignment,
# course list); the student's assignment list and Validate stay.
STUDENT_LAB := $(VENV)/student-lab

$(STUDENT_LAB): $(STAMP)
	$(BIN)/python -m nslib.classroom student-lab $(STUDENT_LAB)

lab: venv $(STUDENT_LAB)
	$(BIN)/jupyter lab student/
lab: export JUPYTER_CONFIG_PATH := $(CURDIR)/$(STUDENT_LAB)

lab-instructor: venv
	$(BIN)/jupyter lab notebooks/

# After editing notebooks/: nbgrader metadata and test cells, then the student edition.
student: venv
	$(BIN)/python -m nslib clean-notebooks
	$(BIN)/python -m nslib student

# The hub bundle: the wheel (nslib with its data, no notebooks/ or docs/) and the student edition.
hub: venv
	rm -rf dist/hub
	$(BIN)/python -m build --wheel --outdir dist/hub .
	cp -r student dist/hub/student

clean:
	rm -rf $(VENV) results runs dist

# Re-resolve every dependency (newest releases pyproject.toml allows) in a scratch environment,
# and record the versions in constraints.txt, which `make` installs. Then run `make test` and
# commit constraints.txt with a note of what changed.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --editable '.[$(EXTRAS)]'
	.lock-venv/bin/python -m pip install --quiet --no-deps 'torchattacks==3.5.1'
	{ echo "# The versions CI tested (Python $$(.lock-venv/bin/python -c 'import platform; print(platform.python_version())'), $$(uname -m) Linux), recorded by \`make lock\`."; \
	  echo "# \`make\` installs with --constraint $(CONSTRAINTS); a platform without one of these wheels takes its own."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^nslib-course'; } > $(CONSTRAINTS).tmp
	mv $(CONSTRAINTS).tmp $(CONSTRAINTS)
	rm -rf .lock-venv

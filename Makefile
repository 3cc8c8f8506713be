# Two commands on a fresh machine (see README.md):
#   make reproduce   - the course's main job on the shipped data, into results/
#   make test        - install what tests need, run pytest and nbval over notebooks/
# Both create and reuse the virtual environment in $(VENV). Also:
#   make test-fast      - pytest without the slow end-to-end tests (the newcomer test) and notebooks
#   make lab            - JupyterLab in student/, the student edition (exercises without solutions)
#   make lab-instructor - JupyterLab in notebooks/, the instructor edition (with solutions)
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

.PHONY: venv reproduce test test-fast lab lab-instructor student clean lock

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

# JupyterLab serves the whole repository and opens its file browser in one edition, so the
# notebooks' links to ../docs/ open there as they do on a code host (tests/test_notebook_links.py).
LAB := $(BIN)/jupyter lab --ServerApp.root_dir=.

lab: venv
	$(LAB) --ContentsManager.preferred_dir=student

lab-instructor: venv
	$(LAB) --ContentsManager.preferred_dir=notebooks

# After editing notebooks/: nbgrader metadata and test cells, then the student edition.
student: venv
	$(BIN)/python -m nslib clean-notebooks
	$(BIN)/python -m nslib student

clean:
	rm -rf $(VENV) results runs

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

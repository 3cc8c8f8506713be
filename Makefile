# Two commands on a fresh machine (see README.md):
#   make reproduce   - the course's main job on the shipped data, into results/
#   make test        - install what tests need, run pytest and nbval over notebooks/
# Both create and reuse the virtual environment in $(VENV). Also:
#   make test-fast      - pytest without the slow end-to-end tests (the newcomer test) and notebooks
#   make lab            - JupyterLab on student/, the student edition (exercises without solutions)
#   make lab-instructor - JupyterLab on notebooks/, the instructor edition (with solutions)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.nslib-installed
# CI's quick mode for the notebooks: shipped checkpoints, small N, few epochs.
export NSLIB_QUICK ?= 1

.PHONY: venv reproduce test test-fast lab lab-instructor student clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --editable '.[test,classroom]'
	# torchattacks is a test-only reference. Its published metadata pins an old
	# `requests` that would downgrade what jupyterlab needs, so it is installed
	# without its dependencies (torch, numpy, scipy, requests are already here).
	$(BIN)/python -m pip install --quiet --no-deps 'torchattacks==3.5.1'
	touch $(STAMP)

venv: $(STAMP)

reproduce: venv
	$(BIN)/python -m nslib reproduce --quick

test: venv
	$(BIN)/python -m pytest tests notebooks --nbval --nbval-current-env \
	    --nbval-sanitize-with .nbval-sanitize.cfg --nbval-cell-timeout 900 -p no:cacheprovider

test-fast: venv
	$(BIN)/python -m pytest tests -m "not slow" -x -q -p no:cacheprovider

lab: venv
	$(BIN)/jupyter lab student/

lab-instructor: venv
	$(BIN)/jupyter lab notebooks/

# After editing notebooks/: nbgrader metadata and test cells, then the student edition.
student: venv
	$(BIN)/python -m nslib clean-notebooks
	$(BIN)/python -m nslib student

clean:
	rm -rf $(VENV) results runs

# Two commands on a fresh machine (see README.md):
#   make reproduce   - the course's main job on the shipped data, into results/
#   make test        - install what tests need, run pytest (nbval over the notebooks included)
# Both create and reuse the virtual environment in $(VENV). Also:
#   make test-fast      - pytest without the slow end-to-end tests (the newcomer test) and notebooks
#   make lab            - JupyterLab in student/, the student edition (exercises without solutions),
#                         without nbgrader's instructor menus
#   make lab-instructor - JupyterLab in notebooks/, the instructor edition (with solutions)
#   make hub            - dist/hub/: the wheel and the student edition, what a JupyterHub needs
#                         (no solutions; docs/instructor.md section 6)
#   make lock           - re-resolve every dependency to its newest release, record it in constraints.txt
#   make site           - the course as a static website in build/site/ (docs/publishing.md);
#                         RESULTS=results adds a `make reproduce` run, HUB_URL=https://hub... a JupyterHub button
#   make site-private   - the same without the solutions and the instructor guide, in build/site-private/

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.nslib-installed
# The versions CI tested, installed by default (`make lock` re-resolves and re-records them).
CONSTRAINTS := constraints.txt
# The extras `make` installs: the course (JupyterLab, widgets), the tests, the classroom kit and
# the website's tools (tests/test_site.py builds the site).
EXTRAS := course,test,classroom,site
# CI's quick mode for the notebooks: shipped checkpoints, small N, few epochs.
export NSLIB_QUICK ?= 1

.PHONY: venv reproduce test nbval test-fast lab lab-instructor student hub clean lock site site-private

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

# Every test; the notebooks run under nbval against the built wheel outside the checkout
# (tests/test_notebooks.py). `make nbval` runs them here, in the checkout, while you edit them.
test: venv
	$(BIN)/python -m pytest tests -p no:cacheprovider

nbval: venv
	$(BIN)/python -m pytest notebooks --nbval --nbval-current-env \
	    --nbval-sanitize-with .nbval-sanitize.cfg --nbval-cell-timeout 600 -p no:cacheprovider

test-fast: venv
	$(BIN)/python -m pytest tests -m "not slow" -x -q -p no:cacheprovider

# A Jupyter config folder that hides nbgrader's instructor menus (formgrader, create assignment,
# course list); the student's assignment list and Validate stay.
STUDENT_LAB := $(VENV)/student-lab

$(STUDENT_LAB): $(STAMP)
	$(BIN)/python -m nslib.classroom student-lab $(STUDENT_LAB)

# JupyterLab serves the whole repository and opens its file browser in one edition, so the
# notebooks' links to ../docs/ open there as they do on a code host (tests/test_notebook_links.py).
LAB := $(BIN)/jupyter lab --ServerApp.root_dir=.

lab: venv $(STUDENT_LAB)
	$(LAB) --ContentsManager.preferred_dir=student
lab: export JUPYTER_CONFIG_PATH := $(CURDIR)/$(STUDENT_LAB)

lab-instructor: venv
	$(LAB) --ContentsManager.preferred_dir=notebooks

# After editing notebooks/: nbgrader metadata and test cells, then the student edition.
student: venv
	$(BIN)/python -m nslib clean-notebooks
	$(BIN)/python -m nslib student

# The website, from the notebooks' stored outputs (nothing re-executed, nothing downloaded).
RESULTS ?=
HUB_URL ?=
SITE_OPTIONS = $(if $(RESULTS),--results $(RESULTS)) $(if $(HUB_URL),--hub $(HUB_URL))

site: venv
	$(BIN)/python site/build_site.py --out build/site $(SITE_OPTIONS)

site-private: venv
	$(BIN)/python site/build_site.py --private --out build/site-private $(SITE_OPTIONS)

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

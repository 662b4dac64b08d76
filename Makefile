# Set-up, tests and demo for lf2_plugin. Every target installs what it needs into .venv on first use;
# a second run skips the steps already done (stamp files in .venv/).
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip --disable-pip-version-check -q
# torch/torchvision are pinned exactly: pip takes these from the local disk; an unpinned torch downloads GBs.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
FASTREID_PIN := fastreid==1.4.0
PYTEST_ARGS ?=

.PHONY: all venv lint test demo ablation rank-cylib clean distclean

all: test

venv: $(VENV)/.stamp-plugin

$(VPY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp-torch: | $(VPY)
	$(PIP) install $(TORCH_PINS)
	touch $@

# fastreid's metadata pins torch==1.13.1 (no Python 3.11 wheels): install it without deps, then what it imports.
$(VENV)/.stamp-fastreid: requirements-fastreid.txt $(VENV)/.stamp-torch
	$(PIP) install -r requirements-fastreid.txt
	$(PIP) install --no-deps $(FASTREID_PIN)
	touch $@

# fast-reid ships rank_cylib as .pyx only; without the build it evaluates 34x slower (or sys.exits upstream).
$(VENV)/.stamp-rank-cylib: $(VENV)/.stamp-fastreid
	cd "$$($(VPY) -c 'import importlib.util as u, os; print(os.path.dirname(u.find_spec("fastreid").origin))')/evaluation/rank_cylib" \
		&& $(abspath $(VPY)) setup.py -q build_ext --inplace && rm -rf build
	touch $@

$(VENV)/.stamp-plugin: setup.py $(VENV)/.stamp-rank-cylib
	$(PIP) install --no-build-isolation -e ".[cpu,test,torchreid,export]"
	$(VPY) -c "import lf2_plugin, fastreid.evaluation.rank as r; assert r.IS_CYTHON_AVAI, 'Cython ranker missing'"
	touch $@

rank-cylib:
	rm -f $(VENV)/.stamp-rank-cylib
	$(MAKE) $(VENV)/.stamp-rank-cylib

# ruff (settings in ruff.toml): lint, then check that the code is formatted (`ruff format` fixes it).
lint: venv
	$(VENV)/bin/ruff check lf2_plugin tools tests
	$(VENV)/bin/ruff format --check lf2_plugin tools tests

test: lint
	$(VPY) -m pytest $(PYTEST_ARGS)

demo: venv
	$(VPY) tools/demo.py --out logs/demo

ablation: venv
	$(VPY) tools/ablation.py --out logs/ablation

clean:
	rm -rf logs build *.egg-info .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

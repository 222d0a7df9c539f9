# rcsc3: `make demo` brings the whole system up on this machine; `make test` runs the tests.
# Both run unattended (stdin may be closed) and are safe to run again.

VENV        ?= /opt/rcsc3/venv
PY          := $(VENV)/bin/python
SYSPYTHON   ?= /usr/bin/python3
CHP         := /opt/rcsc3/node/bin/configurable-http-proxy
ESBUILD     := /opt/rcsc3/node/bin/esbuild
export DEBIAN_FRONTEND := noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo demo-cluster test venv install labextension system-deps proxy lab lab-cluster users lint clean-lab clean-cluster benchmarks

# Debian packages the venv and the tests need (Slurm & desktop packages come from `rcsc3 lab up`;
# novnc also here: `make install` builds the desktop page's one-file noVNC from it).
# Node.js/npm count as present when the commands exist (some images ship them outside apt).
SYSTEM_PACKAGES := python3 python3-venv python3-dev chromium chromium-driver sudo procps psmisc iproute2 curl novnc
system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f '$${db:Status-Abbrev}' $$p 2>/dev/null | grep -q '^ii' || echo $$p; done); \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then echo "apt-get install$$missing"; \
	  apt-get update -qq </dev/null && apt-get install -y -qq --no-install-recommends $$missing </dev/null >/dev/null; fi

# The venv lives outside any home directory and is world-readable: students' jobs run from it.
$(VENV)/bin/python: | system-deps
	$(SYSPYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip </dev/null

venv: $(VENV)/bin/python

# rcsc3's JupyterLab plugin, built from labextension/ by JupyterLab's builder (@jupyter/builder,
# pinned by package-lock.json) into rcsc3_proxy/jupyter/labextension/, which setup.cfg's data_files
# install. Node is needed where rcsc3 is built or installed from source, not on the nodes. Rebuilt
# only when its sources change; `npm ci` only when its lock file does.
LABEXT     := labextension
LABEXT_OUT := rcsc3_proxy/jupyter/labextension
labextension: $(LABEXT_OUT)/package.json

$(LABEXT)/node_modules/.package-lock.json: $(LABEXT)/package.json $(LABEXT)/package-lock.json | system-deps
	npm ci --prefix $(LABEXT) --silent --no-audit --no-fund </dev/null

$(LABEXT_OUT)/package.json: $(LABEXT)/node_modules/.package-lock.json $(LABEXT)/tsconfig.json $(wildcard $(LABEXT)/src/* $(LABEXT)/style/*)
	@# a failed build must not leave a package.json that looks up to date
	npm run --prefix $(LABEXT) --silent build </dev/null >/dev/null || { rm -f $@; exit 1; }

# Editable when students can read this checkout (handy for development); a regular install
# otherwise (e.g. a clone under /root), since students' jobs run rcsc3 from the venv.
install: venv labextension
	@if runuser -u nobody -- test -r $(CURDIR)/setup.cfg 2>/dev/null; then \
	  $(VENV)/bin/pip install -q -e '.[test]' </dev/null && \
	  rm -rf $(VENV)/share/jupyter/labextensions/rcsc3-jupyterlab && \
	  $(PY) -m rcsc3_lab.data_files setup.cfg $(VENV) >/dev/null; \
	else $(VENV)/bin/pip install -q --upgrade '.[test]' </dev/null; fi
	@# the desktop page's noVNC as one file (esbuild from npm; without it the page loads ~45 modules)
	@if command -v npm >/dev/null && [ -d /usr/share/novnc ]; then \
	  test -x $(ESBUILD) || npm install --silent --no-audit --no-fund --prefix /opt/rcsc3/node -g esbuild@0.24 </dev/null; \
	  $(VENV)/bin/rcsc3 novnc-bundle --esbuild $(ESBUILD) </dev/null || true; \
	fi
	chmod -R a+rX $(VENV)

proxy: | system-deps
	@test -x $(CHP) || npm install --silent --no-audit --no-fund --prefix /opt/rcsc3/node -g configurable-http-proxy@4 </dev/null
	@ln -sf $(CHP) /usr/local/bin/configurable-http-proxy

lab: install
	$(VENV)/bin/rcsc3 lab up --epilog $(CURDIR)/hub_config/slurm/epilog.sh </dev/null

users: install
	$(VENV)/bin/rcsc3 lab users </dev/null

demo: lab users proxy
	@echo "JupyterHub on http://127.0.0.1:8000 -- log in as student1..3 (password: $${RCSC3_DEMO_PASSWORD:-rcsc3-demo});" \
	  "the teacher's password: $${RCSC3_TEACHER_PASSWORD:-$${RCSC3_DEMO_PASSWORD:-in /var/lib/rcsc3/demo-teacher-password}}"
	install -d -m 0700 /var/lib/rcsc3/hub
	cd /var/lib/rcsc3/hub && exec $(VENV)/bin/jupyterhub -f $(CURDIR)/hub_config/jupyterhub_config.py </dev/null

# The multi-host lab (hub 10.250.0.1, gpu1, cpu1: network namespaces on this machine, beside the
# one-host lab) and the demo hub on its hub host: http://10.250.0.1:8000, next to `make demo`'s.
lab-cluster: lab
	$(VENV)/bin/rcsc3 lab up --hosts --epilog $(CURDIR)/hub_config/slurm/epilog.sh </dev/null

demo-cluster: lab-cluster users proxy
	@if curl -sf -o /dev/null --noproxy '*' --max-time 2 http://10.250.0.1:8000/hub/api; then \
	  echo "JupyterHub already answers on http://10.250.0.1:8000"; exit 0; fi; \
	echo "JupyterHub on http://10.250.0.1:8000 (the multi-host lab's hub) -- log in as student1..3 (password: $${RCSC3_DEMO_PASSWORD:-rcsc3-demo})"; \
	install -d -m 0700 /var/lib/rcsc3/hub-cluster && cd /var/lib/rcsc3/hub-cluster && \
	exec $(VENV)/bin/rcsc3 lab on hub -- $(VENV)/bin/jupyterhub -f $(CURDIR)/hub_config/cluster/jupyterhub_config.py </dev/null

# tests/cluster/ and tests/lab/test_cluster.py run on the multi-host lab (beside the one-host lab)
test: lab-cluster users proxy
	$(VENV)/bin/python -m pytest -ra $(PYTEST_ARGS) </dev/null

lint: install
	$(VENV)/bin/ruff check rcsc3_spawner rcsc3_proxy rcsc3_lab tests benchmarks images hub_config notebooks

benchmarks: lab users proxy
	for b in benchmarks/*.py; do $(VENV)/bin/python $$b || exit 1; done

clean-lab:
	-$(VENV)/bin/rcsc3 lab down </dev/null

clean-cluster:
	-$(VENV)/bin/rcsc3 lab down --hosts </dev/null

# hairseg-edge: the two commands a newcomer runs are `make demo` and `make test`.
# Both create .venv with a Python 3.10-3.13 when it is missing and install what they need.

VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
OUT     ?= demo-out

.PHONY: demo test test-slow venv clean help

help:
	@echo "make demo   - install, then export the bundled model to int8 with the accuracy check, bench float vs int8, segment and recolour a photo"
	@echo "make test   - install with the test extras and run every test not marked slow"
	@echo "make test-slow - the slow tests (fresh installs, MediaPipe, soak)"
	@echo "make check-arm64 - the Raspberry Pi (arm64) stack under qemu emulation"
	@echo "make web    - set up the browser example (examples/web) and serve it on http://127.0.0.1:8000/"
	@echo "make check-web - that page in headless Chromium, its masks checked against hairseg-edge run"

$(PY):
	@PY_BIN=$$(sh scripts/find_python.sh) || exit 2; \
	echo "creating $(VENV) with $$PY_BIN"; \
	"$$PY_BIN" -m venv $(VENV) && $(PIP) install -q --upgrade pip

# The stamp is remade when the packaging changes, so a second `make test` installs nothing.
# PYTHONWARNINGS hides setuptools' "Editable installation ... be careful with folders" banner, which
# pip -q still prints (it is a warning from the build backend, not pip output).
$(VENV)/.installed-train-test: pyproject.toml | $(PY)
	PYTHONWARNINGS="ignore:Editable installation" $(PIP) install -q -e ".[train,test]"
	@touch $@

venv: $(VENV)/.installed-train-test

demo: $(VENV)/.installed-train-test
	@PATH="$(abspath $(VENV))/bin:$$PATH" OUT="$(OUT)" sh scripts/demo.sh

test: $(VENV)/.installed-train-test
	$(PY) -m pytest -m "not slow"

test-slow: $(VENV)/.installed-train-test
	$(PY) -m pytest -m slow

clean:
	rm -rf $(VENV) build dist *.egg-info $(OUT) .pytest_cache examples/web/node_modules examples/web/build

# ---- check-arm64 (issue 9) ------------------------------------------------------------------------
# The Raspberry Pi path on arm64 under qemu emulation: a Debian bookworm arm64 root (cached outside the
# clone in $HAIRSEG_ARM64_CACHE, default ~/.cache/hairseg-edge/arm64), the core wheel of this tree in a
# fresh venv there, info/bench/run/eval, and the arm64 mask checked against x86 (IoU >= 0.99).
# Needs root, binfmt_misc and the network to Debian/PyPI; where missing it says so in one line, exit 0.
# More options: make check-arm64 ARM64_ARGS="--model my.tflite --cpu pi5" (see scripts/check_arm64.py -h).
.PHONY: check-arm64
check-arm64:
	@PY_BIN=$$(sh scripts/find_python.sh) || exit 2; "$$PY_BIN" scripts/check_arm64.py $(ARM64_ARGS)

# ---- bench (issue 7; owned by the benchmarks/ author) ---------------------------------------------
# The architecture study (every registry architecture x float32/int8/int8-qat/pruned50-int8 + the three
# peers), the training cost/memory measurement and the mobile_unet size x width sweep. Hours on 2 cores:
# every stage is cached outside the clone in $HAIRSEG_BENCH_CACHE (default ~/.cache/hairseg-edge/bench)
# and a rerun resumes where it stopped. Results: benchmarks/results/. See benchmarks/README.md.
# More options: make bench BENCH_ARGS="--archs mobile_unet --steps-per-epoch 60".
.PHONY: bench bench-cost bench-sweep
BENCH_ARGS ?=
SWEEP_ARGS ?=
bench: $(VENV)/.installed-train-test
	$(PY) benchmarks/arch_study.py --force $(BENCH_ARGS)

bench-cost: $(VENV)/.installed-train-test
	$(PY) benchmarks/train_cost.py --force

bench-sweep: $(VENV)/.installed-train-test
	$(PY) benchmarks/sweep.py --force $(SWEEP_ARGS)

# ---- web (issue 26) ----------------------------------------------------------------------------------
# The bundled model in a browser page through MediaPipe's @mediapipe/tasks-vision (WebAssembly), pinned
# in examples/web/package-lock.json and installed by `npm ci` into examples/web/node_modules (ignored;
# no CDN at run time). `make web` writes examples/web/build/ (the model, its input size, the recolour
# palette from hairseg_edge.render) and serves the folder on 127.0.0.1 (WEB_PORT, default 8000).
# `make check-web` drives Debian's chromium + chromedriver headless with Selenium (pinned here, into
# .venv: the only user of it, so it is not in a pyproject extra) and compares the page's masks with
# `hairseg-edge run`'s; see scripts/check_web.py -h. More options: make check-web WEB_ARGS="--per-set 5".
.PHONY: web check-web
WEB_PORT ?= 8000
WEB_ARGS ?=
SELENIUM_VERSION := 4.43.0
$(VENV)/.installed-web: pyproject.toml | $(PY)
	$(PIP) install -q -e . "selenium==$(SELENIUM_VERSION)"
	@touch $@

web: $(VENV)/.installed-web
	@$(PY) scripts/serve_web.py --port $(WEB_PORT)

check-web: $(VENV)/.installed-web
	@$(PY) scripts/check_web.py $(WEB_ARGS)

# edgecam: `make demo` and `make test` each do the whole set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   ?= runs/demo

.PHONY: install system-deps demo test test-fast soak lint format docs bench bench-real bench-scale bench-scenarios clean

# torch==2.13.0 first: that exact pin takes the CPU build; a bare `torch` would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[train,dev,bench]'
	touch $(STAMP)

install: $(STAMP)

# Real components the tests start on loopback: an MQTT broker, an ffmpeg stream server, headless Chromium.
SYSTEM_BINS := mosquitto ffmpeg chromium openssl
system-deps:
	@missing=""; for b in $(SYSTEM_BINS); do command -v $$b >/dev/null 2>&1 || [ -x /usr/sbin/$$b ] || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (used by the stream, MQTT, MQTT-TLS and live-view tests)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "warning: missing$$missing: the tests that need them will skip (install them, or run as root)"; \
	  fi; \
	fi

demo: install
	$(BIN)/edgecam demo --out $(DEMO)

test: install system-deps
	$(BIN)/python -m pytest -q --timeout=900

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" --timeout=300

# The fault tests at full length (stream outages of 10 s x 3, a 20 s broker outage, ...): EDGECAM_SOAK=1.
soak: install system-deps
	EDGECAM_SOAK=1 $(BIN)/python -m pytest -q -m fault --timeout=1800

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# docs/configuration.md from the configuration models (a test fails while it is stale).
docs: install
	$(BIN)/python -m edgecam.runtime.config.docs --out docs/configuration.md

# The whole benchmark: the demo models and the runtime, then the real-image section (hours on 2 cores; results are
# reused while the training code is unchanged).
bench: install
	$(BIN)/edgecam bench-report --work $(DEMO) --out BENCHMARKS.md
	$(BIN)/edgecam bench-scenarios --work runs/bench-scenarios --bundle $(DEMO)/bundle $(STREET_DETECTOR) --out BENCHMARKS.md
	$(BIN)/edgecam bench-real --work runs/bench-real --out BENCHMARKS.md
	$(BIN)/edgecam bench-scale --work runs/bench-scale --out BENCHMARKS.md

# Only the per-frame cost and camera-scale section (after bench-real: it times the bundles that trains).
bench-scale: install
	$(BIN)/edgecam bench-scale --work runs/bench-scale --out BENCHMARKS.md

# Only the scenario accuracy sections, on held-out synthetic videos (a few minutes; retail needs `make demo`):
# retail alerts on shelf videos; security events and tracking on street videos, with the README example's street
# detector too when it has been trained (runs/examples/street-detector).
STREET_DETECTOR = $(if $(wildcard runs/examples/street-detector/edgecam.json),--detector runs/examples/street-detector)
bench-scenarios: install
	$(BIN)/edgecam bench-scenarios --work runs/bench-scenarios --bundle $(DEMO)/bundle $(STREET_DETECTOR) --out BENCHMARKS.md

# Only the real-image section: edgecam's defaults vs YOLOv8n / MobileNetV3-Small trained on the same files.
bench-real: install
	$(BIN)/edgecam bench-real --work runs/bench-real --out BENCHMARKS.md

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache test-artifacts

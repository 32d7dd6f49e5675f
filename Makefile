# Horoscope assistant with open-question answering.
#   make run   - install what is missing, train what changed, start the services, open the chat
#   make test  - every test: lint, data validation, unit/integration tests, conversation tests
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

# Everything runs offline and quietly. Rasa's telemetry is off by the Rasa venv's own default
# (requirements/rasa-defaults.pth), the same for typed rasa commands as for those run here.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export SQLALCHEMY_SILENCE_UBER_WARNING := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONDONTWRITEBYTECODE := 1

RASA_VENV := .venv-rasa
QA_VENV := .venv
RASA := $(RASA_VENV)/bin/rasa
RASA_PY := $(RASA_VENV)/bin/python
QA_PY := $(QA_VENV)/bin/python
RASA_MODEL := models/horoscope.tar.gz
RASA_SOURCES := domain.yml config.yml $(shell find data -name '*.yml' -not -path 'data/knowledge/*' 2>/dev/null)

.PHONY: help install run serve test lint validate test-actions test-retrieval test-e2e test-stories test-rasa-cli \
	test-browser test-nlu test-routing test-bench \
	nlu-eval train train-reader train-reader-domain ship-reader average-reader calibrate-reader calibrate-confidence tune export-reader qa-serve test-service lock clean \
	bench bench-retrieval bench-qa bench-reader bench-abstention bench-turns bench-train bench-scale

.PHONY: serve-cluster test-cluster bench-reliability
.PHONY: bench-follow-ups bench-shared-norm

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# --- environments --------------------------------------------------------------
# Each venv is rebuilt only when its pinned requirements change (stamp file).
install: $(RASA_VENV)/.installed $(QA_VENV)/.installed ## build both virtual environments (idempotent)

# The Rasa venv also gets the project's defaults for rasa commands (requirements/rasa-defaults.pth:
# telemetry off, training cache outside the project), and loses `rasa init`'s sample test stories:
# plain `rasa test` collects every test_*.yml under the project root, this venv included.
# .rasa/cache is where the training cache was before: plain `rasa test` cannot read it.
$(RASA_VENV)/.installed: requirements/rasa.txt requirements/rasa-defaults.pth
	@[ -x $(RASA_PY) ] || "$$(scripts/find-python310.sh)" -m venv $(RASA_VENV)
	$(RASA_PY) -m pip install --quiet --disable-pip-version-check -r requirements/rasa.txt
	site="$$($(RASA_PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" && \
		cp requirements/rasa-defaults.pth "$$site/" && rm -rf "$$site/rasa/cli/initial_project/tests"
	rm -rf .rasa/cache
	@touch $@

$(QA_VENV)/.installed: requirements/qa.txt
	@[ -x $(QA_PY) ] || python3 -m venv $(QA_VENV)
	$(QA_PY) -m pip install --quiet --disable-pip-version-check -r requirements/qa.txt
	@touch $@

# jsonschema stays at 3.2.0 in the Rasa venv (Rasa 3.6 allows 3.2 to 4.17): Rasa checks every
# action server reply with jsonschema.validate, which re-checks the schema itself each time; that
# took 33 ms a call with 4.17 and takes 4.6 ms with 3.2 (bench/README.md, "Turn latency").
lock: ## re-pin both environments from what is installed
	@{ echo "# Exact pins for the Rasa venv (Python 3.10): rasa 3.6.21 and everything it brings."; \
	   echo "# Regenerate with: make lock"; $(RASA_PY) -m pip freeze; } > requirements/rasa.txt
	@{ echo "# Exact pins for the retrieval venv (Python 3.11). torch==2.13.0 resolves to the CPU wheel here."; \
	   echo "# Regenerate with: make lock"; $(QA_PY) -m pip freeze | sed 's/+cpu$$//'; } > requirements/qa.txt
	@touch $(RASA_VENV)/.installed $(QA_VENV)/.installed

# --- the Rasa model ---------------------------------------------------------------
train: $(RASA_MODEL) ## train the Rasa model if its data or config changed

$(RASA_MODEL): $(RASA_SOURCES) | $(RASA_VENV)/.installed
	$(RASA) train --fixed-model-name horoscope --out models

# --- the assistant ----------------------------------------------------------------
run: install $(RASA_MODEL) ## set up everything and chat with the assistant in the terminal
	@scripts/run-chat.sh

serve: install $(RASA_MODEL) ## start the web chat (action server, Rasa REST channel, web/) and print its URL
	@scripts/serve.sh

# PostgreSQL, Redis and nginx: Debian's packages (apt-get install postgresql redis-server nginx).
serve-cluster: install $(RASA_MODEL) ## RASA_INSTANCES (2) Rasa instances behind nginx on PostgreSQL and Redis
	@scripts/serve-cluster.sh

# --- the reader (span extractor) ----------------------------------------------------
# Real runs read SQuAD from SQUAD; nothing from it is ever copied into the repository.
SQUAD ?= ../shared/data/squad
READER ?= models/reader
NPROC ?= 1
TRIALS ?= 10

# A run outlives no session: it checkpoints into READER_RUN and `make train-reader` resumes it;
# without that checkpoint it continues the run models/reader was shipped from (same settings as
# below: models/reader/README.md, stage 4).
READER_RUN ?= var/reader-full
READER_RUN_ARGS ?= --epochs 2 --lr 1e-4 --warmup-ratio 0.03 --batch-size 32 --eval-every 1000 --seed 101 \
	--keep-snapshots 8
# The mean of the run's last AVERAGE_LAST checkpoints (10 minutes apart): retrieval/training/average.py.
AVERAGE_LAST ?= 4
READER_AVERAGED ?= var/reader-averaged

# Under jemalloc where it is installed (scripts/with-jemalloc.sh: ~1.4x windows/s, flat memory on plain
# batches); a --shared-norm run grew from 2 to 11 GB in 13 minutes under it: run those without it.
train-reader: $(QA_VENV)/.installed ## fine-tune the reader from models/reader (resumes READER_RUN; DDP, NPROC)
	scripts/with-jemalloc.sh $(QA_VENV)/bin/torchrun --standalone --nproc_per_node $(NPROC) -m retrieval.training.train \
		--train $(SQUAD)/train-v1.1.json.gz --dev $(SQUAD)/dev-v1.1.json.gz \
		--init $(READER) --out $(READER_RUN) --resume auto $(READER_RUN_ARGS)

# SHIP_TOLERANCE: dev F1 points a candidate may lose and still ship (a domain stage; ship.py).
SHIP_TOLERANCE ?= 0
ship-reader: $(QA_VENV)/.installed ## copy READER_RUN's best model to models/reader if its dev-half F1 is higher
	$(QA_PY) -m retrieval.training.ship --candidate $(READER_RUN) --shipped $(READER) \
		--dev $(SQUAD)/dev-v1.1.json.gz --tolerance $(SHIP_TOLERANCE)

average-reader: $(QA_VENV)/.installed ## average READER_RUN's last AVERAGE_LAST checkpoints; ship if dev F1 is higher
	$(QA_PY) -m retrieval.training.average --run $(READER_RUN) --last $(AVERAGE_LAST) --out $(READER_AVERAGED)
	$(MAKE) ship-reader READER_RUN=$(READER_AVERAGED)

# The knowledge base's domain (retrieval/training/domain.py): its fit-half questions, DOMAIN_REPEAT
# times each, and the questions written from its documents (DOMAIN_AUTHORED), DOMAIN_AUTHORED_REPEAT
# times each, beside DOMAIN_SQUAD SQuAD questions (sampled with DOMAIN_SEED), read with negative
# passages and shared normalisation from READER; its held-out half stays unseen for
# `make calibrate-confidence`. Without jemalloc: see train-reader. Resumes DOMAIN_RUN; ship it with
# READER_RUN=$(DOMAIN_RUN). DOMAIN_AUTHORED may list several files: stage 13 (shipped) read both
# sets of written questions, three times each (models/reader/README.md has its command).
DOMAIN_RUN ?= var/reader-domain
DOMAIN_SQUAD ?= 4000
DOMAIN_REPEAT ?= 6
DOMAIN_AUTHORED ?= tests/data/knowledge_authored_qa.json
DOMAIN_AUTHORED_REPEAT ?= 2
DOMAIN_SEED ?= 29
train-reader-domain: $(QA_VENV)/.installed ## fine-tune READER on the knowledge base's fit half mixed into SQuAD
	$(QA_PY) -m retrieval.training.domain --squad $(SQUAD)/train-v1.1.json.gz --knowledge tests/data/knowledge_qa.json \
		--authored $(DOMAIN_AUTHORED) --authored-repeat $(DOMAIN_AUTHORED_REPEAT) \
		--squad-questions $(DOMAIN_SQUAD) --repeat $(DOMAIN_REPEAT) --seed $(DOMAIN_SEED) --out $(DOMAIN_RUN)-data/train.json
	$(QA_PY) -m retrieval.training.train --train $(DOMAIN_RUN)-data/train.json --dev $(SQUAD)/dev-v1.1.json.gz \
		--init $(READER) --out $(DOMAIN_RUN) --resume auto --negatives-same-article 1 --negatives-retrieved 1 \
		--shared-norm --epochs 1 --lr 3e-5 --warmup-ratio 0.1 --batch-size 32 --max-dev-examples 1000 \
		--checkpoint-minutes 5 --keep-snapshots 4 --seed 31

calibrate-reader: $(QA_VENV)/.installed ## pick the reader's abstention threshold on SQuAD 2.0 dev
	$(QA_PY) -m retrieval.training.train --calibrate $(SQUAD)/dev-v2.0.json.gz --out $(READER)

# Held-out SQuAD dev and knowledge-base questions through the service's own path; writes
# $(READER)/confidence_calibration.json and bench/results/confidence.{json,png}.
calibrate-confidence: $(QA_VENV)/.installed ## fit the QA service's confidence (P(answer right)) for READER
	$(QA_PY) -m retrieval.service.calibrate --squad $(SQUAD)/dev-v1.1.json.gz \
		--squad-v2 $(SQUAD)/dev-v2.0.json.gz --reader $(READER) --write

tune: $(QA_VENV)/.installed ## Optuna search over DDP reader runs (SQLite study; rerun to add trials)
	$(QA_PY) -m retrieval.training.tune --train $(SQUAD)/train-v1.1.json.gz --dev $(SQUAD)/dev-v1.1.json.gz \
		--trials $(TRIALS) --nprocs 2 --storage sqlite:///models/tune/study.db --out models/tune \
		--max-train-examples 2000 --max-dev-examples 500 --threads 1

qa-serve: $(QA_VENV)/.installed ## start the QA HTTP service (builds var/index if missing or outdated)
	$(QA_PY) -m retrieval serve --index var/index --docs data/knowledge --reader $(READER)

export-reader: $(QA_VENV)/.installed ## ONNX fp32/int8 + TorchScript export, parity check on the KB questions
	$(QA_PY) -m retrieval.training.export --reader $(READER) --out $(READER)-export --check tests/data/knowledge_qa.json

# --- tests -------------------------------------------------------------------------
test: install lint validate test-actions test-retrieval test-service test-bench test-e2e test-cluster test-stories test-rasa-cli test-browser \
	test-nlu test-routing ## run every test
	@echo "make test: all test suites passed"

lint: install ## ruff over the Python code
	$(QA_VENV)/bin/ruff check .
	$(QA_VENV)/bin/ruff format --check .

validate: $(RASA_VENV)/.installed ## rasa data validate, failing on errors
	$(RASA) data validate

test-actions: $(RASA_VENV)/.installed ## custom actions and tracker store against a real HTTP server and SQLite
	$(RASA_PY) -m pytest tests/actions tests/addons

test-retrieval: $(QA_VENV)/.installed ## retrieval and reader
	$(QA_PY) -m pytest tests/retrieval tests/reader

test-service: $(QA_VENV)/.installed ## the QA service over real HTTP
	$(QA_PY) -m pytest tests/service

test-bench: $(QA_VENV)/.installed $(RASA_VENV)/.installed ## the turn benchmark's rounds and load generator (no stack)
	$(RASA_PY) -m pytest tests/bench/test_load_generator.py
	$(QA_PY) -m pytest tests/bench/test_turn_rounds.py

test-e2e: install $(RASA_MODEL) ## whole conversations over Rasa's REST channel, every service running
	$(QA_PY) -m pytest tests/e2e

test-cluster: install $(RASA_MODEL) ## scaled out on PostgreSQL, Redis, nginx: shared conversations, faults survived
	$(QA_PY) -m pytest tests/cluster

# The test targets run rasa as a person types it in the project root, defaults and all; test-rasa-cli
# checks what make cannot: plain `rasa test` and the venv's defaults, outside make's environment.
test-stories: $(RASA_MODEL) ## conversation tests (tests/test_*.yml) on the freshly trained model
	$(RASA) test core --stories tests --model $(RASA_MODEL) --fail-on-prediction-errors --out results/stories

test-rasa-cli: $(RASA_MODEL) ## typed rasa commands: plain `rasa test` in a copy of the project, telemetry off
	$(RASA_PY) -m pytest tests/rasa_cli

test-browser: install $(RASA_MODEL) ## the web chat in headless Chromium against the real services
	$(QA_PY) -m pytest tests/browser

test-nlu: $(RASA_VENV)/.installed ## NLU cross-validation; fails below the F1 floors in scripts/nlu_report.py
	$(RASA) test nlu --cross-validation --folds 3 --out results/nlu
	$(RASA_PY) scripts/nlu_report.py results/nlu --out results/nlu/summary.json

test-routing: $(RASA_MODEL) ## the trained model sends open questions to the QA service, requests to their intents
	$(RASA_PY) -m pytest tests/nlu

nlu-eval: test-nlu ## cross-validate NLU and record the scores the README quotes
	cp results/nlu/summary.json bench/results/nlu.json

# --- benchmarks (bench/README.md): each prints a table and writes bench/results/ ----------------
SQUAD_TRAIN = $(SQUAD)/train-v1.1.json.gz
SQUAD_DEV = $(SQUAD)/dev-v1.1.json.gz
SQUAD_CORPUS = $(SQUAD_TRAIN) $(SQUAD_DEV)

bench: bench-retrieval bench-qa bench-reader bench-abstention bench-turns bench-train bench-scale bench-reliability bench-follow-ups bench-shared-norm ## every benchmark

bench-retrieval: $(QA_VENV)/.installed ## retrievers on SQuAD paragraphs against unigram TF-IDF
	$(QA_PY) bench/retrieval.py --corpus $(SQUAD_CORPUS) --questions $(SQUAD_DEV) --limit 1000 \
		--fit-questions $(SQUAD_TRAIN) --out bench/results/retrieval.json

bench-qa: $(QA_VENV)/.installed ## open-domain EM/F1 at k=1..20 against TF-IDF top-1 + reader
	$(QA_PY) bench/qa_pipeline.py --corpus $(SQUAD_CORPUS) --questions $(SQUAD_DEV)

bench-reader: $(QA_VENV)/.installed ## reader speed on CPU: torch, ONNX fp32/int8, one-window baseline
	$(QA_PY) bench/reader_speed.py --questions $(SQUAD_DEV) --reader $(READER)

bench-abstention: $(QA_VENV)/.installed ## off-topic cut: relevance against reader confidence
	$(QA_PY) bench/abstention.py --off-topic $(SQUAD_DEV) --reader $(READER)

bench-follow-ups: $(QA_VENV)/.installed ## follow-up questions on the knowledge base: rewritten against as typed
	$(QA_PY) bench/follow_ups.py --reader $(READER)

bench-turns: install $(RASA_MODEL) ## chat-turn latency through Rasa's REST channel at 1/4/16 users
	$(QA_PY) bench/turn_latency.py

bench-reliability: install $(RASA_MODEL) ## make serve's stack, then the cluster at 1 and 2 Rasa instances: messages/s, p95, faults, events lost
	$(QA_PY) bench/reliability.py

bench-train: $(QA_VENV)/.installed ## reader training on CPU: train.py against HF Trainer (windows/s, memory, dev F1)
	$(QA_PY) bench/train_throughput.py --train $(SQUAD)/train-v1.1.json.gz --dev $(SQUAD)/dev-v1.1.json.gz

bench-shared-norm: $(QA_VENV)/.installed ## training with negatives: one padded forward per batch against length chunks
	$(QA_PY) bench/shared_norm_chunks.py --train $(SQUAD)/train-v1.1.json.gz

bench-scale: $(QA_VENV)/.installed ## dense index at 20k/200k/1M passages: exact against HNSW/IVF
	$(QA_PY) bench/retrieval_scale.py --corpus $(SQUAD_CORPUS) --questions $(SQUAD_DEV)

clean: ## remove trained models and run-time state (keeps the venvs)
	rm -rf results var models/*.tar.gz

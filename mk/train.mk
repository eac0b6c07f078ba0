# Training, compression, Table 1 and ZTF validation of our own t2 model (issue #4).
# Included from the Makefile (`include mk/train.mk`). Needs the training stack:
#   make train-venv   (tensorflow-cpu + tf-keras + tfmot into .venv, see ../shared/notes/environment.md §1)
# then `make train` (about 95 min on one core, measured 2026-12-04 on an AMD EPYC VM: PLAsTiCC ~7, ZTF ~70 (54 of
# at most 60 epochs) + compression ~11, evaluation ~5;
# pinned to core $(TRAIN_CPU) with taskset). `make train-ablations` (about 35 min more) trains the span_grid_v1
# row of docs/ztf-model.md; run it before train-evaluate to include that row.
# Outputs: run/train/ (all models, logs, reports), docs/table1.md + docs/*.png,
# fink_t2/data/models/<DEFAULT_MODEL_ID or SHIP_ID>.{tflite,json} (the shipped clustered + quantized model).

TRAIN_OUT ?= $(CURDIR)/run/train
TRAIN_CPU ?= 1
TRAIN_SEED ?= 42
# the ZTF model's seed: of the recipe's runs, seed 7 had the best early-stopping hold-out AUC (issue 11)
ZTF_SEED ?= 7
PLASTICC_EPOCHS ?= 60
# training length of the ZTF model: 60 epochs / patience 8 had the better early-stopping hold-out AUC than 30 / 4
# (0.928 vs 0.926, within the seed spread; issue 11, docs/ztf-model.md)
ZTF_EPOCHS ?= 60
ZTF_PATIENCE ?= 8
# the id the ZTF model ships as; empty: fink_t2.science.model.DEFAULT_MODEL_ID (replace the default)
SHIP_ID ?=
SHARED_LABELED ?= $(CURDIR)/../shared/data/labeled
BTS_DIR ?= $(SHARED_LABELED)/ztf_bts_antares
MODELS_DIR ?= $(CURDIR)/fink_t2/data/models
PUBLISHED_MODEL ?= $(MODELS_DIR)/fink-t2-quantized-28341.tflite
# where the reports and the shipped model go; a reproduction check points them elsewhere, e.g.
#   make train TRAIN_OUT=/tmp/t DOCS_DIR=/tmp/t/docs SHIP_DIR=/tmp/t/models README=
DOCS_DIR ?= $(CURDIR)/docs
# the README whose model table train-science-report rewrites when it ships (empty: none)
README ?= $(CURDIR)/README.md
SHIP_DIR ?= $(MODELS_DIR)
# train-science-report keeps a copy of the reports docs/ztf-model.md is made of here (in git): run folders are not,
# and `make train-science-report-kept` rewrites the doc from this folder alone
KEPT_REPORTS ?= $(DOCS_DIR)/reports
TASKSET := $(shell command -v taskset >/dev/null 2>&1 && echo taskset -c $(TRAIN_CPU))
T2TRAIN := FINK_T2_TRAIN_THREADS=1 $(TASKSET) $(PY) -m fink_t2.train -v

.PHONY: train train-venv train-plasticc train-ztf train-ztf-float train-search train-plasticc-weight-search train-lr-search train-seed-search train-ablations train-evaluate train-science-report train-science-report-kept

# tf-keras 2.21 declares a dependency on the full `tensorflow` wheel; with tensorflow-cpu it is
# installed --no-deps (environment.md §1, "same, CPU only, smaller").
# ASTROMER 0.1.8 (MIT) is the oracle of tests/train/test_astromer_v0.py only; --no-deps: it declares
# sphinx, seaborn, pytest and an unbounded tensorflow, but its encoder path imports only tensorboard
# (event_accumulator, also --no-deps), pandas, joblib, requests and tqdm.
train-venv: venv
	$(PY) -m pip install $(PIP_FLAGS) tensorflow-cpu==2.21.0 dm-tree mock joblib "scikit-learn>=1.4,<2"  # the feature baseline (train/baseline.py)
	$(PY) -m pip install $(PIP_FLAGS) --no-deps tf-keras==2.21.0 tensorflow-model-optimization==0.8.1
	$(PY) -m pip install $(PIP_FLAGS) --no-deps ASTROMER==0.1.8 tensorboard==2.21.0
	$(PY) -c "import ai_edge_litert.interpreter, tf_keras, tensorflow_model_optimization"

# Table 1: the paper's set-up on PLAsTiCC (full light curves, global robust scaling as astronet;
# PLAsTiCC train objects + 75 % of the test objects; Table 1 scored on the other 25 %).
train-plasticc:
	$(T2TRAIN) train --data plasticc --plasticc-test $(SHARED_LABELED)/plasticc_snmachine/test_sniabcii \
	  --scaling robust_global --epochs $(PLASTICC_EPOCHS) --patience 12 \
	  --batch-size 256 --seed $(TRAIN_SEED) --out $(TRAIN_OUT) --model-id t2-plasticc --no-progress
	$(T2TRAIN) compress --out $(TRAIN_OUT) --model-id t2-plasticc --cluster-epochs 10 --prune-epochs 2 \
	  --table1 $(DOCS_DIR)/table1.md --no-progress

# The ZTF model (issue 11): emulated alerts from PLAsTiCC train (6 per object, weight 0.3) + every eligible alert
# epoch of every BTS train-split object (BTS_EVERY_EPOCH is above any object's count: the most is 794), input
# contract window_asinh_v2, sample-weighted cross-entropy (each object once: the ZTF prior), up to ZTF_EPOCHS
# epochs with patience ZTF_PATIENCE (60, 8); temperature fitted on the ZTF rows of the early-stopping hold-out by `compress`.
BTS_EVERY_EPOCH := 1000
PLASTICC_WEIGHT ?= 0.3
ZTF_RECIPE = --loss cross_entropy --bts-per-object $(BTS_EVERY_EPOCH) --plasticc-per-object 6 --plasticc-weight $(PLASTICC_WEIGHT)
ZTF_TRAIN_FLAGS ?= --input-contract window_asinh_v2 $(ZTF_RECIPE)
# the float model of that recipe in FLOAT_OUT (ZTF_EXTRA_FLAGS: more `train` options, for the searches below)
FLOAT_OUT ?= $(TRAIN_OUT)
ZTF_EXTRA_FLAGS ?=
train-ztf-float:
	$(T2TRAIN) train --data ztf $(ZTF_TRAIN_FLAGS) --epochs $(ZTF_EPOCHS) --patience $(ZTF_PATIENCE) --batch-size 256 \
	  --seed $(ZTF_SEED) $(ZTF_EXTRA_FLAGS) --out $(FLOAT_OUT) --model-id t2-ztf --no-progress
train-ztf: train-ztf-float
	$(T2TRAIN) compress --out $(FLOAT_OUT) --model-id t2-ztf --cluster-epochs 6 --prune-epochs 1 --no-progress

# Choices made by validation (docs/ztf-model.md): the ZTF recipe (float, no compression) with SEARCH_FLAG (a
# `train` option, given after the recipe's own) at each of SEARCH_VALUES, runs in $(TRAIN_OUT)/SEARCH_NAME-<value>,
# ranked by `compare-runs` on the ZTF rows of the early-stopping hold-out (never the val split). The searches
# train SEARCH_EPOCHS / SEARCH_PATIENCE (30 / 4: the recipe the documented tables were made with).
PLASTICC_WEIGHTS ?= 0.1 0.3 1.0
LEARNING_RATES ?= 0.0087 0.01733092265976495 0.035  # the middle value is fink_t2.train.fit.LEARNING_RATE
SEED_VALUES ?= 11 13
SEARCH_EPOCHS ?= 30
SEARCH_PATIENCE ?= 4
# run folders compared beside the search's own (e.g. the default's run)
SEARCH_EXTRA_RUNS ?=
train-search:
	for v in $(SEARCH_VALUES); do $(MAKE) --no-print-directory train-ztf-float ZTF_EXTRA_FLAGS="$(SEARCH_FLAG) $$v" \
	  ZTF_EPOCHS=$(SEARCH_EPOCHS) ZTF_PATIENCE=$(SEARCH_PATIENCE) FLOAT_OUT=$(TRAIN_OUT)/$(SEARCH_NAME)-$$v || exit 1; done
	$(T2TRAIN) compare-runs $(foreach v,$(SEARCH_VALUES),$(TRAIN_OUT)/$(SEARCH_NAME)-$(v)) $(SEARCH_EXTRA_RUNS) \
	  --out $(TRAIN_OUT)/$(SEARCH_NAME)-search.json --no-progress
train-plasticc-weight-search:
	$(MAKE) --no-print-directory train-search SEARCH_NAME=plasticc-weight SEARCH_FLAG=--plasticc-weight \
	  SEARCH_VALUES="$(PLASTICC_WEIGHTS)"
train-lr-search:
	$(MAKE) --no-print-directory train-search SEARCH_NAME=lr SEARCH_FLAG=--lr SEARCH_VALUES="$(LEARNING_RATES)"
# other seeds at 30 / 4, next to the default's own run (seed 7, ZTF_EPOCHS / ZTF_PATIENCE) in TRAIN_OUT: run after
# train-ztf-float
train-seed-search:
	$(MAKE) --no-print-directory train-search SEARCH_NAME=seed SEARCH_FLAG=--seed SEARCH_VALUES="$(SEED_VALUES)" \
	  SEARCH_EXTRA_RUNS=$(TRAIN_OUT)

# Ablation (docs/ztf-model.md): the same recipe with the published input contract, float (no compression).
train-ablations:
	$(T2TRAIN) train --data ztf --input-contract span_grid_v1 $(ZTF_RECIPE) --epochs $(ZTF_EPOCHS) --patience $(ZTF_PATIENCE) \
	  --batch-size 256 --seed $(ZTF_SEED) --out $(TRAIN_OUT)/ablation-span --model-id t2-ztf --no-progress

# Both models on the BTS val split (never used for training, stopping or calibration) with the feature
# baseline; docs/ztf-model.md from those reports; ship the clustered + quantized model when it beats the
# baseline in every age bin (science-report exits 3 otherwise).
EVAL_PER_OBJECT ?= 5
SPAN_ABLATION := $(TRAIN_OUT)/ablation-span/t2-ztf.tflite
# a model file to compare as "previous default" (e.g. one extracted from git history); empty: no such row
PREVIOUS_MODEL ?=
# how that previous default was made (its row's label in docs/ztf-model.md)
PREVIOUS_RECIPE ?= the same recipe, seed 42
train-evaluate:
	$(T2TRAIN) evaluate --model $(TRAIN_OUT)/t2-ztf-clustered-quantized.tflite --bts $(BTS_DIR) --split val \
	  --per-object $(EVAL_PER_OBJECT) --out $(TRAIN_OUT)/eval/ours-bts-val.json --no-progress
	$(T2TRAIN) evaluate --model $(PUBLISHED_MODEL) --bts $(BTS_DIR) --split val --per-object $(EVAL_PER_OBJECT) \
	  --fit-temperature --out $(TRAIN_OUT)/eval/published-bts-val.json --no-progress
	$(T2TRAIN) evaluate --model $(TRAIN_OUT)/t2-ztf-clustered-quantized.tflite \
	  --plasticc $(SHARED_LABELED)/plasticc_snmachine/test_sniabcii --mode alert --no-baseline \
	  --out $(TRAIN_OUT)/eval/ours-plasticc-test-alerts.json --no-progress
	$(T2TRAIN) evaluate --model $(PUBLISHED_MODEL) --no-baseline \
	  --plasticc $(SHARED_LABELED)/plasticc_snmachine/test_sniabcii --mode alert \
	  --out $(TRAIN_OUT)/eval/published-plasticc-test-alerts.json --no-progress
	$(T2TRAIN) report --out-dir $(TRAIN_OUT) --doc $(DOCS_DIR)/table1.md \
	  --ours $(TRAIN_OUT)/eval/ours-bts-val.json --published $(TRAIN_OUT)/eval/published-bts-val.json \
	  --plasticc-ours $(TRAIN_OUT)/eval/ours-plasticc-test-alerts.json \
	  --plasticc-published $(TRAIN_OUT)/eval/published-plasticc-test-alerts.json
	$(T2TRAIN) evaluate --model $(TRAIN_OUT)/t2-ztf.tflite --bts $(BTS_DIR) --split val \
	  --per-object $(EVAL_PER_OBJECT) --out $(TRAIN_OUT)/eval/ours-float-bts-val.json --no-progress
	if [ -f $(SPAN_ABLATION) ]; then $(T2TRAIN) evaluate --model $(SPAN_ABLATION) --bts $(BTS_DIR) --split val \
	  --per-object $(EVAL_PER_OBJECT) --out $(TRAIN_OUT)/eval/span-float-bts-val.json --no-progress; fi
	if [ -n "$(PREVIOUS_MODEL)" ]; then $(T2TRAIN) evaluate --model $(PREVIOUS_MODEL) --bts $(BTS_DIR) --split val \
	  --per-object $(EVAL_PER_OBJECT) --out $(TRAIN_OUT)/eval/previous-bts-val.json --no-progress; fi
	$(MAKE) --no-print-directory train-science-report

# docs/ztf-model.md (and the ship) from the reports of train-evaluate and the selection tables of the searches
train-science-report:
	$(T2TRAIN) science-report --default $(TRAIN_OUT)/eval/ours-bts-val.json \
	  --other "published fink-t2-quantized-28341 (span grid, per-band per-alert scaling, as shipped)=$(TRAIN_OUT)/eval/published-bts-val.json" \
	  --optional-other "previous default $(notdir $(basename $(PREVIOUS_MODEL))) ($(PREVIOUS_RECIPE))=$(TRAIN_OUT)/eval/previous-bts-val.json" \
	  --other "ablation: default recipe, float, before the clustering fine-tune=$(TRAIN_OUT)/eval/ours-float-bts-val.json" \
	  --optional-other "ablation: same recipe, span_grid_v1 input (float; make train-ablations)=$(TRAIN_OUT)/eval/span-float-bts-val.json" \
	  --runs-comparison "PLAsTiCC weight (make train-plasticc-weight-search)=$(TRAIN_OUT)/plasticc-weight-search.json" \
	  --runs-comparison "Learning rate (make train-lr-search)=$(TRAIN_OUT)/lr-search.json" \
	  --runs-comparison "Seed and training length (make train-seed-search: seeds at 30 epochs / patience 4, and the default's own run)=$(TRAIN_OUT)/seed-search.json" \
	  --doc $(DOCS_DIR)/ztf-model.md --command "make train" \
	  --published $(TRAIN_OUT)/eval/published-bts-val.json --ship $(SHIP_DIR) $(if $(SHIP_ID),--ship-id $(SHIP_ID)) \
	  --keep $(KEPT_REPORTS) $(if $(README),--readme $(README))

# docs/ztf-model.md again from the kept reports (no run folder needed; today's notes; nothing shipped)
train-science-report-kept:
	$(T2TRAIN) science-report --from-kept $(KEPT_REPORTS) --doc $(DOCS_DIR)/ztf-model.md $(if $(README),--readme $(README))

train: train-plasticc train-ztf train-evaluate

# Training, compression, Table 1 and ZTF validation of our own t2 model (issue #4).
# Included from the Makefile (`include mk/train.mk`). Needs the training stack:
#   make train-venv   (tensorflow-cpu + tf-keras + tfmot into .venv, see ../shared/notes/environment.md §1)
# then `make train` (about 25 min on one core; pinned to core $(TRAIN_CPU) with taskset).
# Outputs: run/train/ (all models, logs, reports), docs/table1.md + docs/*.png,
# fink_t2/data/models/$(SHIP_ID).{tflite,json} (the shipped clustered + quantized model).

TRAIN_OUT ?= $(CURDIR)/run/train
TRAIN_CPU ?= 1
TRAIN_SEED ?= 42
PLASTICC_EPOCHS ?= 60
ZTF_EPOCHS ?= 15
SHIP_ID ?= fink-t2-ztf-w2
SHARED_LABELED ?= $(CURDIR)/../shared/data/labeled
BTS_DIR ?= $(SHARED_LABELED)/ztf_bts_antares
MODELS_DIR ?= $(CURDIR)/fink_t2/data/models
PUBLISHED_MODEL ?= $(MODELS_DIR)/fink-t2-quantized-28341.tflite
# where the reports and the shipped model go; a reproduction check points them elsewhere, e.g.
#   make train TRAIN_OUT=/tmp/t DOCS_DIR=/tmp/t/docs SHIP_DIR=/tmp/t/models
DOCS_DIR ?= $(CURDIR)/docs
SHIP_DIR ?= $(MODELS_DIR)
TASKSET := $(shell command -v taskset >/dev/null 2>&1 && echo taskset -c $(TRAIN_CPU))
T2TRAIN := FINK_T2_TRAIN_THREADS=1 $(TASKSET) $(PY) -m fink_t2.train -v

.PHONY: train train-venv train-plasticc train-ztf train-evaluate

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

# The ZTF model (issue 11): emulated alerts from PLAsTiCC train (weight 0.3) + up to 15 alert epochs of every
# BTS train-split object, input contract window_asinh_v2, sample-weighted cross-entropy (the ZTF prior),
# temperature fitted on the ZTF rows of the early-stopping hold-out by `compress`.
ZTF_TRAIN_FLAGS ?= --input-contract window_asinh_v2 --loss cross_entropy --bts-per-object 15 \
	--plasticc-per-object 6 --plasticc-weight 0.3
train-ztf:
	$(T2TRAIN) train --data ztf $(ZTF_TRAIN_FLAGS) --epochs $(ZTF_EPOCHS) --patience 4 --batch-size 256 \
	  --seed $(TRAIN_SEED) --out $(TRAIN_OUT) --model-id t2-ztf --no-progress
	$(T2TRAIN) compress --out $(TRAIN_OUT) --model-id t2-ztf --cluster-epochs 6 --prune-epochs 1 --no-progress

# Both models on the BTS val split (never used for training, stopping or calibration) with the feature
# baseline; docs/ztf-model.md from those reports; ship the clustered + quantized model when it beats the
# baseline in every age bin (science-report exits 3 otherwise).
EVAL_PER_OBJECT ?= 5
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
	$(T2TRAIN) science-report --default $(TRAIN_OUT)/eval/ours-bts-val.json \
	  --other "published fink-t2-quantized-28341 (span grid, as shipped)=$(TRAIN_OUT)/eval/published-bts-val.json" \
	  --doc $(DOCS_DIR)/ztf-model.md --command "make train" \
	  --published $(TRAIN_OUT)/eval/published-bts-val.json --ship $(SHIP_DIR) --ship-id $(SHIP_ID)

train: train-plasticc train-ztf train-evaluate

# Pretraining of the two-band ASTROMER encoder (issue 12 item 2). Included from the Makefile.
# Needs the training stack (make train-venv). `make pretrain`: corpus cache, then masked-magnitude
# pretraining of the `stream` config pinned to core $(PRETRAIN_CPU) at low priority (≤ 45 min of
# training + the corpus, see fink_t2/train/pretrain.py), then export of the best checkpoint to
# fink_t2/data/models/$(ASTROMER_ID).{tflite,json}. Per-epoch log: $(PRETRAIN_OUT)/pretrain.json.

PRETRAIN_OUT ?= $(CURDIR)/run/pretrain/stream
PRETRAIN_CPU ?= 1
PRETRAIN_CONFIG ?= stream
PRETRAIN_FLAGS ?=
ASTROMER_ID ?= fink-t2-astromer-gr
PRETRAIN_TASKSET := $(shell command -v taskset >/dev/null 2>&1 && echo taskset -c $(PRETRAIN_CPU))
PRETRAIN := FINK_T2_TRAIN_THREADS=1 nice -n 10 $(PRETRAIN_TASKSET) $(PY) -m fink_t2.train -v pretrain

.PHONY: pretrain pretrain-ship

pretrain: $(VENV)/.train-installed
	mkdir -p $(PRETRAIN_OUT)
	$(PRETRAIN) --config $(PRETRAIN_CONFIG) --out $(PRETRAIN_OUT) --no-progress $(PRETRAIN_FLAGS)
	$(MAKE) --no-print-directory pretrain-ship

# the best checkpoint of $(PRETRAIN_OUT) → quantized TFLite + metadata in the package's models folder
pretrain-ship:
	$(PRETRAIN) --config $(PRETRAIN_CONFIG) --out $(PRETRAIN_OUT) --export-only \
	  --ship $(MODELS_DIR) --ship-id $(ASTROMER_ID) --command "make pretrain"

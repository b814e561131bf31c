# easel — one non-recursive Makefile.
#
#   make            build bin/easel (installs missing Debian packages when run as root)
#   make run        build and open easel on the demo workspace in data/ (made once, then kept)
#   make demo-reset discard the demo workspace's ratings, jobs and runs and rebuild it
#   make test       build and run every test; ends with "N passed, N failed, N skipped"
#   make test SAN=1 the same under AddressSanitizer + UBSan (also: make asan)
#   make test-reference  CLIP against open_clip on a ViT-B/32-shaped model (needs torch: the
#                   python3 of build/venv when make bench has made it)
#   make test-gpu   the tests of gpu/ (build/tests/*/test_gpu_*) with EASEL_TEST_GPU=1, on a machine
#                   with a CUDA device (there a missing driver or device fails instead of skipping)
#   make bench      benchmarks, one line per result against a named peer (installs the Python
#                   peers into build/venv on first use)
#   make bench-gpu  bench/bench_gpu alone (CUDA kernels vs PyTorch on the same GPU; skipped
#                   without one; BENCH_VENV= for a system python3 whose torch has CUDA)
#   make install PREFIX=/usr/local
#   make check-layers   include rules of doc/architecture.md
#
# Layers (see doc/architecture.md and LAYERS below): base < engine < io < models < store < data
# < train < app < ui < cli, one folder each (src/NAME, ui/; the engine is src/engine,
# src/engine/cpu and gpu/). base and the engine build alone into build/libeasel_engine.a with
# libc, libm, pthreads, BLAS and CUDA only; each other layer is build/libeasel_NAME.a.

SHELL   := /bin/bash
PREFIX  ?= /usr/local
SAN     ?= 0
BUILD   := $(if $(filter 1,$(SAN)),build-san,build)

CC      ?= cc
NVCC    ?= $(firstword $(wildcard /usr/local/cuda/bin/nvcc) $(shell command -v nvcc 2>/dev/null))

DEB_BUILD := build-essential pkg-config libncurses-dev libsixel-dev libsqlite3-dev libstb-dev \
             libcsv-dev libjansson-dev libopenblas-dev libcriterion-dev zlib1g-dev
DEB_TEST  := tmux sqlite3 xvfb xterm x11-apps xdotool imagemagick libsixel-bin

# Install missing packages before pkg-config is asked anything (root), or say what to run.
ifeq ($(filter deps clean,$(MAKECMDGOALS))$(EASEL_DEPS_ONLY),)
  ifeq ($(wildcard build/.deps-ok),)
    $(shell EASEL_DEPS_ONLY=1 $(MAKE) --no-print-directory -s deps >&2)
  endif
endif

pkgcflags = $(filter-out -D_XOPEN_SOURCE=600 -D_DEFAULT_SOURCE,$(shell pkg-config --cflags $(1) 2>/dev/null))
pkglibs   = $(shell pkg-config --libs $(1) 2>/dev/null)

WARN    := -Wall -Wextra -Wshadow -Wformat=2 -Wno-format-truncation -Werror
CSTD    := -std=c11 -D_GNU_SOURCE
OPT     := -O2 -g
SANITIZERS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SANFL   := $(if $(filter 1,$(SAN)),$(SANITIZERS))
CFLAGS_BASE := $(CSTD) $(OPT) $(WARN) $(SANFL) -MMD -MP -I/usr/include/stb
CFLAGS_SRC   = $(CFLAGS_BASE) -Wpedantic -Wno-overlength-strings -Wstrict-prototypes -Wmissing-prototypes
CFLAGS_TEST  = $(CFLAGS_BASE) -Wno-missing-field-initializers -Itests
LDFLAGS     += $(SANFL)
LIBS_TEST   := $(call pkglibs,criterion)

# ---- layers (doc/architecture.md) ------------------------------------------------------------
# Lowest first. A layer is a list of folders; the files of a folder are found by wildcard, so a
# new file needs no Makefile edit and takes the layer of the folder it is put in. Each folder is
# compiled with -I of its own and lower layers' folders only (an upward include does not
# compile) and with the pkg-config flags of its own and lower layers' libraries. tests/LAYER/
# is compiled and linked the same way: tests/engine/ links the engine alone.
LAYERS       := base engine io models gen store data train app ui cli
dirs_base    := src/base
dirs_engine  := src/engine src/engine/cpu gpu
dirs_io      := src/io
dirs_models  := src/models
dirs_gen     := src/gen
dirs_store   := src/store
dirs_data    := src/data
dirs_train   := src/train
dirs_app     := src/app
dirs_ui      := ui
dirs_cli     := src/cli
# External libraries a layer adds (pkg-config names, then plain -l flags).
ldl_base     := -lpthread -lm -ldl
pkg_engine   := openblas
pkg_io       := jansson
ldl_io       := -lcsv
pkg_models   := zlib
pkg_store    := sqlite3
pkg_ui       := ncursesw libsixel
# The static library a layer's objects go into: base is part of the engine's, which must link
# with libc, libm, pthreads, BLAS and CUDA only.
lib_base     := engine
$(foreach L,$(filter-out base,$(LAYERS)),$(eval lib_$(L) := $(L)))

# INC_L, PKG_L, LIBA_L, LDLIBS_L: cumulative over L and the layers below it.
acc_inc :=
acc_pkg :=
acc_ldl :=
acc_lib :=
$(foreach L,$(LAYERS),\
  $(eval acc_inc := $(acc_inc) $(addprefix -I,$(dirs_$(L))))\
  $(eval acc_pkg := $(acc_pkg) $(pkg_$(L)))\
  $(eval acc_ldl := $(call pkglibs,$(pkg_$(L))) $(ldl_$(L)) $(acc_ldl))\
  $(eval acc_lib := $(BUILD)/libeasel_$(lib_$(L)).a $(filter-out $(BUILD)/libeasel_$(lib_$(L)).a,$(acc_lib)))\
  $(eval INC_$(L) := $(acc_inc))\
  $(eval CFL_$(L) := $(acc_inc) $(call pkgcflags,$(acc_pkg)))\
  $(eval LIBA_$(L) := $(acc_lib))\
  $(eval LDLIBS_$(L) := $(acc_ldl)))
FUZZ_LIBS_NOCUDA := $(LDLIBS_app)

obj    = $(patsubst %.c,$(BUILD)/%.o,$(1))
MAIN_SRC := src/cli/main.c
$(foreach L,$(LAYERS),$(eval SRC_$(L) := $(filter-out $(MAIN_SRC),$(sort $(foreach d,$(dirs_$(L)),$(wildcard $(d)/*.c))))))
$(foreach L,$(LAYERS),$(eval $(call obj,$(SRC_$(L)) $(if $(filter cli,$(L)),$(MAIN_SRC))): CFLAGS_LAYER = $(CFL_$(L))))
CU_SRC := $(if $(NVCC),$(sort $(wildcard gpu/*.cu)))
LIB_NAMES := $(filter-out base,$(LAYERS))
$(foreach N,$(LIB_NAMES),$(eval OBJ_$(N) := $(call obj,$(foreach L,$(LAYERS),$(if $(filter $(N),$(lib_$(L))),$(SRC_$(L)))))))
OBJ_engine += $(patsubst %.cu,$(BUILD)/%.cu.o,$(CU_SRC))

ifneq ($(NVCC),)
  CUDA_HOME   := $(patsubst %/bin/nvcc,%,$(NVCC))
  CFLAGS_BASE += -DEASEL_CUDA=1 -I$(CUDA_HOME)/include
  CUDA_LIBS   := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublas -lstdc++
  $(foreach L,$(filter-out base,$(LAYERS)),$(eval LDLIBS_$(L) += $(if $(CU_SRC),$(CUDA_LIBS))))
  NVFLAGS     := -O2 -g -std=c++17 -MMD -MP $(INC_engine) -DEASEL_CUDA=1 \
                 -Werror all-warnings -Xcompiler -Wall,-Werror,-Wno-format-truncation \
                 $(foreach a,80 86 89 90,-gencode arch=compute_$(a),code=sm_$(a)) -gencode arch=compute_90,code=compute_90
endif
ifeq ($(EASEL_DEPS_ONLY),)
  ifneq ($(NVCC),)
    $(info easel: CUDA build with $(NVCC))
  else
    $(info easel: CPU-only build (no nvcc found; set NVCC=/path/to/nvcc to build gpu/))
  endif
endif

# Tests by folder: tests/LAYER/test_*.c. tests/support*.c (temp stores, bin/easel, tmux) need
# the app layer: tests of app, ui and cli link them.
$(foreach L,$(LAYERS),$(eval TEST_SRC_$(L) := $(sort $(wildcard tests/$(L)/test_*.c))))
TEST_SRC        := $(foreach L,$(LAYERS),$(TEST_SRC_$(L)))
TEST_SUPPORT_LAYERS := app ui cli
TEST_SUPPORT    := $(call obj,$(sort $(wildcard tests/support_*.c)))
TEST_BIN        := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
$(foreach L,$(LAYERS),$(eval $(call obj,$(TEST_SRC_$(L))): CFLAGS_LAYER = $(CFL_$(L))))
$(TEST_SUPPORT): CFLAGS_LAYER = $(CFL_app)

BENCH_SRC := $(sort $(wildcard bench/bench_*.c))
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

DEPS_STAMP := build/.deps-ok

.PHONY: print-layers all run test test-reference test-gpu asan bench install check-layers clean deps demo demo-reset demo-data bin/easel
all: bin/easel

# ---- dependencies: installed by the build when root, else the exact command is printed -----
deps: $(DEPS_STAMP)
$(DEPS_STAMP):
	@mkdir -p build; missing=""; \
	for p in $(DEB_BUILD) $(DEB_TEST); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "easel: installing Debian packages:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) >build/apt.log 2>&1 \
	      || { echo "easel: apt-get failed, see build/apt.log"; tail -n 20 build/apt.log; exit 1; }; \
	  else \
	    echo "easel: missing Debian packages. Run:"; \
	    echo "  sudo apt-get install -y --no-install-recommends$$missing"; exit 1; \
	  fi; \
	fi; touch $@

# ---- libraries and the binary ---------------------------------------------------------------
$(foreach N,$(LIB_NAMES),$(eval $(BUILD)/libeasel_$(N).a: $(OBJ_$(N))))
$(BUILD)/libeasel_%.a:
	@mkdir -p $(@D); rm -f $@; ar rcs $@ $^

APP_LIBS := $(LIBA_cli)
APP_LDLIBS := $(LDLIBS_cli)

$(BUILD)/bin/easel: $(call obj,$(MAIN_SRC)) $(APP_LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< -Wl,--start-group $(APP_LIBS) -Wl,--end-group $(APP_LDLIBS)

# bin/easel is always the binary of the last build (plain or SAN=1).
bin/easel: $(BUILD)/bin/easel
	@mkdir -p bin; cmp -s $< $@ || cp -f $< $@

$(BUILD)/src/%.o: src/%.c $(DEPS_STAMP)
	@mkdir -p $(@D); $(CC) $(CFLAGS_LAYER) $(CFLAGS_SRC) -c -o $@ $<
# The assets folder of an installed easel (ui/assets.c also looks beside the binary).
$(BUILD)/ui/assets.o: CFLAGS_SRC += -DEASEL_SHARE_DIR='"$(PREFIX)/share/easel"'
$(BUILD)/ui/%.o: ui/%.c $(DEPS_STAMP)
	@mkdir -p $(@D); $(CC) $(CFLAGS_LAYER) $(CFLAGS_SRC) -c -o $@ $<
$(BUILD)/gpu/%.o: gpu/%.c $(DEPS_STAMP)
	@mkdir -p $(@D); $(CC) $(CFLAGS_LAYER) $(CFLAGS_SRC) -c -o $@ $<
$(BUILD)/gpu/%.cu.o: gpu/%.cu $(DEPS_STAMP)
	@mkdir -p $(@D); $(NVCC) $(NVFLAGS) -c -o $@ $<
$(BUILD)/tests/%.o: tests/%.c $(DEPS_STAMP)
	@mkdir -p $(@D); $(CC) $(CFLAGS_LAYER) $(CFLAGS_TEST) -c -o $@ $<
$(BUILD)/bench/%.o: bench/%.c $(DEPS_STAMP)
	@mkdir -p $(@D); $(CC) $(CFL_cli) $(CFLAGS_TEST) -c -o $@ $<

# A test links the libraries of its folder's layer and the layers below (tests/engine/: the
# engine alone, so it must build and test without the store, UI or jansson).
define test_link
$(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC_$(1))): $(BUILD)/tests/%: $(BUILD)/tests/%.o $(if $(filter $(1),$(TEST_SUPPORT_LAYERS)),$(TEST_SUPPORT)) $(LIBA_$(1))
	$$(CC) $$(LDFLAGS) -o $$@ $$< $(if $(filter $(1),$(TEST_SUPPORT_LAYERS)),$(TEST_SUPPORT)) -Wl,--start-group $(LIBA_$(1)) -Wl,--end-group $(LDLIBS_$(1)) $$(LIBS_TEST)
endef
$(foreach L,$(LAYERS),$(eval $(call test_link,$(L))))
$(BUILD)/bench/%: $(BUILD)/bench/%.o $(APP_LIBS)
	$(CC) $(LDFLAGS) -o $@ $< -Wl,--start-group $(APP_LIBS) -Wl,--end-group $(APP_LDLIBS)

# ---- the demo workspace's generator (data/gen/make_demo.c; see doc/demo.md) -------------------
# Exact floating point (no FMA contraction) so its output is the same bytes on every build;
# `make demo-data` rewrites data/, tests/io/test_demo_data.c checks the committed files against it.
$(BUILD)/gen/make_demo: data/gen/make_demo.c $(DEPS_STAMP)
	@mkdir -p $(@D); $(CC) $(CSTD) -O2 -ffp-contract=off -Wall -Wextra -Werror -isystem /usr/include/stb -o $@ $< -lz -lm
$(BUILD)/tests/io/test_demo_data: | $(BUILD)/gen/make_demo
demo-data: $(BUILD)/gen/make_demo
	$< --out data

# ---- the two commands -----------------------------------------------------------------------
# The demo store is built once, when it is absent, and reopened afterwards whatever was rebuilt
# (its inputs are order-only prerequisites): the ratings, jobs and runs made in the demo stay.
# `make demo-reset` says what it discards, keeps the old store as data/demo.db.bak and rebuilds.
DEMO_DB := data/demo.db
demo: $(DEMO_DB)
define demo_build
	@rm -f $(DEMO_DB).tmp $(DEMO_DB).tmp-wal $(DEMO_DB).tmp-shm
	@bin/easel --db $(DEMO_DB).tmp init >/dev/null && \
	 bin/easel --db $(DEMO_DB).tmp import prompts data/prompts.csv >/dev/null && \
	 bin/easel --db $(DEMO_DB).tmp import images data/images >/dev/null && \
	 bin/easel --db $(DEMO_DB).tmp import ratings data/multihead_ratings.csv >/dev/null && \
	 mv $(DEMO_DB).tmp $(DEMO_DB) && rm -f $(DEMO_DB).tmp-wal $(DEMO_DB).tmp-shm && \
	 echo "easel: demo workspace $(DEMO_DB) ready"
endef
$(DEMO_DB): | bin/easel data/prompts.csv data/multihead_ratings.csv
	$(demo_build)

demo-reset: bin/easel
	@if [ -e $(DEMO_DB) ]; then \
	  counts=$$(bin/easel --db $(DEMO_DB) status | awk '$$1=="ratings"||$$1=="jobs"||$$1=="runs" {printf "%s%s %s", sep, $$2, $$1; sep=", "}'); \
	  echo "easel: make demo-reset discards $(DEMO_DB) (made in the demo: $${counts:-counts unreadable})$$(test -d data/runs && echo ' and data/runs/')"; \
	  if [ -t 0 ]; then read -r -p "easel: discard them? [y/N] " a; case $$a in [yY]*) ;; *) echo "easel: nothing discarded"; exit 1;; esac; fi; \
	  rm -rf $(DEMO_DB).bak $(DEMO_DB).bak-wal $(DEMO_DB).bak-shm data/runs.bak; \
	  for x in "" -wal -shm; do if [ -e $(DEMO_DB)$$x ]; then mv $(DEMO_DB)$$x $(DEMO_DB).bak$$x || exit 1; fi; done; \
	  if [ -d data/runs ]; then mv data/runs data/runs.bak; fi; \
	  echo "easel: the old store is kept as $(DEMO_DB).bak$$(test -d data/runs.bak && echo ', its runs as data/runs.bak/,') until the next reset"; \
	fi
	$(demo_build)

run: bin/easel $(DEMO_DB)
	bin/easel --db $(DEMO_DB)

test: bin/easel $(TEST_BIN) check-layers
	@BUILD=$(BUILD) EASEL_BIN=$(CURDIR)/bin/easel bash tests/run_all.sh $(TEST_BIN)

asan:
	$(MAKE) test SAN=1

# CLIP against open_clip on a ViT-B/32-shaped random model made on demand (needs torch and
# open_clip_torch from pip; the model, about 1 GB, goes to build/clip-ref, never committed).
test-reference: $(BUILD)/tests/models/test_clip_reference
	@$(if $(wildcard build/venv/bin/python3),build/venv/bin/python3,python3) tests/clip/make_fixtures.py --reference build/clip-ref
	@EASEL_CLIP_REF=build/clip-ref $(BUILD)/tests/models/test_clip_reference --verbose=1

test-gpu: bin/easel $(TEST_BIN)
	@BUILD=$(BUILD) EASEL_TEST_GPU=1 bash tests/run_all.sh $(foreach b,$(TEST_BIN),$(if $(findstring gpu,$(notdir $(b))),$(b)))

# The Python peers (torch CPU, open_clip, diffusers, peft: bench/requirements.txt) go into a
# virtual environment under build/ on first use (bench/venv.sh; a stamp makes later runs
# free); every peer runs with its python3. Where pip cannot install them (no network) the
# benchmarks run without them, each peer's line saying why. BENCH_VENV= uses the system's
# python3 instead.
BENCH_VENV ?= build/venv
bench: bin/easel $(BENCH_BIN)
	@$(if $(BENCH_VENV),bash bench/venv.sh $(BENCH_VENV) || echo "easel: make bench goes on \
	  without the Python peers; their lines say skipped" >&2)
	@BUILD=$(BUILD) EASEL_BENCH_VENV=$(BENCH_VENV) bash bench/run_all.sh $(BENCH_BIN)

# cattn: the GPU benches alone (bench/bench_gpu.c: kernels, LayerNorm and attention through the
# CUDA Backend, against PyTorch on the same GPU; the peer needs a torch built with CUDA, which
# build/venv's CPU torch is not: BENCH_VENV= runs it with the system's python3).
.PHONY: bench-gpu
bench-gpu: $(BUILD)/bench/bench_gpu
	@BUILD=$(BUILD) EASEL_BENCH_VENV=$(BENCH_VENV) bash bench/run_all.sh $(BUILD)/bench/bench_gpu

install: bin/easel
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/easel
	install -m 755 bin/easel $(DESTDIR)$(PREFIX)/bin/easel
	cp -r assets/. $(DESTDIR)$(PREFIX)/share/easel/

# ---- libFuzzer targets (clang only; not part of `make test`) -----------------------------------
# One target per tests/fuzz/fuzz_NAME.c: import (the CSV/JSONL importers), safetensors (the
# reader), image (the image decoders), import_images (`import images`). The core and engine are
# compiled once more with clang + ASan + UBSan into build/fuzz/lib.a; each target then runs for
# FUZZ_ARGS on its seeds (tests/fuzz/seeds.sh) with inputs up to FUZZ_MAX_LEN bytes. Examples:
# make fuzz FUZZ_ARGS=-max_total_time=60; make fuzz FUZZ_TARGETS=image. A finding is left as
# build/fuzz/crash-* (or leak-, timeout-); replay it with build/fuzz/fuzz_NAME FILE.
.PHONY: fuzz
FUZZ_CFLAGS  := $(CSTD) -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fno-sanitize-recover=undefined -MMD -MP -I/usr/include/stb $(INC_cli) \
                $(call pkgcflags,$(foreach L,$(LAYERS),$(pkg_$(L))))
FUZZ_LIB_SRC := $(foreach L,base engine io models store data train app,$(SRC_$(L))) ui/gfx_image.c
FUZZ_TARGETS ?= import safetensors image import_images
FUZZ_ARGS    ?= -max_total_time=30
FUZZ_MAX_LEN ?= 16384
FUZZ_LIBS    := $(FUZZ_LIBS_NOCUDA)
build/fuzz/obj/%.o: %.c $(DEPS_STAMP)
	@mkdir -p $(@D); clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<
build/fuzz/lib.a: $(patsubst %.c,build/fuzz/obj/%.o,$(FUZZ_LIB_SRC))
	@rm -f $@; ar rcs $@ $^
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c build/fuzz/lib.a
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< build/fuzz/lib.a $(FUZZ_LIBS)
fuzz: $(patsubst %,build/fuzz/fuzz_%,$(FUZZ_TARGETS))
	@bash tests/fuzz/seeds.sh build/fuzz/corpus
	@for t in $(FUZZ_TARGETS); do echo "fuzz: $$t"; \
	  build/fuzz/fuzz_$$t -max_len=$(FUZZ_MAX_LEN) -artifact_prefix=build/fuzz/ $(FUZZ_ARGS) \
	    build/fuzz/corpus/$$t || exit 1; done

LAYER_SPEC = $(foreach L,$(LAYERS),$(L)=$(subst $(eval) ,:,$(strip $(dirs_$(L)))))
check-layers:
	@EASEL_LAYERS='$(LAYER_SPEC)' bash tests/check_layers.sh
print-layers:
	@echo '$(LAYER_SPEC)'

clean:
	rm -rf build/libeasel* build/src build/ui build/gpu build/tests build/bench build/bin build-san bin

-include $(shell find build build-san -name '*.d' 2>/dev/null)

# clipdex - plain Makefile (see README.md; `make help` lists every target).
#
# One section per module below: its sources, unit tests, test tools and
# benchmarks, each added to the lists the generic rules and the top-level
# targets (at the end) use.  Adding a module is one section; adding a test
# is one line in its module's section.
#
# Variables: V=1 prints whole commands (default: one short line a file);
# WERROR=0 drops -Werror; SAN=1 builds with ASan+UBSan into build-asan/
# (used by asan-check), SAN=thread with TSan into build-tsan/; O=...
# overrides the optimisation level.

.DEFAULT_GOAL := all
PREFIX ?= /usr/local
CC ?= cc
SAN ?= 0
WERROR ?= 1
O ?= -O2
PYTHON ?= /usr/bin/python3

ifeq ($(SAN),1)
BUILD ?= build-asan
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(SAN),thread)
BUILD ?= build-tsan
SANFLAGS = -fsanitize=thread
else
BUILD ?= build
SANFLAGS =
endif
BIN = $(BUILD)/bin

# Quiet by default: "  CC      core/engine/model.c"; V=1 shows the commands.
# $(call say,WHAT,FILE) starts a recipe line (its '@' silences the line).
V ?= 0
ifeq ($(V),1)
say =
else
say = @printf '  %-7s %s\n' '$(1)' '$(2)';
endif

PKGS = openblas libcjson libutf8proc libpng libjpeg libzip sqlite3 libcrypto inih
# image formats (core/image/); giflib has no pkg-config file everywhere
PKGS += libwebp libwebpdemux libheif libtiff-4 libexif
# clipdex serve
PKGS += libmicrohttpd
# training and evaluation captions: XMP (exempi), IPTC (libiptcdata)
PKGS += exempi-2.0 libiptcdata
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN = -Wall -Wextra -Wstrict-prototypes -Wvla -Wformat=2 -Wno-format-truncation -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN += -Werror
endif
CFLAGS ?= $(O) -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -pthread -MMD -MP $(WARN) $(SANFLAGS) \
	-Icore $(PKG_CFLAGS) $(CFLAGS)
# FAISS (index store): the C API that `make deps` builds into build/faiss
# (scripts/deps.sh), over Debian's static libfaiss.a, which is C++ with
# OpenMP: hence libgomp and libstdc++ after it.
FAISS_C = build/faiss/libfaiss_c.a
# (its multiarch path when `make deps` has not installed it yet)
FAISS_A := $(or $(firstword $(wildcard /usr/lib/*/libfaiss.a /usr/lib/libfaiss.a)),\
	/usr/lib/$(shell $(CC) -print-multiarch)/libfaiss.a)
# Debian's libfaiss.a is built for baseline x86-64, so its distance
# functions are scalar loops (95% of an HNSW build).  On x86-64 we link a
# copy in which they are weak, and core/store/faiss_dist.c's vectorised ones
# (under the same C++ names) take their place.
ifeq ($(shell uname -m),x86_64)
FAISS_W = build/faiss/libfaiss_fastdist.a
FAISS_WEAK = _ZN5faiss18fvec_inner_productEPKfS1_m _ZN5faiss10fvec_L2sqrEPKfS1_m \
	_ZN5faiss15fvec_norm_L2sqrEPKfm _ZN5faiss22fvec_inner_products_nyEPfPKfS2_mm \
	_ZN5faiss13fvec_L2sqr_nyEPfPKfS2_mm
$(FAISS_W): $(FAISS_A) Makefile
	@mkdir -p $(dir $@)
	$(call say,OBJCOPY,$@)objcopy $(addprefix --weaken-symbol=,$(FAISS_WEAK)) $(FAISS_A) $@.tmp && mv $@.tmp $@
else
FAISS_W = $(FAISS_A)
endif
FAISS_LIBS = $(FAISS_C) $(FAISS_W)
LDLIBS = $(FAISS_C) $(FAISS_W) $(PKG_LIBS) -lsentencepiece -ldnnl -lgif -lgomp -lstdc++ -lm -pthread

# ======================================================================
# Modules.  Each section adds to:
#   CORE_OBJS, COMMON_OBJS, QUERY_OBJS, INDEXER_OBJS  sources (as .o)
#   UNIT_TESTS   tests/unit/NAME.c programs that prove runs (TAP)
#   TEST_TOOLS   programs the CLI tests and the demo run (never by prove)
#   BENCHES      bench/NAME.c programs `make bench` builds
# ======================================================================
UNIT_TESTS =
TEST_TOOLS =
BENCHES =

# ---- core/: the base of the library (status, thread pool, hashes) ----
CORE_OBJS  = core/status.o core/pool.o core/hash.o
UNIT_TESTS += test_status

# ---- core/engine/: the model (config.json, weights readers, transformer,
# kernels, tokenizer) ----
CORE_OBJS += core/engine/tokenizer.o core/engine/ftfy.o
CORE_OBJS += core/engine/safetensors.o core/engine/torchbin.o core/engine/weights.o
CORE_OBJS += core/engine/model_config.o core/engine/model.o core/engine/kernels.o core/engine/linear.o
CORE_OBJS += core/engine/model_input.o core/engine/transformer.o
# OpenCLIP checkpoints (openclip.c); it finds the CLIP vocabulary clipdex
# carries (data/clip) installed, or in this source tree when run from build/
CORE_OBJS += core/engine/openclip.o
$(BUILD)/core/engine/openclip.o: PROG_CFLAGS = -DCDX_DATADIR='"$(PREFIX)/share/clipdex"' \
	-DCDX_SRC_DATADIR='"$(CURDIR)/data"'
# reduced precision (bf16, int8) through oneDNN: CPU level, prepared layers
CORE_OBJS += core/engine/cpu.o core/engine/precision.o core/engine/qlinear.o core/engine/qgram.o core/engine/qsmall.o core/engine/qcache.o
CORE_OBJS += core/engine/tower_key.o
UNIT_TESTS += test_tokenizer test_weights test_kernels test_qlinear test_qsmall
BENCHES += engine_bench
# bench/README-precision.md: oneDNN on its own threads against our column split
BENCHES += onednn_split
# SigLIP / SigLIP 2 (siglip.c) and their SentencePiece tokenizers: sptok.c,
# and spm.cc, the C interface to Debian's libsentencepiece (C++).
CORE_OBJS += core/engine/siglip.o core/engine/sptok.o core/engine/spm.o
CXX ?= c++
ALL_CXXFLAGS = -std=c++17 -D_GNU_SOURCE -pthread -MMD -MP -Wall -Wextra -Wno-unused-parameter \
	$(if $(filter 1,$(WERROR)),-Werror) $(SANFLAGS) -Icore $(PKG_CFLAGS) $(O) -g
$(BUILD)/%.o: %.cc $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(call say,CXX,$<)$(CXX) $(ALL_CXXFLAGS) -c $< -o $@
# The compute kernels are written to be vectorised: -O3 and OpenMP's simd
# pragmas; they never call the OpenMP runtime (libgomp is linked only for
# FAISS's own code; core/pool.h says why our threads are our own).
$(BUILD)/core/engine/kernels.o $(BUILD)/core/engine/linear.o $(BUILD)/core/engine/qlinear.o $(BUILD)/core/engine/qgram.o $(BUILD)/core/engine/qsmall.o: KFLAGS = -O3 -fopenmp-simd

# ---- core/train/: contrastive training (clipdex train): trainable
# parameters, forward with activations, backward, loss, AdamW, saving ----
CORE_OBJS += core/train/train.o core/train/grad_kernels.o core/train/train_save.o
CORE_OBJS += core/train/train_siglip.o core/train/train_openclip.o core/train/torchbin_write.o
CORE_OBJS += core/train/train_stale.o
CORE_OBJS += core/train/train_init.o core/train/augment.o
TEST_TOOLS += tests/tools/grad_dump tests/tools/crop_dump
UNIT_TESTS += test_grad
$(BUILD)/core/train/grad_kernels.o: KFLAGS = -O3 -fopenmp-simd

# ---- core/image/: decoders, EXIF, orientation, resampling,
# preprocessing, perceptual hash ----
CORE_OBJS += core/image/image.o core/image/resample.o core/image/preprocess.o core/image/phash.o core/image/ingest.o
CORE_OBJS += core/image/image_exif.o core/image/image_orient.o core/image/image_webp.o core/image/image_heif.o
CORE_OBJS += core/image/image_tiff.o core/image/image_gif.o
# open_clip's eval transform (OpenCLIP models)
CORE_OBJS += core/image/preprocess_openclip.o
UNIT_TESTS += test_resample test_phash test_image test_exif test_image_fast
TEST_TOOLS += tests/preprocess_dump tests/imgcheck
# the model input tensor (OpenCLIP preprocessing, 14-openclip.t)
TEST_TOOLS += tests/tools/model_input_dump tests/tools/model_tokens
# bench/run-image.sh: decode + preprocess timings (fast, exact, Pillow).
BENCHES += image_bench

# ---- core/store/: SQLite truth and its change log (store*.c,
# store_internal.h), which feeds the FAISS-only vector index (vindex.c,
# faiss_dist.c, store_scan.c: vindex.h); search, check, join;
# schema/NNN_*.sql become C strings in the library (schema/sql2c.awk) ----
CORE_OBJS += core/store/store.o core/store/store_changes.o core/store/store_search.o core/store/store_check.o
CORE_OBJS += core/store/store_join.o core/store/vindex.o core/store/store_scan.o core/store/faiss_dist.o
CORE_OBJS += core/store/store_backup.o core/store/store_review.o
CORE_OBJS += core/store/store_tower.o
CORE_OBJS += gen/schema.o
UNIT_TESTS += test_store_f16 test_store_scan test_faiss_dist test_store test_store_schema
UNIT_TESTS += test_store_overfetch
TEST_TOOLS += tests/tools/store_reader tests/tools/powercut.so
BENCHES += store_bench hnsw_recall
# the join's scan of each product tile is written to be vectorised
$(BUILD)/core/store/store_join.o: KFLAGS = -O3
SCHEMA_SQL = $(sort $(wildcard schema/[0-9]*.sql))
$(BUILD)/gen/schema.c: schema/sql2c.awk $(SCHEMA_SQL)
	@mkdir -p $(dir $@)
	$(call say,GEN,$@)awk -f schema/sql2c.awk $(SCHEMA_SQL) > $@.tmp && mv $@.tmp $@

# ---- common/: what both programs share and the library must not do
# (common/conf.h says why it is not in core/): clipdex.conf, allocation
# that aborts, paths ----
COMMON_OBJS = common/conf.o common/util.o

# ---- query/: the clipdex command; a store builder for its tests and the
# demo (tests/tools/mkstore.c), and its benchmark's store filler ----
QUERY_OBJS  = query/main.o query/util.o
QUERY_OBJS += query/cmd_embed.o query/cmd_tokenize.o query/cmd_model.o
QUERY_OBJS += query/cmd_check.o query/cmd_status.o query/cmd_index.o
QUERY_OBJS += query/filters.o query/output.o query/gallery.o query/labels.o
QUERY_OBJS += query/cmd_search.o query/cmd_dupes.o query/cmd_moderate.o query/cmd_stats.o
QUERY_OBJS += query/cmd_info.o query/search_query.o
# clipdex train (core/train/)
QUERY_OBJS += query/cmd_train.o query/pairs.o query/cmd_eval.o query/train_store.o
# clipdex serve: HTTP (libmicrohttpd), the API, the page (query/web/)
# built in as a C table (web2c.awk)
QUERY_OBJS += query/cmd_serve.o query/serve_api.o query/serve_files.o gen/web.o
WEB_FILES = query/web/index.html query/web/app.css query/web/app.js
$(BUILD)/gen/web.c: query/web/web2c.awk $(WEB_FILES)
	@mkdir -p $(dir $@)
	$(call say,GEN,$@)LC_ALL=C awk -f query/web/web2c.awk $(WEB_FILES) > $@.tmp && mv $@.tmp $@
$(BUILD)/gen/web.o: $(BUILD)/gen/web.c query/serve.h $(BUILD)/.flags
	$(call say,CC,$<)$(CC) $(ALL_CFLAGS) -Iquery -Icommon -c $< -o $@
TEST_TOOLS += tests/tools/mkstore tests/tools/phash_files tests/tools/precision_agree
# what query/pairs.c reads (tests/cli/84-pairs.t)
TEST_TOOLS += tests/tools/pairs_dump
BENCHES += query_fill

# ---- indexer/: the clipdexd daemon ----
INDEXER_OBJS  = indexer/main.o indexer/daemon.o indexer/sync.o indexer/pipeline.o
INDEXER_OBJS += indexer/watch.o indexer/scan.o indexer/progress.o
INDEXER_OBJS += indexer/log.o indexer/pathmap.o

# ======================================================================
# Generic rules
# ======================================================================
LIB = $(BUILD)/libclipdex.a
O_CORE = $(addprefix $(BUILD)/,$(CORE_OBJS))
O_COMMON = $(addprefix $(BUILD)/,$(COMMON_OBJS))
O_QUERY = $(addprefix $(BUILD)/,$(QUERY_OBJS)) $(O_COMMON)
O_INDEXER = $(addprefix $(BUILD)/,$(INDEXER_OBJS)) $(O_COMMON)
T_BINS = $(addprefix $(BUILD)/tests/,$(UNIT_TESTS))
T_TOOLS = $(addprefix $(BUILD)/,$(TEST_TOOLS))
B_BINS = $(addprefix $(BUILD)/bench/,$(BENCHES))
# The programs see common/'s headers; the library does not.  (Not added
# to ALL_CFLAGS: a target's variables pass to its prerequisites, and
# $(BUILD)/.flags must read the same whichever object asks for it first.)
$(O_QUERY) $(O_INDEXER): PROG_CFLAGS = -Icommon

$(BUILD)/%.o: %.c $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(call say,CC,$<)$(CC) $(ALL_CFLAGS) $(PROG_CFLAGS) $(KFLAGS) -c $< -o $@
$(BUILD)/gen/%.o: $(BUILD)/gen/%.c $(BUILD)/.flags
	$(call say,CC,$<)$(CC) $(ALL_CFLAGS) -c $< -o $@

# Rebuild everything when the flags change (the idea is Redis's).
$(BUILD)/.flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CC) $(ALL_CFLAGS) $(LDLIBS)' | cmp -s - $@ || echo '$(CC) $(ALL_CFLAGS) $(LDLIBS)' > $@

$(LIB): $(O_CORE)
	@rm -f $@
	$(call say,AR,$@)ar rcs $@ $^

$(BIN)/clipdex: $(O_QUERY) $(LIB) $(FAISS_LIBS)
	@mkdir -p $(BIN)
	$(call say,LINK,$@)$(CC) $(ALL_CFLAGS) -o $@ $(O_QUERY) $(LIB) $(LDLIBS)

$(BIN)/clipdexd: $(O_INDEXER) $(LIB) $(FAISS_LIBS)
	@mkdir -p $(BIN)
	$(call say,LINK,$@)$(CC) $(ALL_CFLAGS) -o $@ $(O_INDEXER) $(LIB) $(LDLIBS)

# Unit tests, test tools (tests/unit/preprocess_dump.c, tests/fuzz/
# imgcheck.c and tests/tools/*.c) and benchmarks: one C file each, linked
# with the library.
$(BUILD)/tests/%: tests/unit/%.c tests/unit/tap.h $(LIB) $(BUILD)/.flags $(FAISS_LIBS)
	@mkdir -p $(dir $@)
	$(call say,LINK,$@)$(CC) $(ALL_CFLAGS) -Itests/unit -o $@ $< $(LIB) $(LDLIBS)
$(BUILD)/tests/imgcheck: tests/fuzz/imgcheck.c $(LIB) $(BUILD)/.flags $(FAISS_LIBS)
	@mkdir -p $(dir $@)
	$(call say,LINK,$@)$(CC) $(ALL_CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
$(BUILD)/tests/tools/%: tests/tools/%.c $(LIB) $(BUILD)/.flags $(FAISS_LIBS)
	@mkdir -p $(dir $@)
	$(call say,LINK,$@)$(CC) $(ALL_CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
$(BUILD)/bench/%: bench/%.c $(LIB) $(BUILD)/.flags $(FAISS_LIBS)
	@mkdir -p $(dir $@)
	$(call say,LINK,$@)$(CC) $(ALL_CFLAGS) -Wno-error -o $@ $< $(LIB) $(LDLIBS)

# The power-cut simulator (LD_PRELOAD; tests/cli/40-store-powercut.t).
# Never sanitized: it is preloaded into the sanitized daemon.
$(BUILD)/tests/tools/powercut.so: tests/tools/powercut.c
	@mkdir -p $(dir $@)
	$(call say,LINK,$@)$(CC) -std=c11 -D_GNU_SOURCE -O1 -g $(WARN) -shared -fPIC -o $@ $< -ldl -pthread
# Reduced precision vs float32 over a store-sized vector set (12-precision.t);
# it scores moderation with the clipdex moderate label sets (query/labels.o,
# which allocates through common/util.o).
$(BUILD)/tests/tools/precision_agree: tests/tools/precision_agree.c $(BUILD)/query/labels.o $(O_COMMON) $(LIB) $(BUILD)/.flags $(FAISS_LIBS)
	@mkdir -p $(dir $@)
	$(call say,LINK,$@)$(CC) $(ALL_CFLAGS) -Icommon -o $@ $< $(BUILD)/query/labels.o $(O_COMMON) $(LIB) $(LDLIBS)
$(BUILD)/tests/tools/pairs_dump: tests/tools/pairs_dump.c $(BUILD)/query/pairs.o $(O_COMMON) $(LIB) $(BUILD)/.flags $(FAISS_LIBS)
	@mkdir -p $(dir $@)
	$(call say,LINK,$@)$(CC) $(ALL_CFLAGS) -Icommon -Iquery -o $@ $< $(BUILD)/query/pairs.o $(O_COMMON) $(LIB) $(LDLIBS)

$(FAISS_C):
	scripts/deps.sh

-include $(O_CORE:.o=.d) $(O_QUERY:.o=.d) $(O_INDEXER:.o=.d)

# ---- the image layer under sanitizers: the image sources alone, built
# with ASan+UBSan into build-asan/image (clang with libFuzzer coverage when
# available, so the same objects serve the sanitizer pass of `make check`
# and the fuzzers; gcc otherwise).  The shared corpus is
# $(CLIPDEX_SHARED)/corpus. ----
CLIPDEX_SHARED ?= ../shared
IMG_CORPUS = $(CLIPDEX_SHARED)/corpus
IMGSAN = build-asan/image
FUZZ_CC := $(shell command -v clang 2>/dev/null)
IMGSAN_CC = $(if $(FUZZ_CC),$(FUZZ_CC),$(CC))
IMGSAN_SRCS = core/status.c $(addprefix core/image/,ingest.c image.c image_exif.c image_orient.c \
	image_webp.c image_heif.c image_tiff.c image_gif.c resample.c preprocess.c)
IMGSAN_OBJS = $(patsubst core/%.c,$(IMGSAN)/%.o,$(IMGSAN_SRCS))
IMGSAN_CFLAGS = -std=c11 -D_GNU_SOURCE -pthread -MMD -MP $(WARN) \
	$(if $(FUZZ_CC),-Wno-unknown-warning-option -fsanitize=fuzzer-no-link) \
	-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
	-O1 -g -Icore $(PKG_CFLAGS)
IMGSAN_LIBS = $(PKG_LIBS) -lgif -lm -pthread
IMGSAN_BINS = $(IMGSAN)/imgcheck $(if $(FUZZ_CC),$(IMGSAN)/fuzz_decode $(IMGSAN)/fuzz_exif)
$(IMGSAN)/.flags: FORCE
	@mkdir -p $(IMGSAN)
	@echo '$(IMGSAN_CC) $(IMGSAN_CFLAGS)' | cmp -s - $@ || echo '$(IMGSAN_CC) $(IMGSAN_CFLAGS)' > $@
$(IMGSAN)/%.o: core/%.c $(IMGSAN)/.flags
	@mkdir -p $(dir $@)
	$(call say,CC,$< (sanitizers))$(IMGSAN_CC) $(IMGSAN_CFLAGS) -c $< -o $@
$(IMGSAN)/imgcheck: tests/fuzz/imgcheck.c $(IMGSAN_OBJS)
	$(call say,LINK,$@)$(IMGSAN_CC) $(IMGSAN_CFLAGS) -o $@ $< $(IMGSAN_OBJS) $(IMGSAN_LIBS)
$(IMGSAN)/fuzz_%: tests/fuzz/fuzz_%.c $(IMGSAN_OBJS)
	$(call say,LINK,$@)$(FUZZ_CC) $(IMGSAN_CFLAGS) -fsanitize=fuzzer -o $@ $< $(IMGSAN_OBJS) $(IMGSAN_LIBS)
-include $(IMGSAN_OBJS:.o=.d)

# ======================================================================
# Targets (`make help`)
# ======================================================================
all: $(BIN)/clipdex $(BIN)/clipdexd
	@ln -sfn $(BUILD)/bin bin 2>/dev/null || true

tests-build: all $(T_BINS) $(T_TOOLS) $(IMGSAN_BINS)

# Generated test models and reference outputs (python3-torch, numpy, PIL).
# (Always under build/, also for the sanitizer build: the data is the same.)
testdata: all
	@$(PYTHON) tests/tools/make_testdata.py --out build/testdata

check: tests-build testdata
	CLIPDEX_PRECISION=f32 CLIPDEX_CACHE=off CLIPDEX_BUILD=$(BUILD) PYTHON=$(PYTHON) prove -f $(PROVE_FLAGS) \
		$(T_BINS) $(sort $(wildcard tests/cli/*.t))

asan-check:
	$(MAKE) SAN=1 check

tsan-check:
	$(MAKE) SAN=thread build-tsan/tests/test_kernels build-tsan/tests/test_tokenizer
	prove -f build-tsan/tests/test_kernels build-tsan/tests/test_tokenizer

# valgrind (memcheck, leaks) over the whole corpus, every decode path.
# Two library SIMD paths are beyond memcheck and are avoided here (the
# sanitizer pass of make check runs them):
#   - AVIF is left out: libdav1d's AVX2 assembly gives false uninitialised-
#     value reports, then a VEX crash;
#   - libjpeg-turbo runs its C code (JSIMD_FORCENONE): its SIMD 4:4:0
#     upsampler computes lanes from padding bytes that never reach the
#     output (the pixels are identical whatever that memory holds), which
#     memcheck reports as uninitialised pixels in our resampler.
valgrind-check: $(BUILD)/tests/imgcheck
	find $(IMG_CORPUS) -type f ! -name '*.avif' ! -name 'avif*.heif' -print0 > $(BUILD)/tests/corpus.list
	JSIMD_FORCENONE=1 valgrind -q --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
		--error-exitcode=99 $(BUILD)/tests/imgcheck -m all -o $(BUILD)/tests/valgrind.out \
		-L $(BUILD)/tests/corpus.list
	@echo "valgrind-check: no memory errors or leaks over $$(tr -cd '\0' < $(BUILD)/tests/corpus.list | wc -c) files"

fuzz-build: $(IMGSAN_BINS)

# make fuzz [FUZZ_TIME=seconds]: both fuzzers, seeded from the corpus;
# new inputs accumulate in build-asan/image/fuzz (crashes: fuzz/crash-*).
FUZZ_TIME ?= 600
fuzz: fuzz-build
	@test -n "$(FUZZ_CC)" || { echo "make fuzz needs clang and libclang-rt (make deps)"; exit 1; }
	tests/fuzz/run.sh $(IMGSAN) $(FUZZ_TIME) $(IMG_CORPUS) $(IMGSAN)/fuzz

deps:
	scripts/deps.sh

demo: all
	BUILD=$(BUILD) PYTHON=$(PYTHON) scripts/demo.sh

bench: all $(B_BINS)
	PYTHON=$(PYTHON) bench/run.sh $(BUILD)

# The systemd user units get ExecStart pointing at the installed programs.
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man8 \
		$(DESTDIR)$(PREFIX)/lib/systemd/user
	install -m 755 $(BIN)/clipdex $(BIN)/clipdexd $(DESTDIR)$(PREFIX)/bin/
	install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 644 man/*.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -d $(DESTDIR)$(PREFIX)/share/clipdex/clip
	install -m 644 data/clip/vocab.json data/clip/merges.txt data/clip/README.md \
		$(DESTDIR)$(PREFIX)/share/clipdex/clip/
	sed 's|^ExecStart=/usr/local/bin/|ExecStart=$(PREFIX)/bin/|' indexer/clipdexd.service \
		> $(DESTDIR)$(PREFIX)/lib/systemd/user/clipdexd.service
	sed 's|^ExecStart=/usr/local/bin/|ExecStart=$(PREFIX)/bin/|' query/clipdex-serve.service \
		> $(DESTDIR)$(PREFIX)/lib/systemd/user/clipdex-serve.service

# Each mistake listed in tests/mutations/ applied to a scratch copy of the
# tree (build-mut/), rebuilt, and the tests that should catch it run; fails
# if one survives.  Not part of check (minutes).  MUTATIONS="01 07a" runs a
# subset, MUTATION_FLAGS=-k goes on after a survivor.
mutation-check:
	$(PYTHON) tests/mutations/run.py $(MUTATION_FLAGS) $(MUTATIONS)

# What the CLI tests (tests/cli/*.t) run, without the unit tests: what a
# mutation naming only CLI tests rebuilds.
tests-cli-build: all $(T_TOOLS) $(IMGSAN_BINS)

clean:
	rm -rf build build-asan build-tsan build-mut bin

help:
	@echo 'make deps            install the Debian packages (scripts/deps.sh) and build the FAISS C API'
	@echo 'make [all]           build $(BIN)/clipdex and $(BIN)/clipdexd (strict warnings)'
	@echo 'make demo            build, then run the main job end to end (scripts/demo.sh)'
	@echo 'make check           every test: unit (tests/unit), CLI (tests/cli); one prove summary'
	@echo 'make asan-check      the same tests built with ASan+UBSan into build-asan/'
	@echo 'make tsan-check      the threaded engine tests (kernels, tokenizer) under ThreadSanitizer'
	@echo 'make valgrind-check  memcheck and leaks over the image corpus (every decode path)'
	@echo 'make fuzz            both image fuzzers, seeded from the corpus (FUZZ_TIME=seconds, default $(FUZZ_TIME))'
	@echo 'make fuzz-build      build the fuzzers and the sanitizer image checker only'
	@echo 'make tests-build     build the programs, unit tests and test tools without running them'
	@echo 'make testdata        generate the test models and reference outputs (build/testdata)'
	@echo 'make mutation-check  apply each mistake in tests/mutations/ to a scratch copy, run the tests that must catch it'
	@echo '                     (MUTATIONS="01 07a" a subset, MUTATION_FLAGS=-k go on after a survivor)'
	@echo 'make bench           benchmarks (numbers, never pass/fail)'
	@echo 'make install         install programs, man pages, systemd unit (PREFIX=$(PREFIX), DESTDIR)'
	@echo 'make clean           remove build/ (the FAISS C API too: make deps rebuilds it), build-asan/, build-tsan/, build-mut/'
	@echo 'make help            this list'
	@echo 'variables: V=1 (whole commands), WERROR=0, SAN=1|thread, O=-O0, PROVE_FLAGS=..., CLIPDEX_SHARED=DIR'

.PHONY: all check asan-check tsan-check valgrind-check fuzz fuzz-build deps demo bench install clean help \
	tests-build tests-cli-build testdata mutation-check FORCE

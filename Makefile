# qtool: quantization workbench and model converter.  `make help` lists targets.
# One build folder per configuration (build/, build-asan/, build-fuzz/), so
# switching needs no `make clean`.

BUILD    ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
OPENMP   ?= 1
NATIVE   ?= 0
SAN      ?= 0
WERROR   ?= 0
V        ?= 0
CC       ?= cc
DATA     ?= ../shared/data
MODEL    ?= $(DATA)/models/stories260K-f32
FUZZ_TIME ?= 60

ARCH := $(shell uname -m)
PKGS := libzstd libcjson criterion
PKG_CFLAGS := $(shell pkg-config --cflags libzstd libcjson 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs libzstd libcjson 2>/dev/null)
CRIT_CFLAGS := $(shell pkg-config --cflags criterion 2>/dev/null)
CRIT_LIBS   := $(shell pkg-config --libs criterion 2>/dev/null)

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla \
        -Wformat=2 -Wcast-align -Wpointer-arith -Wundef
QT_CFLAGS := -std=c11 -O2 -g $(WARN) -ffp-contract=off -fno-strict-aliasing -D_GNU_SOURCE \
             -I. $(PKG_CFLAGS) -MMD -MP
QT_LDLIBS := $(PKG_LIBS) -lm -lpthread
ifeq ($(OPENMP),1)
  QT_CFLAGS += -fopenmp
  QT_LDFLAGS += -fopenmp
else
  QT_CFLAGS += -Wno-unknown-pragmas
endif
ifeq ($(NATIVE),1)
  QT_CFLAGS += -march=native
endif
ifeq ($(SAN),1)
  QT_CFLAGS += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
  QT_LDFLAGS += -fsanitize=address,undefined
endif
ifeq ($(WERROR),1)
  QT_CFLAGS += -Werror
endif
ifeq ($(V),0)
  Q := @
endif

# Library modules, in dependency order (docs/ARCHITECTURE.md).
LIBDIRS := common quant formats model calib convert bench
LIB_SRC := $(foreach d,$(LIBDIRS),$(wildcard $(d)/*.c))
ifneq ($(ARCH),x86_64)
  LIB_SRC := $(filter-out %_avx2.c %_avx512.c,$(LIB_SRC))
endif
ifneq ($(ARCH),aarch64)
  LIB_SRC := $(filter-out %_neon.c,$(LIB_SRC))
endif
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_SRC := $(wildcard cli/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
LIB     := $(BUILD)/libqtool.a
QTOOL   := $(BUILD)/qtool

TEST_SRC := $(wildcard tests/unit/test_*.c)
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
REPLAY_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/replay_%)

ISA_AVX2   := -mavx2 -mfma -mf16c
ISA_AVX512 := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx2 -mfma -mf16c

.PHONY: all test test-slurm bench bench-cputime bench-gemm bench-gemv asan fuzz demo deps check-deps install uninstall clean help

all: $(QTOOL) $(LIB) ## build build/qtool and build/libqtool.a (default)

$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	$(Q)rm -f $@ && ar rcs $@ $^

$(QTOOL): $(CLI_OBJ) $(LIB)
	@mkdir -p $(@D)
	$(Q)$(CC) $(QT_LDFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(QT_LDLIBS) $(LDLIBS)

$(BUILD)/%_avx2.o: %_avx2.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC $<")
	$(Q)$(CC) $(QT_CFLAGS) $(ISA_AVX2) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/%_avx512.o: %_avx512.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC $<")
	$(Q)$(CC) $(QT_CFLAGS) $(ISA_AVX512) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC $<")
	$(Q)$(CC) $(QT_CFLAGS) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/tests/test_%: tests/unit/test_%.c tests/unit/testutil.h $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC $<")
	$(Q)$(CC) $(QT_CFLAGS) $(CRIT_CFLAGS) $(CPPFLAGS) $(CFLAGS) $(QT_LDFLAGS) $(LDFLAGS) \
	  -o $@ $< $(LIB) $(CRIT_LIBS) $(QT_LDLIBS) $(LDLIBS)

$(BUILD)/tests/replay_%: tests/fuzz/%.c tests/fuzz/replay.c $(LIB)
	@mkdir -p $(@D)
	$(Q)$(CC) $(QT_CFLAGS) $(CPPFLAGS) $(CFLAGS) $(QT_LDFLAGS) $(LDFLAGS) \
	  -o $@ $< tests/fuzz/replay.c $(LIB) $(QT_LDLIBS) $(LDLIBS)

test: deps ## build with -Werror and run every test (unit, CLI, fuzz corpus replay)
	$(Q)$(MAKE) --no-print-directory WERROR=1 BUILD=$(BUILD) all $(TEST_BIN) $(REPLAY_BIN)
	$(Q)BUILD=$(BUILD) DATA=$(DATA) SAN=$(SAN) bash tests/run.sh

test-slurm: ## scripts/qtool-batch --slurm on a one-node Slurm it starts and stops (root; installs slurm-wlm, munge, parallel)
	$(Q)bash .ci/deps.sh slurm-wlm munge parallel
	$(Q)$(MAKE) --no-print-directory WERROR=1 BUILD=$(BUILD) all
	$(Q)QT_TEST_SLURM=1 QTOOL=$(CURDIR)/$(BUILD)/qtool QT_DATA=$(DATA) bash tests/cli/slurm.sh

asan: ## the whole test suite under ASan + UBSan
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan SAN=1 test

fuzz: ## libFuzzer harnesses with clang, FUZZ_TIME seconds each
	$(Q)FUZZ_TIME=$(FUZZ_TIME) bash tests/fuzz/run-fuzz.sh

bench: all ## kernel, convert and model benchmarks (figures: docs/BENCHMARKS.md)
	$(Q)BUILD=$(BUILD) DATA=$(DATA) bash bench/run-bench.sh

bench-cputime: $(BUILD)/bench/quant_cputime ## quantize kernels in CPU time vs memcpy (for loaded machines)
	$(Q)OMP_NUM_THREADS=1 $(BUILD)/bench/quant_cputime

$(BUILD)/bench/quant_cputime: bench/cputime/quant_cputime.c $(LIB)
	@mkdir -p $(@D)
	$(Q)$(CC) $(QT_CFLAGS) $(CPPFLAGS) $(CFLAGS) $(QT_LDFLAGS) $(LDFLAGS) \
	  -o $@ $< $(LIB) $(QT_LDLIBS) $(LDLIBS)

bench-gemm: $(BUILD)/bench/gemm_cputime ## prompt-processing GEMM in CPU time vs the peak-FMA probe (for loaded machines)
	$(Q)OMP_NUM_THREADS=1 $(BUILD)/bench/gemm_cputime

$(BUILD)/bench/gemm_cputime: bench/cputime/gemm_cputime.c $(LIB)
	@mkdir -p $(@D)
	$(Q)$(CC) $(QT_CFLAGS) $(CPPFLAGS) $(CFLAGS) $(QT_LDFLAGS) $(LDFLAGS) \
	  -o $@ $< $(LIB) $(QT_LDLIBS) $(LDLIBS)

bench-gemv: $(BUILD)/bench/gemv_cputime ## decoding dots (one token) in CPU time vs a read of memory (for loaded machines)
	$(Q)OMP_NUM_THREADS=1 $(BUILD)/bench/gemv_cputime

$(BUILD)/bench/gemv_cputime: bench/cputime/gemv_cputime.c $(LIB)
	@mkdir -p $(@D)
	$(Q)$(CC) $(QT_CFLAGS) $(CPPFLAGS) $(CFLAGS) $(QT_LDFLAGS) $(LDFLAGS) \
	  -o $@ $< $(LIB) $(QT_LDLIBS) $(LDLIBS)

demo: deps ## qtool's main job on the sample model (MODEL=DIR for another)
	$(Q)$(MAKE) --no-print-directory BUILD=$(BUILD) all
	$(Q)MODEL=$(MODEL) BUILD=$(BUILD) bash samples/demo.sh

deps: ## install missing Debian build/test packages (or print the command)
	$(Q)bash .ci/deps.sh

check-deps: ## fail on an #include against the dependency direction
	$(Q)bash .ci/check-deps.sh

install: all ## install qtool, libqtool.a and headers under $(DESTDIR)$(PREFIX)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib
	install -m 755 $(QTOOL) $(DESTDIR)$(PREFIX)/bin/qtool
	install -m 644 $(LIB) $(DESTDIR)$(PREFIX)/lib/libqtool.a
	for d in $(LIBDIRS); do install -d $(DESTDIR)$(PREFIX)/include/qtool/$$d; \
	  for h in $$d/*.h; do case $$h in *_internal.h) ;; *) [ -f $$h ] && \
	  install -m 644 $$h $(DESTDIR)$(PREFIX)/include/qtool/$$d/ ;; esac; done; done

uninstall: ## remove what install put there
	rm -f $(DESTDIR)$(PREFIX)/bin/qtool $(DESTDIR)$(PREFIX)/lib/libqtool.a
	rm -rf $(DESTDIR)$(PREFIX)/include/qtool

clean: ## remove every build folder
	rm -rf build build-asan build-fuzz build-noomp

help: ## this list
	@grep -hE '^[a-z-]+:.*## ' Makefile | sed -E 's/^([a-z-]+):.*## /  \1\t/' | expand -t 14
	@echo "  variables: BUILD OPENMP=0|1 NATIVE=0|1 SAN=0|1 V=1 MODEL=DIR DATA=DIR PREFIX DESTDIR FUZZ_TIME"

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

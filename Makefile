# lwm2md - GNU make build. `make help` lists the targets.
#
# Layout conventions the rules below discover automatically (no Makefile edit needed):
#   lib/<mod>/*.c                 -> $(BUILD)/lib/liblw_<mod>.a   (one archive per module)
#   server/**/*.c (not main.c)    -> $(BUILD)/lib/liblw_server.a, + server/main.c -> bin/lwm2md
#   tools/fleet/*.c               -> bin/lwm2m-fleet
#   tests/unit/<mod>/check_<n>.c  -> defines `Suite *suite_<n>(void)`; one runner per module
#   tests/fuzz/<t>.c              -> LLVMFuzzerTestOneInput; corpus in tests/fuzz/corpus/<t>/
#   tests/bench/<b>.c             -> bench binary with its own main(); tests/bench/*.sh scripts
#   tests/e2e/test_*.sh           -> end-to-end tests run by tests/e2e/run.sh

SHELL := /bin/bash
.DEFAULT_GOAL := all
.SUFFIXES:
.SECONDARY:

SANITIZE ?=
BUILD ?= $(if $(SANITIZE),build/san,build)
CC ?= cc
OPT ?= -O2
PREFIX ?= /usr/local
DESTDIR ?=
FUZZ_TIME ?= 30
V ?= 0
Q := $(if $(filter 1,$(V)),,@)

DEPS_DIR := .deps
WOLF_PREFIX := $(CURDIR)/$(DEPS_DIR)/wolfssl
export PKG_CONFIG_PATH := $(WOLF_PREFIX)/lib/pkgconfig$(if $(PKG_CONFIG_PATH),:$(PKG_CONFIG_PATH))
# make 4.3's $(shell) does not see exported variables: pass the path explicitly.
PKGCONF := PKG_CONFIG_PATH=$(PKG_CONFIG_PATH) pkg-config
comma := ,

# pkg-config is evaluated once, on first use (so `make deps` works before the packages exist).
PKGS := libuv libcbor libpq jansson inih expat libcurl wolfssl
once = $(eval $1 := $$(shell $2))$($1)
PKG_CFLAGS = $(call once,PKG_CFLAGS,$(PKGCONF) --cflags $(PKGS))
PKG_LIBS = $(call once,PKG_LIBS,$(PKGCONF) --libs $(filter-out wolfssl,$(PKGS)))
# wolfSSL is linked statically from the project's own build (.deps/wolfssl, see tools/deps.sh).
WOLF_LIBS = $(WOLF_PREFIX)/lib/libwolfssl.a $(call once,WOLF_DEP_LIBS,$(PKGCONF) --static --libs-only-l wolfssl | sed 's/-lwolfssl//')
HAVE_SYSTEMD = $(call once,HAVE_SYSTEMD,$(PKGCONF) --exists libsystemd && echo 1)
SD_CFLAGS = $(if $(HAVE_SYSTEMD),-DLW_HAVE_SYSTEMD $(shell $(PKGCONF) --cflags libsystemd))
SD_LIBS = $(if $(HAVE_SYSTEMD),$(shell $(PKGCONF) --libs libsystemd))
CHECK_CFLAGS = $(call once,CHECK_CFLAGS,$(PKGCONF) --cflags check)
CHECK_LIBS = $(call once,CHECK_LIBS,$(PKGCONF) --libs check)
LLHTTP_DIR := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp

WARN := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes -Wvla \
        -Wpointer-arith -Wundef -Werror
SAN_FLAGS := $(if $(SANITIZE),-fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all)
FUZZ_CFLAGS := $(if $(FUZZ_BUILD),-fsanitize=fuzzer-no-link$(comma)address$(comma)undefined -fno-omit-frame-pointer -DLW_FUZZING)
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
CPPFLAGS_ALL = -D_GNU_SOURCE -DLW_VERSION='"$(VERSION)"' -DLW_GIT_REV='"$(GIT_REV)"' -Ilib -Iserver \
               -I$(LLHTTP_INC) $(PKG_CFLAGS) $(SD_CFLAGS)
CFLAGS_ALL = -std=c17 -g $(OPT) -pthread -fno-common $(WARN) $(SAN_FLAGS) $(FUZZ_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS_ALL = -pthread $(SAN_FLAGS) $(EXTRA_LDFLAGS)
LIBS_ALL = $(PKG_LIBS) $(WOLF_LIBS) $(SD_LIBS) -lm

# ---- modules ------------------------------------------------------------------------------------
# Link order: a module before the modules it uses. A module calling one it may not use fails to
# link its unit tests (lib/coap's tests link only coap + base, and so on).
LIB_ORDER := oscore lwm2m dtls coap base
LIB_MODULES := $(filter $(patsubst lib/%/,%,$(wildcard lib/*/)),$(LIB_ORDER))
MOD_DEPS_base :=
MOD_DEPS_coap := base
MOD_DEPS_dtls := base
MOD_DEPS_lwm2m := coap base
MOD_DEPS_oscore := coap base
lib_a = $(BUILD)/lib/liblw_$(1).a
ALL_LIB_A := $(foreach m,$(LIB_MODULES),$(call lib_a,$(m)))

SERVER_SRCS := $(filter-out server/main.c,$(wildcard server/*.c server/*/*.c))
SERVER_A := $(call lib_a,server)
LLHTTP_OBJS := $(patsubst %,$(BUILD)/obj/llhttp/%.o,llhttp api http)
FLEET_SRCS := $(wildcard tools/fleet/*.c)

DAEMON := $(BUILD)/bin/lwm2md
FLEET := $(if $(FLEET_SRCS),$(BUILD)/bin/lwm2m-fleet)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))


.PHONY: all deps run test test-san check e2e fuzz fuzz-bins fuzz-replay bench format format-check clean install help lint
all: $(DAEMON) $(FLEET)

deps:
	$(Q)bash tools/deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC $<")
	$(Q)$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) $(if $(filter tests/%,$<),$(CHECK_CFLAGS)) -MMD -MP -c -o $@ $<

# llhttp's generated C (Debian node-llhttp) is third-party code: compiled without our warnings.
$(BUILD)/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(@D)
	$(Q)$(CC) -std=c17 $(OPT) -g -fPIC $(SAN_FLAGS) $(FUZZ_CFLAGS) -I$(LLHTTP_INC) -w -c -o $@ $<

define LIB_RULE
$(call lib_a,$(1)): $(call obj,$(wildcard lib/$(1)/*.c))
	@mkdir -p $$(@D)
	$(Q)rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach m,$(LIB_MODULES),$(eval $(call LIB_RULE,$(m))))

$(SERVER_A): $(call obj,$(SERVER_SRCS))
	@mkdir -p $(@D)
	$(Q)rm -f $@ && ar rcs $@ $^

$(DAEMON): $(call obj,server/main.c) $(SERVER_A) $(ALL_LIB_A) $(LLHTTP_OBJS)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ALL)

$(BUILD)/bin/lwm2m-fleet: $(call obj,$(FLEET_SRCS)) $(ALL_LIB_A)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ALL)

# ---- unit tests (Check) -------------------------------------------------------------------------
UNIT_MODS := $(patsubst tests/unit/%/,%,$(wildcard tests/unit/*/))
unit_bin = $(BUILD)/tests/check_$(1)
unit_libs = $(if $(filter server,$(1)),$(SERVER_A) $(ALL_LIB_A) $(LLHTTP_OBJS),$(foreach d,$(1) $(MOD_DEPS_$(1)),$(call lib_a,$(d))))

define UNIT_RULE
$(BUILD)/tests/$(1)_main.c: $(wildcard tests/unit/$(1)/check_*.c) tests/unit/gen_main.sh
	@mkdir -p $$(@D)
	$(Q)bash tests/unit/gen_main.sh $(1) $(wildcard tests/unit/$(1)/check_*.c) > $$@
$(BUILD)/tests/$(1)_main.o: $(BUILD)/tests/$(1)_main.c
	$(Q)$(CC) $$(CPPFLAGS_ALL) $$(CFLAGS_ALL) $$(CHECK_CFLAGS) -Itests/unit -c -o $$@ $$<
$(call unit_bin,$(1)): $(BUILD)/tests/$(1)_main.o $(call obj,$(wildcard tests/unit/$(1)/*.c) tests/unit/testutil.c) $(call unit_libs,$(1))
	@$(if $(Q),echo "  LD $$@")
	$(Q)$(CC) $$(LDFLAGS_ALL) -o $$@ $$^ $$(CHECK_LIBS) $$(LIBS_ALL)
.PHONY: check-$(1)
check-$(1): $(call unit_bin,$(1))
	$(Q)LW_TOP=$(CURDIR) $(call unit_bin,$(1))
endef
$(foreach m,$(UNIT_MODS),$(eval $(call UNIT_RULE,$(m))))

check: $(foreach m,$(UNIT_MODS),$(call unit_bin,$(m)))
	$(Q)rc=0; for m in $(UNIT_MODS); do LW_TOP=$(CURDIR) $(BUILD)/tests/check_$$m || rc=1; done; exit $$rc

# ---- fuzzing ------------------------------------------------------------------------------------
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,%,$(filter-out tests/fuzz/replay.c,$(wildcard tests/fuzz/*.c)))
FUZZ_LINK := $(SERVER_A) $(ALL_LIB_A) $(LLHTTP_OBJS)

# Replay: each target linked with tests/fuzz/replay.c (a plain main) and run over its corpus in
# `make test`, under whatever sanitizers this build uses.
$(BUILD)/fuzz-replay/%: $(BUILD)/obj/tests/fuzz/%.o $(BUILD)/obj/tests/fuzz/replay.o $(FUZZ_LINK)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ALL)

fuzz-replay: $(foreach t,$(FUZZ_TARGETS),$(BUILD)/fuzz-replay/$(t))
	$(Q)rc=0; for t in $(FUZZ_TARGETS); do \
	  $(BUILD)/fuzz-replay/$$t tests/fuzz/corpus/$$t || rc=1; done; exit $$rc

# libFuzzer binaries: `make fuzz` rebuilds everything with clang under build/fuzz.
$(BUILD)/fuzz/%: $(BUILD)/obj/tests/fuzz/%.o $(FUZZ_LINK)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS_ALL) -fsanitize=fuzzer,address,undefined -o $@ $^ $(LIBS_ALL)
fuzz-bins: $(foreach t,$(FUZZ_TARGETS),$(BUILD)/fuzz/$(t))

fuzz:
	$(Q)$(MAKE) --no-print-directory BUILD=build/fuzz CC=clang FUZZ_BUILD=1 fuzz-bins
	$(Q)for t in $(or $(FUZZ_ONLY),$(FUZZ_TARGETS)); do \
	  echo "fuzz: $$t for $(FUZZ_TIME)s"; mkdir -p build/fuzz/new/$$t; \
	  build/fuzz/fuzz/$$t -max_total_time=$(FUZZ_TIME) -print_final_stats=0 \
	    $$( [ -f tests/fuzz/dict/$$t.dict ] && echo -dict=tests/fuzz/dict/$$t.dict ) \
	    build/fuzz/new/$$t tests/fuzz/corpus/$$t 2>&1 | tail -n 3 || exit 1; done

# ---- benchmarks ---------------------------------------------------------------------------------
BENCHES := $(patsubst tests/bench/%.c,%,$(wildcard tests/bench/*.c))
$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(FUZZ_LINK)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ALL)
# BENCH_SCALE scales the device counts of the suite (tests/bench/suite.sh) and the restore
# benchmark's rows (1 = 100 k / 100 k / 1 M devices, 1 M rows); every line goes to bench.log, from
# which tests/bench/summary.py writes bench/results/<date>-<host>.json and latest.md.
BENCH_SCALE ?= 1
BENCH_LOG = $(BUILD)/bench/bench.log
bench: deps all $(foreach b,$(BENCHES),$(BUILD)/bench/$(b))
	$(Q)mkdir -p bench/results $(BUILD)/bench && : > $(BENCH_LOG)
	$(Q)set -o pipefail; failed=""; \
	for b in $(BENCHES); do $(BUILD)/bench/$$b 2>&1 | tee -a $(BENCH_LOG) || failed="$$failed $$b"; done; \
	for s in $(wildcard tests/bench/*.sh); do BUILD=$(BUILD) BENCH_SCALE=$(BENCH_SCALE) \
	  STORE_ROWS=$${STORE_ROWS:-$$(awk 'BEGIN { print int(1000000 * $(BENCH_SCALE)) }')} \
	  bash $$s 2>&1 | tee -a $(BENCH_LOG) || failed="$$failed $$(basename $$s)"; done; \
	python3 tests/bench/summary.py $(BENCH_LOG) $(BENCH_SCALE) "$$failed" || exit 1; \
	[ -z "$$failed" ] || { echo "bench: failed:$$failed"; exit 1; }

# ---- end-to-end and the whole suite -------------------------------------------------------------
e2e: all
	$(Q)BUILD=$(BUILD) LW_SANITIZED=$(if $(SANITIZE),1) bash tests/e2e/run.sh

lint: all
	$(Q)BUILD=$(BUILD) bash tests/lint.sh

# Every stage runs even when an earlier one fails, so one failure does not hide the others; the
# target fails at the end naming the failed stages.
TEST_STAGES := check fuzz-replay lint e2e
test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)failed=""; for st in $(TEST_STAGES); do \
	  $(MAKE) --no-print-directory $$st || failed="$$failed $$st"; done; \
	  if [ -n "$$failed" ]; then echo "test: FAILED stages:$$failed"; exit 1; fi; \
	  echo "test: all stages passed"

# The sanitizer pass of CI: unit tests, corpus replay and e2e with SANITIZE set (valgrind is
# skipped there: it cannot run ASan binaries).
test-san:
	$(Q)$(MAKE) --no-print-directory all
	$(Q)failed=""; for st in check fuzz-replay e2e; do \
	  $(MAKE) --no-print-directory $$st || failed="$$failed $$st"; done; \
	  if [ -n "$$failed" ]; then echo "test-san: FAILED stages:$$failed"; exit 1; fi; \
	  echo "test-san: all stages passed"

run: deps all
	$(Q)BUILD=$(BUILD) bash tools/run-dev.sh

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null; git ls-files --others --exclude-standard '*.c' '*.h' 2>/dev/null)
format:
	$(Q)clang-format -i $(FORMAT_FILES)
format-check:
	$(Q)clang-format --dry-run --Werror $(FORMAT_FILES)

install: all
	install -Dm755 $(DAEMON) $(DESTDIR)$(PREFIX)/bin/lwm2md
	$(if $(FLEET),install -Dm755 $(FLEET) $(DESTDIR)$(PREFIX)/bin/lwm2m-fleet)
	install -Dm644 config/lwm2md.conf.example $(DESTDIR)/etc/lwm2md/lwm2md.conf.example
	install -Dm644 systemd/lwm2md.service $(DESTDIR)$(PREFIX)/lib/systemd/system/lwm2md.service
	install -Dm644 systemd/lwm2md.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/lwm2md.conf
	install -Dm644 systemd/lwm2md.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/lwm2md.conf
	install -d $(DESTDIR)$(PREFIX)/share/lwm2md/schema
	$(if $(wildcard schema/*.sql),install -m644 schema/*.sql $(DESTDIR)$(PREFIX)/share/lwm2md/schema/)

clean:
	rm -rf build

help:
	@echo "targets: all deps run test check check-<module> e2e fuzz fuzz-replay bench lint"
	@echo "         format format-check install clean"
	@echo "vars:    SANITIZE=address,undefined  BUILD=dir  FUZZ_TIME=s  FUZZ_ONLY=target  V=1"

-include $(shell find $(BUILD)/obj $(BUILD)/tests -name '*.d' 2>/dev/null)

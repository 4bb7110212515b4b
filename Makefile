# SPDX-License-Identifier: MIT
# converge — GNU make + pkg-config. See README.md.
#
#   make              build build/converge and build/libconverge.a
#   make test         bootstrap, build with gcc, unit tests (gcc, and clang with ASan+UBSan),
#                     format check, CLI tests, short fuzz runs, converge watch end to end
#                     (under ASan+UBSan, then under ThreadSanitizer), the dashboard in Chromium
#   make bench        benchmarks against peers (bench/)
#   make demo         the demo on SQLite replicas
#   make install      into $(PREFIX) (default /usr/local); DESTDIR is honoured
#   make format       reformat the C sources with clang-format
#   make fuzz         build the libFuzzer targets (clang)

PREFIX ?= /usr/local
BUILD ?= build
CFLAGS ?= -O2 -g
SAN ?=
PKGS := sqlite3 libxxhash jansson yaml-0.1 libcrypto libmicrohttpd libcurl libpq
# The pkg-config flags are asked for when a compile or link first needs them, once per make,
# never when make reads this file: on a fresh machine pkg-config and the -dev packages only exist
# once scripts/bootstrap has run, which the targets that call it (demo, test, bench) do first,
# before their build runs in a make of its own. Without them, the build stops with what to do.
pkg_query = $(shell pkg-config $(1) $(PKGS) 2>/dev/null || echo '?missing')
pkg_checked = $(if $(filter ?missing,$(1)),$(error pkg-config cannot find $(PKGS) (or pkg-config \
  itself is missing): run scripts/bootstrap, or make demo or make test, which run it),$(1))
PKG_CFLAGS = $(eval PKG_CFLAGS := $$(call pkg_checked,$$(call pkg_query,--cflags)))$(PKG_CFLAGS)
PKG_LIBS = $(eval PKG_LIBS := $$(call pkg_checked,$$(call pkg_query,--libs)))$(PKG_LIBS)
WARN := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes -Wformat=2 -Wvla
ALL_CFLAGS = -std=c11 $(WARN) -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iinclude -Isrc \
             $(PKG_CFLAGS) $(CFLAGS) $(SAN) -MMD -MP
LDLIBS = $(PKG_LIBS) -lpthread -lm

LIB_SRC := $(sort $(wildcard lib/*/*.c))
SRC_SRC := $(sort $(wildcard src/*.c))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
DOC_PAGES := docs/diff.md docs/gen.md docs/check-config.md docs/watch.md docs/alerts.md \
             docs/annotate.md docs/audit.md docs/repair.md docs/chaos.md docs/dashboard.md
RUNBOOKS := $(sort $(wildcard docs/runbooks/*.md))
# The dashboard (web/): its own files and uPlot from npm (web/package-lock.json), embedded.
UPLOT := web/node_modules/uplot/dist
DASHBOARD := /dashboard/=web/dashboard/index.html /dashboard/app.js=web/dashboard/app.js \
             /dashboard/app.css=web/dashboard/app.css \
             /dashboard/uPlot.iife.min.js=$(UPLOT)/uPlot.iife.min.js \
             /dashboard/uPlot.min.css=$(UPLOT)/uPlot.min.css
DASHBOARD_FILES := $(foreach a,$(DASHBOARD),$(lastword $(subst =, ,$(a))))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/runbook_pages.o $(BUILD)/dashboard_files.o
SRC_OBJ := $(SRC_SRC:%.c=$(BUILD)/%.o) $(BUILD)/help_pages.o
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
C_FILES := $(shell git ls-files '*.c' '*.h' 2>/dev/null)

.PHONY: all lib unit unit-run test test-cli test-watch test-alerts test-repair test-chaos test-pg test-secrets test-dashboard test-hostile check-layers chaos bench demo install format format-check fuzz \
        fuzz-run bootstrap clean

all: $(BUILD)/converge $(BUILD)/libconverge.a

lib: $(BUILD)/libconverge.a

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libconverge.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/help_pages.c: scripts/embed-docs $(DOC_PAGES)
	@mkdir -p $(dir $@)
	scripts/embed-docs $(DOC_PAGES) > $@.tmp && mv $@.tmp $@

$(BUILD)/help_pages.o: $(BUILD)/help_pages.c
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/runbook_pages.c: scripts/embed-docs $(RUNBOOKS)
	@mkdir -p $(dir $@)
	scripts/embed-docs --symbol cvg_runbook_pages $(RUNBOOKS) > $@.tmp && mv $@.tmp $@

$(BUILD)/runbook_pages.o: $(BUILD)/runbook_pages.c
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# npm packages of the dashboard, as pinned in web/package-lock.json (scripts/bootstrap does this
# too; here so that a plain `make` after a lock change is complete).
web/node_modules/.converge-stamp: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(UPLOT)/%: web/node_modules/.converge-stamp ;

$(BUILD)/dashboard_files.c: scripts/embed-files $(DASHBOARD_FILES)
	@mkdir -p $(dir $@)
	scripts/embed-files $(DASHBOARD) > $@.tmp && mv $@.tmp $@

$(BUILD)/dashboard_files.o: $(BUILD)/dashboard_files.c
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/converge: $(SRC_OBJ) $(BUILD)/libconverge.a
	$(CC) $(CFLAGS) $(SAN) -o $@ $(SRC_OBJ) $(BUILD)/libconverge.a $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libconverge.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libconverge.a $(LDLIBS) $(shell pkg-config --libs cmocka)

unit: $(UNIT_BIN)

unit-run: $(UNIT_BIN)
	@tests/run-unit $(UNIT_BIN)

bootstrap:
	@scripts/bootstrap

# The README's test command. Order: cheapest failure first.
test: bootstrap
	@echo "== the layers (scripts/check-layers, and its own test)"
	@scripts/check-layers
	@tests/layers/run
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory all unit-run
	@echo "== unit tests again, clang with AddressSanitizer + UndefinedBehaviorSanitizer"
	@$(MAKE) --no-print-directory BUILD=build/asan CC=clang CFLAGS="-O1 -g" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  all unit-run
	@$(MAKE) --no-print-directory fuzz-run
	@echo "== CLI tests (the ASan+UBSan build of converge)"
	@tests/cli/run build/asan/converge
	@echo "== converge watch end to end (ASan+UBSan build; real promtool and Prometheus)"
	@tests/watch/run build/asan/converge
	@echo "== alerts end to end (ASan+UBSan build; a real Alertmanager)"
	@tests/alerts/run build/asan/converge
	@echo "== repair end to end (ASan+UBSan build; 50 SIGKILL trials with a concurrent writer)"
	@ASAN_OPTIONS=detect_leaks=1 tests/repair/run build/asan/converge
	@echo "== attacks and accidents against the repair path (ASan+UBSan build; tests/hostile)"
	@ASAN_OPTIONS=detect_leaks=1 tests/hostile/run build/asan/converge
	@echo "== PostgreSQL replicas (ASan+UBSan build; real PostgreSQL servers from initdb, logical replication, a delayed physical standby, an unreplicated heartbeat)"
	@tests/pg/run build/asan/converge
	@tests/pg/replication build/asan/converge
	@tests/pg/unreplicated build/asan/converge
	@echo "== secrets never leave (ASan+UBSan build; PostgreSQL, Alertmanager, every surface searched)"
	@tests/secrets/run build/asan/converge
	@echo "== the chaos lab end to end (ASan+UBSan build; a seeded subset of examples/chaos/)"
	@tests/chaos/run build/asan/converge
	@echo "== the dashboard in a real browser (ASan+UBSan build; headless Chromium via playwright-core)"
	@tests/dashboard/run build/asan/converge
	@echo "== watch, alerts and repair end to end again, clang with ThreadSanitizer (a data race fails it)"
	@$(MAKE) --no-print-directory BUILD=build/tsan CC=clang CFLAGS="-O1 -g" SAN="-fsanitize=thread" \
	  build/tsan/converge
	@TSAN_OPTIONS="halt_on_error=1 abort_on_error=1" tests/watch/run build/tsan/converge
	@TSAN_OPTIONS="halt_on_error=1 abort_on_error=1" tests/alerts/run build/tsan/converge
	@TSAN_OPTIONS="halt_on_error=1 abort_on_error=1" TRIALS=5 tests/repair/run build/tsan/converge

check-layers:
	@scripts/check-layers

test-cli: all
	@tests/cli/run $(BUILD)/converge

test-watch: all
	@tests/watch/run $(BUILD)/converge

test-alerts: all
	@tests/alerts/run $(BUILD)/converge

test-repair: all
	@tests/repair/run $(BUILD)/converge

test-chaos: all
	@tests/chaos/run $(BUILD)/converge

test-dashboard: all
	@tests/dashboard/run $(BUILD)/converge

test-hostile: all
	@tests/hostile/run $(BUILD)/converge

test-pg: all
	@tests/pg/run $(BUILD)/converge
	@tests/pg/replication $(BUILD)/converge
	@tests/pg/unreplicated $(BUILD)/converge

test-secrets: all
	@tests/secrets/run $(BUILD)/converge

bench: bootstrap
	@$(MAKE) --no-print-directory all
	@bench/diff_vs_sqldiff $(BUILD)/converge
	@bench/watch $(BUILD)/converge
	@bench/adaptive
	@bench/repair $(BUILD)/converge
	@bench/pg $(BUILD)/converge

demo: bootstrap
	@$(MAKE) --no-print-directory all
	@scripts/demo $(BUILD)/converge

# Every scenario of examples/chaos/ with three seeds (about half an hour), then a table per
# scenario: runs passed, worst recall, false alarms, false confirmations, repairs of rows in
# flight, worst MTTD and MTTR (scripts/chaos-all; history in build/chaos-ledger.jsonl).
chaos: all
	@scripts/chaos-all $(BUILD)/converge

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/converge \
	  $(DESTDIR)$(PREFIX)/share/doc/converge
	install -m 755 $(BUILD)/converge $(DESTDIR)$(PREFIX)/bin/converge
	install -m 644 $(BUILD)/libconverge.a $(DESTDIR)$(PREFIX)/lib/libconverge.a
	install -m 644 include/converge/*.h $(DESTDIR)$(PREFIX)/include/converge/
	install -m 644 README.md docs/*.md $(DESTDIR)$(PREFIX)/share/doc/converge/

format:
	clang-format -i $(C_FILES)

format-check:
	@echo "== format check (clang-format)"
	@clang-format --dry-run --Werror $(C_FILES)

FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=build/fuzz/%)
build/fuzz/%: fuzz/%.c $(LIB_SRC) build/runbook_pages.c build/dashboard_files.c
	@mkdir -p $(dir $@)
	clang -std=c11 -g -O1 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iinclude \
	  -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) -o $@ $< $(LIB_SRC) \
	  build/runbook_pages.c build/dashboard_files.c $(LDLIBS)

fuzz: $(FUZZ_BIN)

# A short, bounded run of every fuzz target on its seed corpus: it must find nothing.
fuzz-run: $(FUZZ_BIN)
	@echo "== fuzz targets (20000 runs each)"
	@for f in $(FUZZ_BIN); do \
	  n=$$(basename $$f); mkdir -p build/fuzz/corpus/$$n; \
	  $$f -runs=20000 -seed=1 build/fuzz/corpus/$$n fuzz/corpus/$$n >build/fuzz/$$n.log 2>&1 \
	    || { cat build/fuzz/$$n.log; echo "fuzz: $$n FAILED"; exit 1; }; \
	  echo "fuzz: $$n ok"; done

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(SRC_OBJ:.o=.d)

# imdbfs - see README.md. `make test` is the whole test suite; `make run MOUNT=dir` mounts.

PREFIX    ?= /usr/local
BINDIR    ?= $(PREFIX)/bin
DATADIR   ?= $(PREFIX)/share
MANDIR    ?= $(DATADIR)/man
UNITDIR   ?= $(PREFIX)/lib/systemd/system
BUILD     ?= build
CC        ?= cc
PKGS      := fuse3 libcurl zlib libcjson libcrypto
# ISA-L's inflate when libisal-dev is there (ISAL=0 builds without it); zlib either way.
ISAL      ?= $(shell pkg-config --exists libisal 2>/dev/null && echo 1 || echo 0)
ifeq ($(ISAL),1)
PKGS      += libisal
DEFS      := -DHAVE_ISAL
endif
WARN      := -Wall -Wextra -Werror -Wmissing-prototypes -Wstrict-prototypes -Wshadow \
             -Wformat=2 -Wno-format-nonliteral
CFLAGS    ?= -O2 -g
ALL_CFLAGS = $(CFLAGS) -std=c11 -D_GNU_SOURCE $(DEFS) -pthread $(WARN) -Iinclude \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -pthread -lm
SANITIZE  := -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer -fno-sanitize-recover=all

SRCS      := $(wildcard src/*.c)
LIB_SRCS  := $(filter-out src/main.c src/fs.c src/fs_inode.c src/fs_handle.c src/notify.c src/cli.c,$(SRCS))
OBJS      := $(SRCS:src/%.c=$(BUILD)/%.o)
LIB_OBJS  := $(LIB_SRCS:src/%.c=$(BUILD)/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c) tests/unit/engine_fixture.c
# tests/unit/test_store_local.c makes these calls fail to test the cache's commit.
UNIT_WRAP := -Wl,--wrap=renameat,--wrap=linkat,--wrap=unlinkat
PYTEST    := /usr/bin/python3 -m pytest
MOUNT     ?= $(HOME)/imdb

.PHONY: all deps test test-unit test-e2e test-stress check-asan check-clang fuzz fuzz-build \
        fuzz-targets bench run demo demo-stop install uninstall deb format clean

all: $(BUILD)/imdbfs

$(BUILD)/imdbfs: $(OBJS)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: src/%.c | $(BUILD)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/unit-tests: $(UNIT_SRCS) $(LIB_OBJS) | $(BUILD)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes $(LDFLAGS) $(UNIT_WRAP) -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/blob-probe: tests/azure/blob-probe.c $(LIB_OBJS) | $(BUILD)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD):
	mkdir -p $@

-include $(OBJS:.o=.d)

# Installs what is missing (Debian packages), quietly when all is present.
deps:
	@scripts/install-deps.sh

test: deps
	$(MAKE) all $(BUILD)/unit-tests
	$(MAKE) test-unit test-e2e

test-unit: $(BUILD)/unit-tests
	$(BUILD)/unit-tests

# DECODER=zlib|isal runs every mount with that decoder (default: isal when built with it).
test-e2e: $(BUILD)/imdbfs $(BUILD)/blob-probe
	IMDBFS_BIN=$(abspath $(BUILD)/imdbfs) BLOB_PROBE=$(abspath $(BUILD)/blob-probe) \
		IMDBFS_TEST_DECODER=$(DECODER) $(PYTEST) -q tests/e2e $(PYTEST_ARGS)

test-stress: deps all $(BUILD)/blob-probe
	IMDBFS_BIN=$(abspath $(BUILD)/imdbfs) BLOB_PROBE=$(abspath $(BUILD)/blob-probe) \
		IMDBFS_STRESS=1 $(PYTEST) -q tests/e2e $(PYTEST_ARGS)

# The sanitizers' run uses zlib (DECODER= to change): with `make test` on ISA-L, CI runs both.
check-asan: deps
	$(MAKE) BUILD=build-asan CFLAGS="-O1 -g $(SANITIZE)" LDFLAGS="$(SANITIZE)" \
		all build-asan/unit-tests build-asan/blob-probe
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 build-asan/unit-tests
	ASAN_OPTIONS=detect_leaks=1 IMDBFS_BIN=$(abspath build-asan/imdbfs) \
		BLOB_PROBE=$(abspath build-asan/blob-probe) IMDBFS_TEST_DECODER=$(or $(DECODER),zlib) \
		$(PYTEST) -q tests/e2e $(PYTEST_ARGS)

# Everything, unit tests included, built and run with clang (-Werror as with gcc).
check-clang: deps
	$(MAKE) CC=clang BUILD=build-clang all build-clang/unit-tests build-clang/blob-probe
	build-clang/unit-tests

# libFuzzer targets (tests/fuzz/fuzz_NAME.c) against the library objects built
# with clang for the fuzzer, ASan and UBSan in build-fuzz/; `make fuzz` runs each
# for FUZZ_S seconds on a copy of its seed corpus (README.md, "Fuzzing").
FUZZ_S     ?= 60
FUZZ_BUILD := build-fuzz
FUZZ_SRCS  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_FLAGS := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=undefined

fuzz-build:
	$(MAKE) CC=clang BUILD=$(FUZZ_BUILD) CFLAGS="$(FUZZ_FLAGS)" fuzz-targets

fuzz-targets: $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/%)

$(BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(LIB_OBJS) | $(BUILD)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $< $(LIB_OBJS) $(LDLIBS)

fuzz: deps
	$(MAKE) fuzz-build
	tests/fuzz/run $(FUZZ_BUILD) $(FUZZ_S) $(FUZZ_TARGETS)

# The mount's figures, the databases', the Azure tier's; all run even when one fails.
bench: deps all
	@status=0; scripts/bench || status=1; scripts/bench-db || status=1; \
		scripts/bench-azure || status=1; exit $$status

# Mounts the real IMDb origin with the local cache (daemonized; unmount with
# fusermount3 -u $(MOUNT)).
run: all
	mkdir -p "$(MOUNT)"
	$(BUILD)/imdbfs "$(MOUNT)"
	@echo "mounted at $(MOUNT); unmount with: fusermount3 -u $(MOUNT)"

# Mounts generated sample data served by a local nginx: no internet needed.
demo: deps all
	scripts/demo start "$(MOUNT)"

demo-stop:
	scripts/demo stop "$(MOUNT)"

# Honours PREFIX and DESTDIR (and BINDIR, DATADIR, MANDIR, UNITDIR). The unit is
# written with the installed binary's path.
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DATADIR)/imdbfs/sql \
		$(DESTDIR)$(UNITDIR)
	install -m 755 $(BUILD)/imdbfs scripts/imdb-db $(DESTDIR)$(BINDIR)/
	install -m 644 packaging/man/imdbfs.1 packaging/man/imdb-db.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 sql/*.sql $(DESTDIR)$(DATADIR)/imdbfs/sql/
	sed 's|@BINDIR@|$(BINDIR)|g' packaging/systemd/imdbfs@.service.in \
		> $(DESTDIR)$(UNITDIR)/imdbfs@.service
	chmod 644 $(DESTDIR)$(UNITDIR)/imdbfs@.service

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/imdbfs $(DESTDIR)$(BINDIR)/imdb-db \
		$(DESTDIR)$(MANDIR)/man1/imdbfs.1 $(DESTDIR)$(MANDIR)/man1/imdb-db.1 \
		$(DESTDIR)$(UNITDIR)/imdbfs@.service
	rm -rf $(DESTDIR)$(DATADIR)/imdbfs

# A binary .deb in build/ (packaging/debian/build-deb says how).
deb: all
	packaging/debian/build-deb $(BUILD)

format:
	clang-format -i src/*.c include/*.h tests/unit/*.c tests/fuzz/*.c tests/fuzz/*.h

clean:
	rm -rf build build-asan build-clang build-fuzz

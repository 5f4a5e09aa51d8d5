# m365sync — PGXS build.
#
# The install script m365sync--$(EXTVERSION).sql is assembled from the pieces
# in src/sql/ (one piece per capability, applied in name order), so that each
# module owns the SQL it exposes.

EXTENSION  = m365sync
# One version number: the control file's default_version.
EXTVERSION = $(shell sed -nE "s/^default_version *= *'([^']+)'.*/\\1/p" $(EXTENSION).control)

MODULE_big = m365sync
OBJS       = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

DATA_built = $(EXTENSION)--$(EXTVERSION).sql
# Upgrade scripts, one per released step (src/sql/updates/m365sync--<a>--<b>.sql).
DATA       = $(wildcard src/sql/updates/$(EXTENSION)--*--*.sql)

REGRESS      = $(sort $(basename $(notdir $(wildcard sql/*.sql))))
REGRESS_OPTS = --inputdir=.

PG_CONFIG ?= pg_config
PG_CPPFLAGS = -I$(CURDIR)/src -DM365SYNC_VERSION=\"$(EXTVERSION)\"
PG_CFLAGS  ?= -Wall -Wextra -Wno-unused-parameter -Werror
SHLIB_LINK = -lcurl -lssl -lcrypto -lcjson

# Sanitizer builds (make clean first; objects do not record their flags):
# make SANITIZE=1 (address + undefined behaviour) needs libasan first in the
# process, and with libasan preloaded Debian's PostgreSQL 15 binaries hang
# in a library constructor (libgpg-error's bindtextdomain), so use it for the
# unit tests and fuzz targets; make SANITIZE=undefined (undefined behaviour
# only) needs no preload and works in the server: any UB aborts the backend.
# SANITIZE=undefined test/check runs every suite with it.
ifeq ($(SANITIZE),undefined)
PG_CFLAGS  += -fsanitize=undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
SHLIB_LINK += -fsanitize=undefined
else ifdef SANITIZE
PG_CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer
SHLIB_LINK += -fsanitize=address,undefined
endif

EXTRA_CLEAN = $(DATA_built)

# Every object depends on the headers it includes (gcc -MMD, files in .deps/)
# and on this Makefile. PGXS tracks headers only for a PostgreSQL configured
# with --enable-depend, which Debian's is not: a changed header used to leave
# the objects that include it stale, and a field added to a struct then had
# them read it at the old offsets (the SIGSEGV in libcjson that reverted the
# cJSON arena, b238025). test/lint/depends checks it. Bitcode (JIT inlining)
# follows its object.
override autodepend = yes

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(OBJS): Makefile
ifeq ($(with_llvm), yes)
$(OBJS:.o=.bc): %.bc: %.o
endif

SQL_PIECES = $(sort $(wildcard src/sql/*.sql))

$(EXTENSION)--$(EXTVERSION).sql: $(SQL_PIECES)
	cat $^ > $@

# Pure-C unit tests and fuzz targets live in test/; they build without a server.
.PHONY: unit fuzz
unit:
	$(MAKE) -C test/unit PG_CONFIG=$(PG_CONFIG)
fuzz:
	$(MAKE) -C test/fuzz PG_CONFIG=$(PG_CONFIG)

# PGXN release: $(EXTENSION)-$(EXTVERSION).zip, one top directory
# $(EXTENSION)-$(EXTVERSION)/ with META.json at its top, from the committed
# tree (git archive HEAD). META.json is checked against the PGXN Meta Spec and
# the control file first, so the two cannot disagree; then the zip itself.
DISTFILE ?= $(EXTENSION)-$(EXTVERSION).zip
.PHONY: dist
dist:
	@git rev-parse --git-dir >/dev/null 2>&1 || { echo "make dist needs a git checkout (it archives HEAD)" >&2; exit 1; }
	python3 test/package/validate_meta.py META.json
	git archive --format=zip --prefix=$(EXTENSION)-$(EXTVERSION)/ -o $(DISTFILE) HEAD
	python3 test/package/validate_meta.py META.json --zip $(DISTFILE)

# Makefile for the enrollment extension (PGXS)

EXTENSION = enrollment
EXTVERSION = $(shell grep default_version $(EXTENSION).control | sed -e "s/default_version[[:space:]]*=[[:space:]]*'\([^']*\)'/\1/")

MODULE_big = enrollment
OBJS = $(patsubst %.c,%.o,$(wildcard src/*.c))

DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql
# earlier releases' install scripts are kept as shipped; upgrades go through
# sql/enrollment--<from>--<to>.sql
DATA = $(filter-out $(DATA_built),$(wildcard sql/$(EXTENSION)--*.sql))

# Server headers as system headers: their unused inline parameters are not our
# warnings, and every warning in our own code stays an error.
PG_CPPFLAGS = -I$(srcdir)/src -isystem $(shell $(PG_CONFIG) --includedir-server)
PG_CFLAGS += -Wall -Wextra -Werror
SHLIB_LINK += -lcrypto
# make VALGRIND=1: constant-time annotations for Memcheck (scripts/valgrind)
# (VALGRIND=control: also a variable-time comparison, which Memcheck must catch)
ifdef VALGRIND
PG_CPPFLAGS += -DENR_VALGRIND
ifeq ($(VALGRIND),control)
PG_CPPFLAGS += -DENR_CT_BROKEN
endif
endif

# pg_regress: inputs in test/sql, outputs in the top-level expected/ (test/expected links there)
TESTS = $(sort $(wildcard test/sql/*.sql))
REGRESS = $(patsubst test/sql/%.sql,%,$(TESTS))
REGRESS_OPTS = --inputdir=test --load-extension=pgcrypto

# isolation specs in test/specs, outputs in expected/
ISOLATION = $(patsubst test/specs/%.spec,%,$(sort $(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test --load-extension=pgcrypto --load-extension=enrollment

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

EXTRA_CLEAN = sql/$(EXTENSION)--$(EXTVERSION).sql results output_iso tmp_check regression.diffs regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies (without --enable-depend): every object
# is rebuilt when one of the extension's headers changes
$(OBJS): $(wildcard src/*.h)

sql/$(EXTENSION)--$(EXTVERSION).sql: sql/$(EXTENSION).sql
	cp $< $@

.PHONY: test demo bench
test:
	./scripts/test

demo:
	./scripts/demo

# test/pure_srcs.mk — the pure-C sources of src/ (files that include no
# postgres.h), listed once for every build that links them without a
# server: the unit tests (test/unit) and the fuzz targets (test/fuzz).
# Included by both Makefiles; a new parser goes here and both see it.
#
# One line per capability, so branches add sources without conflicts.
PURE_SRCS  = crypto.c keyfile.c
PURE_SRCS += event_json.c zone_names.c
PURE_SRCS += http_util.c oauth_util.c graph_util.c
PURE_SRCS += delta_page.c event_patch.c
PURE_SRCS += json_arena.c
PURE_SRCS += envelope.c
PURE_SRCS += notify_util.c
PURE_SRCS += series_json.c

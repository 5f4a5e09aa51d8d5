/*
 * jsonb_cjson.h — a cJSON tree as a jsonb value, built directly (no text
 * round trip). See jsonb_cjson.c.
 */
#ifndef M365SYNC_JSONB_CJSON_H
#define M365SYNC_JSONB_CJSON_H

#include <cjson/cJSON.h>

#include "utils/jsonb.h"

/*
 * The tree as jsonb, palloc'd in the current memory context; NULL when a
 * key or string is not valid UTF-8. The tree is only read.
 */
extern Jsonb *m365_cjson_to_jsonb(const cJSON *node);

#endif							/* M365SYNC_JSONB_CJSON_H */

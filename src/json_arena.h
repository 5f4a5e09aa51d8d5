/*
 * json_arena.h — cJSON's allocations in bump arenas (json_arena.c). Pure C:
 * no backend headers, so the unit tests and fuzz targets use it as the
 * pull does.
 *
 * cJSON's hooks are global, so the allocator is safe for every user of
 * cJSON in the process: m365_json_arena_install() sets hooks that take
 * memory from the arena made current with m365_json_arena_use(), and from
 * malloc when none is; a free of memory inside a live arena does nothing,
 * any other goes to free(). An arena owns what was allocated while it was
 * current until m365_json_arena_free(): nothing allocated in it may be used
 * after that (a delta page's tree: the page owns its arena). Memory from
 * malloc may be freed or added to an arena's tree and back as before.
 * Without install(), m365_json_arena_new() returns NULL and cJSON uses
 * malloc as it always did.
 */
#ifndef M365SYNC_JSON_ARENA_H
#define M365SYNC_JSON_ARENA_H

#include <stddef.h>

typedef struct M365JsonArena M365JsonArena;

/* Set cJSON's hooks (once per process; later calls do nothing). */
extern void m365_json_arena_install(void);

/*
 * A new arena (not yet current), its first block sized for about hint
 * bytes of JSON text; NULL when the hooks are not installed or memory is
 * short (cJSON then allocates from malloc).
 */
extern M365JsonArena *m365_json_arena_new(size_t hint);

/* Make a (or NULL: malloc) the current arena; returns the one it replaces. */
extern M365JsonArena *m365_json_arena_use(M365JsonArena *a);

/* Release an arena and everything allocated in it (NULL: nothing). */
extern void m365_json_arena_free(M365JsonArena *a);

#endif							/* M365SYNC_JSON_ARENA_H */

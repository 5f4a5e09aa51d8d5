/*
 * json_arena.c — cJSON's allocations in bump arenas (see json_arena.h).
 *
 * A delta page of 100 events is some 10,000 cJSON nodes and strings, each
 * a malloc when parsed and a free when the tree goes: a fifth of the
 * worker's CPU in an initial sync went to libc's allocator. In an arena an
 * allocation is a pointer bump and a free is nothing; the whole tree goes
 * with its arena's few blocks.
 *
 * The hooks are the whole process's, so they must serve every user of
 * cJSON: with no arena current they call malloc, and a free looks whether
 * the pointer lies in a block of a live arena (nothing to do) before it
 * calls free(). Live arenas are few (a page being read, and the pages
 * parked while their series masters are fetched), each of a few blocks
 * (sizes double), so that look is short. The largest block of a released
 * arena is kept for the next one: pages come one after another. Not
 * thread-safe, as the backend that uses it is single-threaded.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "json_arena.h"

#define ARENA_ALIGN		16		/* as malloc's */
#define ARENA_MIN_BLOCK	((size_t) 16 * 1024)
#define ARENA_MAX_GROW	((size_t) 16 * 1024 * 1024)	/* blocks double up to this */
#define ARENA_MAX_SPARE	((size_t) 32 * 1024 * 1024)	/* a larger block is not kept */

typedef struct ArenaBlock
{
	struct ArenaBlock *next;
	size_t		size;			/* bytes at data */
	size_t		used;
	char	   *data;
} ArenaBlock;

struct M365JsonArena
{
	ArenaBlock *blocks;			/* the newest first: allocations come from it */
	size_t		next_size;		/* the next block's size */
	M365JsonArena *prev_live;
	M365JsonArena *next_live;
};

static bool installed = false;
static M365JsonArena *current = NULL;
static M365JsonArena *live = NULL;	/* every arena not yet released */
static ArenaBlock *spare = NULL;	/* kept from a released arena */

static size_t
align_up(size_t n)
{
	return (n + ARENA_ALIGN - 1) & ~((size_t) ARENA_ALIGN - 1);
}

static ArenaBlock *
block_new(size_t size)
{
	size_t		head = align_up(sizeof(ArenaBlock));
	ArenaBlock *b;

	if (size > SIZE_MAX - head)
		return NULL;
	b = malloc(head + size);
	if (b == NULL)
		return NULL;
	b->next = NULL;
	b->size = size;
	b->used = 0;
	b->data = (char *) b + head;
	return b;
}

static void *
arena_alloc(M365JsonArena *a, size_t sz)
{
	size_t		need = align_up(sz == 0 ? 1 : sz);
	ArenaBlock *b = a->blocks;
	void	   *p;

	if (need < sz)
		return NULL;			/* overflowed */
	if (b == NULL || b->size - b->used < need)
	{
		size_t		want = need > a->next_size ? need : a->next_size;

		if (spare != NULL && spare->size >= want)
		{
			b = spare;
			spare = NULL;
			b->used = 0;
		}
		else if ((b = block_new(want)) == NULL)
			return NULL;
		b->next = a->blocks;
		a->blocks = b;
		if (a->next_size < ARENA_MAX_GROW)
			a->next_size *= 2;
	}
	p = b->data + b->used;
	b->used += need;
	return p;
}

static void *
hook_malloc(size_t sz)
{
	if (current == NULL)
		return malloc(sz);
	return arena_alloc(current, sz);
}

static void
hook_free(void *p)
{
	const char *c = p;

	if (p == NULL)
		return;
	for (M365JsonArena *a = live; a != NULL; a = a->next_live)
		for (ArenaBlock *b = a->blocks; b != NULL; b = b->next)
			if (c >= b->data && c < b->data + b->size)
				return;			/* goes with its arena */
	free(p);
}

void
m365_json_arena_install(void)
{
	cJSON_Hooks hooks = {hook_malloc, hook_free};

	if (installed)
		return;
	cJSON_InitHooks(&hooks);
	installed = true;
}

M365JsonArena *
m365_json_arena_new(size_t hint)
{
	M365JsonArena *a;

	if (!installed)
		return NULL;
	a = malloc(sizeof(M365JsonArena));
	if (a == NULL)
		return NULL;
	a->blocks = NULL;
	/* a parsed tree takes some 4 to 5 times its text */
	a->next_size = hint > ARENA_MAX_GROW / 5 ? ARENA_MAX_GROW : hint * 5;
	if (a->next_size < ARENA_MIN_BLOCK)
		a->next_size = ARENA_MIN_BLOCK;
	a->prev_live = NULL;
	a->next_live = live;
	if (live != NULL)
		live->prev_live = a;
	live = a;
	return a;
}

M365JsonArena *
m365_json_arena_use(M365JsonArena *a)
{
	M365JsonArena *prev = current;

	current = a;
	return prev;
}

void
m365_json_arena_free(M365JsonArena *a)
{
	ArenaBlock *b;

	if (a == NULL)
		return;
	if (current == a)
		current = NULL;
	if (a->prev_live != NULL)
		a->prev_live->next_live = a->next_live;
	else
		live = a->next_live;
	if (a->next_live != NULL)
		a->next_live->prev_live = a->prev_live;
	while ((b = a->blocks) != NULL)
	{
		a->blocks = b->next;
		if (b->size <= ARENA_MAX_SPARE && (spare == NULL || spare->size < b->size))
		{
			free(spare);
			spare = b;
		}
		else
			free(b);
	}
	free(a);
}

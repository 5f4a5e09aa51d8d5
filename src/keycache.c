/*
 * keycache.c — the unwrapped data keys a backend keeps (see keycache.h).
 *
 * A dynahash table keyed by account id holds the entries (in its own memory
 * context under TopMemoryContext; an entry's address is stable while it is
 * in the table). Three lists thread through them: every entry by last use
 * (eviction at M365_KEYCACHE_SIZE), the hot ones by last use (their keyed
 * contexts dropped past M365_KEYCACHE_HOT), and the uncommitted ones (so a
 * commit or an abort touches only those, not the whole cache). Every way
 * out of the table goes through drop_entry, which frees the contexts
 * (OPENSSL_cleanse) and wipes the key bytes before the entry goes back to
 * the table's free list.
 */
#include "postgres.h"

#include "utils/hsearch.h"

#include "crypto.h"
#include "keycache.h"

static HTAB *keys = NULL;
static dlist_head lru = DLIST_STATIC_INIT(lru);
static dlist_head hot = DLIST_STATIC_INIT(hot);
static dlist_head pending = DLIST_STATIC_INIT(pending);
static int	nkeys = 0;
static int	nhot = 0;

static void
cool(M365DataKey *e)
{
	if (e->gk == NULL && e->hk == NULL)
		return;
	m365_gcm_key_free(e->gk);
	m365_hmac_key_free(e->hk);
	e->gk = NULL;
	e->hk = NULL;
	dlist_delete(&e->hot);
	nhot--;
}

static void
drop_entry(M365DataKey *e)
{
	int64		account_id = e->account_id;

	cool(e);
	if (e->uncommitted)
		dlist_delete(&e->pending);
	dlist_delete(&e->lru);
	nkeys--;
	m365_secure_zero(e->key, sizeof(e->key));
	e->generation = 0;
	e->uncommitted = false;
	if (hash_search(keys, &account_id, HASH_REMOVE, NULL) == NULL)
		elog(PANIC, "m365sync key cache: entry of account " INT64_FORMAT " not in its table", account_id);
}

M365DataKey *
m365_keycache_find(int64 account_id)
{
	M365DataKey *e;

	if (keys == NULL)
		return NULL;
	e = hash_search(keys, &account_id, HASH_FIND, NULL);
	if (e != NULL)
		dlist_move_head(&lru, &e->lru);
	return e;
}

M365DataKey *
m365_keycache_add(int64 account_id, uint32 generation,
				  const uint8 key[M365_KEY_BYTES], bool uncommitted)
{
	M365DataKey *e;
	bool		found;

	if (keys == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(M365DataKey);
		keys = hash_create("m365sync data keys", M365_KEYCACHE_SIZE, &ctl,
						   HASH_ELEM | HASH_BLOBS);
	}
	m365_keycache_forget(account_id);
	if (nkeys >= M365_KEYCACHE_SIZE)
		drop_entry(dlist_tail_element(M365DataKey, lru, &lru));
	e = hash_search(keys, &account_id, HASH_ENTER, &found);
	Assert(!found);
	e->generation = generation;
	memcpy(e->key, key, M365_KEY_BYTES);
	e->gk = NULL;
	e->hk = NULL;
	e->uncommitted = uncommitted;
	dlist_push_head(&lru, &e->lru);
	if (uncommitted)
		dlist_push_head(&pending, &e->pending);
	nkeys++;
	return e;
}

void
m365_keycache_hot(M365DataKey *e, void (*make_contexts) (M365DataKey *e))
{
	if (e->gk != NULL)
	{
		dlist_move_head(&hot, &e->hot);
		return;
	}
	make_contexts(e);
	Assert(e->gk != NULL && e->hk != NULL);
	dlist_push_head(&hot, &e->hot);
	if (++nhot > M365_KEYCACHE_HOT)
		cool(dlist_tail_element(M365DataKey, hot, &hot));
}

void
m365_keycache_forget(int64 account_id)
{
	dlist_mutable_iter it;

	if (keys == NULL)
		return;
	if (account_id >= 0)
	{
		M365DataKey *e = hash_search(keys, &account_id, HASH_FIND, NULL);

		if (e != NULL)
			drop_entry(e);
		return;
	}
	dlist_foreach_modify(it, &lru)
		drop_entry(dlist_container(M365DataKey, lru, it.cur));
	Assert(nkeys == 0 && nhot == 0);
}

void
m365_keycache_commit(void)
{
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &pending)
	{
		M365DataKey *e = dlist_container(M365DataKey, pending, it.cur);

		dlist_delete(&e->pending);
		e->uncommitted = false;
	}
}

void
m365_keycache_forget_uncommitted(void)
{
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &pending)
		drop_entry(dlist_container(M365DataKey, pending, it.cur));
}

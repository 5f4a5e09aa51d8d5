/*
 * keycache.h — the unwrapped data keys a backend keeps (keycache.c), for
 * keyring.c only.
 *
 * Up to M365_KEYCACHE_SIZE accounts' keys, found by account id in O(1)
 * (a hash table) and evicted least recently used first. Every entry holds
 * its 32 key bytes; only the M365_KEYCACHE_HOT most recently used ones also
 * hold keyed OpenSSL contexts (a few kB each), rebuilt from the key bytes
 * when an entry becomes hot again. Key bytes and contexts are wiped
 * (m365_secure_zero, OPENSSL_cleanse) on every eviction and every forget.
 *
 * keycache.c knows nothing of tables, transactions or master keys: keyring.c
 * decides when to forget (invalidation, abort, master key change, exit).
 */
#ifndef M365SYNC_KEYCACHE_H
#define M365SYNC_KEYCACHE_H

#include "postgres.h"

#include "lib/ilist.h"

#include "crypto.h"

/*
 * A steady poll uses every account's key twice a round (its cursor and
 * token, at the round's start and end), so the cache must hold every
 * account a worker polls, or every round of a large installation misses
 * (an SPI read and an unwrap). About 130 bytes an entry: 2 MB at most.
 */
#define M365_KEYCACHE_SIZE	16384
/* Keyed contexts for the accounts of the last waves (64 connections a wave). */
#define M365_KEYCACHE_HOT	128

typedef struct M365DataKey
{
	int64		account_id;		/* hash key: first */
	uint32		generation;
	bool		uncommitted;	/* created by the open transaction */
	uint8		key[M365_KEY_BYTES];
	M365GcmKey *gk;				/* keyed contexts, NULL unless hot */
	M365HmacKey *hk;			/* HMAC under a key derived from key, see keyring.c */
	dlist_node	lru;			/* every entry, most recently used first */
	dlist_node	hot;			/* entries with contexts, most recently used first */
	dlist_node	pending;		/* uncommitted entries */
} M365DataKey;

/* The account's entry (now the most recently used), or NULL. */
extern M365DataKey *m365_keycache_find(int64 account_id);

/*
 * Enter a key (copied; the caller wipes its own copy), evicting the least
 * recently used entry when full. Replaces any entry of the account.
 */
extern M365DataKey *m365_keycache_add(int64 account_id, uint32 generation,
									  const uint8 key[M365_KEY_BYTES], bool uncommitted);

/*
 * Make sure e has its keyed contexts, built with make_contexts(e) when it
 * has none (which sets e->gk and e->hk or raises an ERROR leaving them
 * NULL), and drop the contexts of the least recently used hot entry past
 * M365_KEYCACHE_HOT. e's contexts stay until the next keycache call.
 */
extern void m365_keycache_hot(M365DataKey *e, void (*make_contexts) (M365DataKey *e));

/* Wipe and drop the entry of one account, or every entry (-1). */
extern void m365_keycache_forget(int64 account_id);

/* Transaction end: commit keeps the uncommitted entries, abort wipes them. */
extern void m365_keycache_commit(void);
extern void m365_keycache_forget_uncommitted(void);

#endif							/* M365SYNC_KEYCACHE_H */

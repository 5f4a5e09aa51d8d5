/*
 * keyfile.h — the strict parser of the master key file text (keyfile.c).
 *
 * Pure C: bytes in, keys out, no file access, no palloc, no ereport, so unit
 * tests and fuzz targets run it outside a backend. keyring.c reads the file
 * and turns a parse error into an ERROR. An error message names the line
 * (and the key id, which is not secret) but never any part of a key.
 */
#ifndef M365SYNC_KEYFILE_H
#define M365SYNC_KEYFILE_H

#include <stddef.h>
#include <stdint.h>

#include "crypto.h"

#define M365_KEY_ID_MAX		63	/* bytes of a key id: [A-Za-z0-9._-] */
#define M365_MAX_MASTER_KEYS 32	/* lines holding a key */
#define M365_KEYFILE_MAX_BYTES 65536	/* a bigger file is refused unread */

typedef struct M365MasterKey
{
	char		id[M365_KEY_ID_MAX + 1];
	uint8_t		key[M365_KEY_BYTES];
} M365MasterKey;

/* keys[0] is the current key; the others still unwrap older data keys. */
typedef struct M365KeySet
{
	int			nkeys;
	M365MasterKey keys[M365_MAX_MASTER_KEYS];
} M365KeySet;

/*
 * Parse the text of a key file: lines "<key id>:<64 hex digits>", optional
 * "\r" before the newline, blank lines and lines starting with '#' ignored.
 * Returns 0 and fills *out, or -1 with a message in err (errlen bytes,
 * NUL-terminated). On error *out is wiped and holds no key. The caller wipes
 * the text it read.
 */
extern int	m365_keyfile_parse(const char *text, size_t len, M365KeySet *out,
							   char *err, size_t errlen);

/* The key with this id, or NULL. */
extern const M365MasterKey *m365_keyset_find(const M365KeySet *set, const char *id);

/* Wipe every key (m365_secure_zero) and set nkeys to 0. */
extern void m365_keyset_wipe(M365KeySet *set);

#endif							/* M365SYNC_KEYFILE_H */

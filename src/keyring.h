/*
 * keyring.h — envelope encryption inside a backend (keyring.c).
 *
 * Every encrypted column in the schema goes through these two calls. A value
 * is bound (GCM associated data) to its table, column, owning account and,
 * where the row has an id before insert, that row id; moved anywhere else it
 * fails to decrypt with ERROR XX001. Data keys are per account, created on
 * first use, wrapped by the current master key (m365sync.key_file) and
 * stored in m365sync.data_keys. Account 0 is the installation itself (app
 * client secret, consent states).
 *
 * Errors are ereports: no key file / bad key file / unknown key → clear
 * ERROR, never plaintext. Nothing secret reaches a message.
 */
#ifndef M365SYNC_KEYRING_H
#define M365SYNC_KEYRING_H

#include "postgres.h"

#define M365_INSTALLATION_ACCOUNT 0

/*
 * Encrypt len bytes for (table, column, account_id, row_id). row_id 0 when
 * the row has no id of its own. Returns a palloc'd bytea in the current
 * memory context.
 */
extern bytea *m365_encrypt(const char *table, const char *column,
						   int64 account_id, int64 row_id,
						   const char *plain, size_t len);

/* Convenience for NUL-terminated text; NULL in → NULL out. */
extern bytea *m365_encrypt_text(const char *table, const char *column,
								int64 account_id, int64 row_id,
								const char *text);

/*
 * Decrypt; returns palloc'd plaintext with a trailing NUL (not counted in
 * *len). ERROR XX001 (data_corrupted) when the value was tampered with,
 * moved, or its data key is gone (crypto-shredded).
 */
extern char *m365_decrypt(const char *table, const char *column,
						  int64 account_id, int64 row_id,
						  const bytea *value, size_t *len);

extern char *m365_decrypt_text(const char *table, const char *column,
							   int64 account_id, int64 row_id,
							   const bytea *value);

/* Drop the cached data key of one account (purge, rewrap) or of all (-1). */
extern void m365_forget_data_key(int64 account_id);

#endif							/* M365SYNC_KEYRING_H */

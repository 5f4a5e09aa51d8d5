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
 *
 * Call inside a transaction, in any backend: the worker, an admin session
 * (superuser-owned functions) or a user function owned by m365sync_definer,
 * whose data_keys access RLS limits to account 0 and the acting user's
 * accounts. Encrypting for an account without a data key creates one in the
 * caller's transaction (so call it from VOLATILE functions); a rollback
 * takes the key away again, and the cache forgets it.
 *
 * Row ids, by convention (writer and reader must agree, or XX001):
 *   accounts.mailbox / access_token / refresh_token   row_id = account_id
 *   calendars.name / delta_link                       row_id = calendar_id
 *   events.content (jsonb payload)                    row_id = event_id
 *   conflicts.lost (jsonb payload)                    row_id = conflict_id
 *   subscriptions.client_state                        row_id = 0
 *   app_config.client_secret        account 0,        row_id = 1
 *   oauth_states.code_verifier      account 0,        row_id = state_id
 *
 * Value envelope (bytea), version 1:
 *   [0]       version byte (1)
 *   [1..8]    data key reference: account id, big-endian int64
 *   [9..12]   data key generation, big-endian uint32
 *   [13..24]  96-bit random nonce
 *   [25..]    AES-256-GCM ciphertext, then the 16-byte tag
 * The associated data is "m365sync/v1", table, column, account id, row id
 * and the 13 header bytes, so nothing of the value can be moved or relabelled.
 */
#ifndef M365SYNC_KEYRING_H
#define M365SYNC_KEYRING_H

#include "postgres.h"

#include "envelope.h"		/* M365_ENVELOPE_OVERHEAD and the header layout */

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

/*
 * A keyed hash of value for matching without the clear value: HMAC-SHA256
 * under a key derived from the account's data key (so crypto-shredding the
 * account makes its hashes meaningless too), over purpose, a NUL and the
 * value, so one value hashes differently for each purpose. Returns a
 * palloc'd "hmac:" followed by 64 lowercase hex digits. Equal values of one
 * account and purpose give equal hashes; nothing else can be learnt without
 * the data key.
 */
#define M365_KEYED_HASH_PREFIX "hmac:"
extern char *m365_keyed_hash(int64 account_id, const char *purpose, const char *value, size_t len);

/* Drop the cached data key of one account (purge, rewrap) or of all (-1). */
extern void m365_forget_data_key(int64 account_id);

/*
 * Admin operations (sql_keys.c). m365_rewrap_data_keys rewraps every data key
 * under the current master key and returns how many; m365_destroy_data_key
 * deletes an account's data key (crypto-shredding) and wipes it from the
 * cache. Both act through SPI as the current user.
 */
extern int	m365_rewrap_data_keys(void);
extern void m365_destroy_data_key(int64 account_id);

#endif							/* M365SYNC_KEYRING_H */

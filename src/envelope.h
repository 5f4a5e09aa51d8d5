/*
 * envelope.h — the byte layout of m365sync's encrypted values and wrapped
 * data keys (envelope.c): header reading and writing and the associated
 * data that binds a value to its place. The layout itself is described in
 * keyring.h.
 *
 * Pure C: no postgres.h, no palloc, no ereport, no key material, so the fuzz
 * target and unit tests run the same header checks as keyring.c outside a
 * backend. It never decrypts; crypto.c does, with the associated data built
 * here.
 */
#ifndef M365SYNC_ENVELOPE_H
#define M365SYNC_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "crypto.h"

#define M365_ENVELOPE_VERSION	1
#define M365_ENVELOPE_HEADER	13	/* version, account id, generation */

/* Bytes an envelope adds to a plaintext of any length. */
#define M365_ENVELOPE_OVERHEAD	(M365_ENVELOPE_HEADER + M365_GCM_OVERHEAD)

/* Longest table or column name the associated data takes (NAMEDATALEN - 1). */
#define M365_ENVELOPE_NAME_MAX	63

/* Room for any value's associated data. */
#define M365_ENVELOPE_AAD_MAX	(12 + 2 * (M365_ENVELOPE_NAME_MAX + 1) + 16 + M365_ENVELOPE_HEADER)

/* Room for any wrapped data key's associated data (key ids are <= 63 bytes). */
#define M365_WRAP_AAD_MAX		(15 + 8 + 4 + 64)

typedef enum M365EnvelopeStatus
{
	M365_ENV_OK = 0,
	M365_ENV_NOT_ENVELOPE,		/* too short, or a version we do not know */
	M365_ENV_OTHER_ACCOUNT		/* header names another account */
} M365EnvelopeStatus;

typedef struct M365EnvelopeHeader
{
	int64_t		account_id;
	uint32_t	generation;
} M365EnvelopeHeader;

/* Big-endian integers as the formats store them. */
extern void m365_put_be64(uint8_t *p, uint64_t v);
extern uint64_t m365_get_be64(const uint8_t *p);
extern void m365_put_be32(uint8_t *p, uint32_t v);
extern uint32_t m365_get_be32(const uint8_t *p);

/* Write the 13 header bytes of a version-1 envelope. */
extern void m365_envelope_write_header(uint8_t *out, int64_t account_id, uint32_t generation);

/*
 * Check an envelope of len bytes against the account it is read for and
 * fill *hdr. NOT_ENVELOPE when len is below M365_ENVELOPE_OVERHEAD or the
 * version byte is unknown; OTHER_ACCOUNT when the header names another
 * account. The caller then checks the generation against its data key.
 */
extern M365EnvelopeStatus m365_envelope_read_header(const uint8_t *in, size_t len,
													int64_t account_id,
													M365EnvelopeHeader *hdr);

/*
 * Associated data of a value: "m365sync/v1", table, column, account id, row
 * id and the envelope header. aad must hold M365_ENVELOPE_AAD_MAX bytes.
 * Returns its length, or 0 when table or column is longer than
 * M365_ENVELOPE_NAME_MAX (nothing written then).
 */
extern size_t m365_envelope_value_aad(uint8_t *aad, const char *table, const char *column,
									  int64_t account_id, int64_t row_id,
									  const uint8_t *header);

/*
 * Associated data of a wrapped data key: "m365sync/dk/v1", account id,
 * generation and master key id. aad must hold M365_WRAP_AAD_MAX bytes.
 * Returns its length, or 0 when the key id is longer than 63 bytes.
 */
extern size_t m365_envelope_wrap_aad(uint8_t *aad, int64_t account_id, uint32_t generation,
									 const char *master_id);

#endif							/* M365SYNC_ENVELOPE_H */

/*
 * envelope.c — header and associated data of encrypted values and wrapped
 * data keys (see envelope.h).
 *
 * Pure byte layout: it reads and writes headers and builds associated data,
 * and must not decrypt, allocate or report. keyring.c turns its statuses
 * into ERRORs; the fuzz target calls it directly.
 */
#include <string.h>

#include "envelope.h"

void
m365_put_be64(uint8_t *p, uint64_t v)
{
	int			i;

	for (i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t) v;
}

uint64_t
m365_get_be64(const uint8_t *p)
{
	uint64_t	v = 0;
	int			i;

	for (i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

void
m365_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) (v >> 24);
	p[1] = (uint8_t) (v >> 16);
	p[2] = (uint8_t) (v >> 8);
	p[3] = (uint8_t) v;
}

uint32_t
m365_get_be32(const uint8_t *p)
{
	return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) | ((uint32_t) p[2] << 8) | p[3];
}

void
m365_envelope_write_header(uint8_t *out, int64_t account_id, uint32_t generation)
{
	out[0] = M365_ENVELOPE_VERSION;
	m365_put_be64(out + 1, (uint64_t) account_id);
	m365_put_be32(out + 9, generation);
}

M365EnvelopeStatus
m365_envelope_read_header(const uint8_t *in, size_t len, int64_t account_id,
						  M365EnvelopeHeader *hdr)
{
	memset(hdr, 0, sizeof(*hdr));
	if (in == NULL || len < M365_ENVELOPE_OVERHEAD || in[0] != M365_ENVELOPE_VERSION)
		return M365_ENV_NOT_ENVELOPE;
	hdr->account_id = (int64_t) m365_get_be64(in + 1);
	hdr->generation = m365_get_be32(in + 9);
	if (hdr->account_id != account_id)
		return M365_ENV_OTHER_ACCOUNT;
	return M365_ENV_OK;
}

size_t
m365_envelope_value_aad(uint8_t *aad, const char *table, const char *column,
						int64_t account_id, int64_t row_id, const uint8_t *header)
{
	size_t		tlen = strlen(table);
	size_t		clen = strlen(column);
	size_t		n;

	if (tlen > M365_ENVELOPE_NAME_MAX || clen > M365_ENVELOPE_NAME_MAX)
		return 0;
	memcpy(aad, "m365sync/v1", 12);	/* with its NUL */
	n = 12;
	memcpy(aad + n, table, tlen + 1);
	n += tlen + 1;
	memcpy(aad + n, column, clen + 1);
	n += clen + 1;
	m365_put_be64(aad + n, (uint64_t) account_id);
	n += 8;
	m365_put_be64(aad + n, (uint64_t) row_id);
	n += 8;
	memcpy(aad + n, header, M365_ENVELOPE_HEADER);
	return n + M365_ENVELOPE_HEADER;
}

size_t
m365_envelope_wrap_aad(uint8_t *aad, int64_t account_id, uint32_t generation,
					   const char *master_id)
{
	size_t		idlen = strlen(master_id);
	size_t		n;

	if (idlen > 63)
		return 0;
	memcpy(aad, "m365sync/dk/v1", 15);	/* with its NUL */
	n = 15;
	m365_put_be64(aad + n, (uint64_t) account_id);
	n += 8;
	m365_put_be32(aad + n, generation);
	n += 4;
	memcpy(aad + n, master_id, idlen + 1);
	return n + idlen + 1;
}

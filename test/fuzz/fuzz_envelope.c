/*
 * fuzz_envelope.c — libFuzzer target of the value envelope decoder: the
 * open path of keyring.c (m365_decrypt) and of a wrapped data key
 * (unwrap_data_key) done with the same pure-C pieces (src/envelope.c,
 * src/crypto.c, src/keyfile.c) and fixed test keys: header check against
 * the account, generation check, associated data, AES-GCM open.
 *
 * The first input byte picks the path: 0 a stored value (account 7,
 * generation 3, events.content of row 9); 1 a wrapped data key
 * "<master key id>\n<wrapped bytes>"; 2 a seal/open round trip of the rest,
 * then the same envelope with one byte changed, cut short or relabelled.
 *
 * Promises checked: truncated input, a wrong version, another account, a
 * wrong generation, an unknown master key id or any changed byte never
 * opens; a good envelope opens to its plaintext.
 */
#include "crypto.h"
#include "envelope.h"
#include "keyfile.h"
#include "fuzz.h"

#include "envelope_keys.h"

static M365KeySet keyset;
static M365GcmKey *gk;

/* keyring.c's m365_decrypt, minus the data key lookup: 0 when it opens. */
static int
open_value(const uint8_t *in, size_t len, int64_t account, uint32_t generation,
		   const char *table, const char *column, int64_t row, uint8_t *out)
{
	M365EnvelopeHeader hdr;
	uint8_t		aad[M365_ENVELOPE_AAD_MAX];
	size_t		aadlen;

	if (m365_envelope_read_header(in, len, account, &hdr) != M365_ENV_OK)
		return -1;
	FUZZ_CHECK(hdr.account_id == account && len >= M365_ENVELOPE_OVERHEAD);
	if (hdr.generation != generation)
		return -1;
	aadlen = m365_envelope_value_aad(aad, table, column, account, row, in);
	FUZZ_CHECK(aadlen > 0 && aadlen <= sizeof(aad));
	return m365_gcm_key_open(gk, aad, aadlen, in + M365_ENVELOPE_HEADER,
							 len - M365_ENVELOPE_HEADER, out) == M365_CRYPTO_OK ? 0 : -1;
}

/* keyring.c's unwrap_data_key: 0 when the wrapped key opens. */
static int
open_wrapped(const char *master_id, const uint8_t *wrapped, size_t len, uint8_t *key)
{
	const M365MasterKey *mk = m365_keyset_find(&keyset, master_id);
	uint8_t		aad[M365_WRAP_AAD_MAX];
	size_t		aadlen;

	if (mk == NULL)
		return -1;
	aadlen = m365_envelope_wrap_aad(aad, ACCOUNT, GENERATION, mk->id);
	FUZZ_CHECK(aadlen > 0 && aadlen <= sizeof(aad));
	return m365_unwrap_key(mk->key, aad, aadlen, wrapped, len, key) == M365_CRYPTO_OK ? 0 : -1;
}

static void
round_trip(const uint8_t *plain, size_t len, uint8_t salt)
{
	size_t		elen = len + M365_ENVELOPE_OVERHEAD;
	uint8_t    *env = malloc(elen);
	uint8_t    *out = malloc(len + 1);
	uint8_t		aad[M365_ENVELOPE_AAD_MAX];
	size_t		aadlen;
	size_t		pos;

	FUZZ_CHECK(env != NULL && out != NULL);
	m365_envelope_write_header(env, ACCOUNT, GENERATION);
	aadlen = m365_envelope_value_aad(aad, "events", "content", ACCOUNT, ROW, env);
	FUZZ_CHECK(m365_gcm_key_seal(gk, aad, aadlen, plain, len, env + M365_ENVELOPE_HEADER) == M365_CRYPTO_OK);

	FUZZ_CHECK(open_value(env, elen, ACCOUNT, GENERATION, "events", "content", ROW, out) == 0);
	FUZZ_CHECK(len == 0 || memcmp(out, plain, len) == 0);
	/* moved: another row, column, account or generation */
	FUZZ_CHECK(open_value(env, elen, ACCOUNT, GENERATION, "events", "content", ROW + 1, out) != 0);
	FUZZ_CHECK(open_value(env, elen, ACCOUNT, GENERATION, "conflicts", "lost", ROW, out) != 0);
	FUZZ_CHECK(open_value(env, elen, ACCOUNT + 1, GENERATION, "events", "content", ROW, out) != 0);
	FUZZ_CHECK(open_value(env, elen, ACCOUNT, GENERATION + 1, "events", "content", ROW, out) != 0);
	/* truncated */
	FUZZ_CHECK(open_value(env, elen - 1 - salt % elen, ACCOUNT, GENERATION, "events", "content", ROW, out) != 0);
	/* one byte changed */
	pos = (size_t) salt * 7919u % elen;
	env[pos] ^= (uint8_t) (salt | 1);
	FUZZ_CHECK(open_value(env, elen, ACCOUNT, GENERATION, "events", "content", ROW, out) != 0);
	free(env);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (gk == NULL)
	{
		char		err[128];

		FUZZ_CHECK(m365_keyfile_parse(keyfile_text, sizeof(keyfile_text) - 1, &keyset, err, sizeof(err)) == 0);
		gk = m365_gcm_key_new(data_key);
		FUZZ_CHECK(gk != NULL);
	}
	if (size == 0)
		return 0;

	switch (data[0] % 3)
	{
		case 0:
			{
				uint8_t    *out = malloc(size);

				FUZZ_CHECK(out != NULL);
				/* random bytes never pass GCM: only a seeded envelope may open */
				(void) open_value(data + 1, size - 1, ACCOUNT, GENERATION, "events", "content", ROW, out);
				free(out);
				break;
			}
		case 1:
			{
				const uint8_t *nl = memchr(data + 1, '\n', size - 1);
				size_t		idlen = nl ? (size_t) (nl - data - 1) : size - 1;
				char	   *id = fuzz_cstr(data + 1, idlen);
				uint8_t		key[M365_KEY_BYTES];

				if (nl != NULL &&
					open_wrapped(id, nl + 1, size - 1 - idlen - 1, key) == 0)
				{
					/* only a seeded wrap of the test data key under k1 or k2 opens */
					FUZZ_CHECK(memcmp(key, data_key, sizeof(key)) == 0);
					FUZZ_CHECK(strcmp(id, "k1") == 0 || strcmp(id, "k2") == 0);
				}
				free(id);
				break;
			}
		default:
			round_trip(data + 1, size - 1, data[size - 1]);
			break;
	}
	return 0;
}

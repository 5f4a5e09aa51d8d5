/*
 * gen_envelope_seeds.c — writes the seed corpus of the envelope target
 * (corpus/envelope/gen-*) with the fixed test keys of envelope_keys.h:
 * good value envelopes and wrapped keys, and the same cut short, with a
 * wrong version, for another account, another generation and an unknown
 * master key id. `make seeds` runs it; nonces are random, so the bytes
 * differ from run to run but the cases do not.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "keyfile.h"
#include "envelope_keys.h"

static const char *dir;

static void
put(const char *name, uint8_t mode, const uint8_t *prefix, size_t plen, const uint8_t *b, size_t n)
{
	char		path[512];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/gen-%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL)
	{
		perror(path);
		exit(1);
	}
	fwrite(&mode, 1, 1, f);
	if (plen)
		fwrite(prefix, 1, plen, f);
	fwrite(b, 1, n, f);
	fclose(f);
}

static size_t
seal(const char *text, int64_t account, uint32_t generation, uint8_t *env)
{
	size_t		len = strlen(text);
	uint8_t		aad[M365_ENVELOPE_AAD_MAX];
	size_t		aadlen;

	m365_envelope_write_header(env, account, generation);
	aadlen = m365_envelope_value_aad(aad, "events", "content", account, ROW, env);
	if (m365_gcm_seal(data_key, aad, aadlen, (const uint8_t *) text, len, env + M365_ENVELOPE_HEADER) != M365_CRYPTO_OK)
		exit(1);
	return len + M365_ENVELOPE_OVERHEAD;
}

int
main(int argc, char **argv)
{
	uint8_t		env[512];
	uint8_t		wrapped[M365_WRAPPED_KEY_BYTES];
	uint8_t		aad[M365_WRAP_AAD_MAX];
	M365KeySet	set;
	char		err[128];
	size_t		n;
	int			i;

	dir = argc > 1 ? argv[1] : "corpus/envelope";
	if (m365_keyfile_parse(keyfile_text, sizeof(keyfile_text) - 1, &set, err, sizeof(err)) != 0)
		return 1;

	n = seal("{\"subject\": \"Standup\", \"start\": {}}", ACCOUNT, GENERATION, env);
	put("value-good", 0, NULL, 0, env, n);
	put("value-truncated", 0, NULL, 0, env, n - 1);
	put("value-header-only", 0, NULL, 0, env, M365_ENVELOPE_HEADER);
	put("value-empty", 0, NULL, 0, env, 0);
	env[0] = 2;
	put("value-version2", 0, NULL, 0, env, n);
	env[0] = 1;
	n = seal("x", ACCOUNT + 1, GENERATION, env);
	put("value-other-account", 0, NULL, 0, env, n);
	n = seal("x", ACCOUNT, GENERATION + 1, env);
	put("value-other-generation", 0, NULL, 0, env, n);
	n = seal("", ACCOUNT, GENERATION, env);
	put("value-empty-plain", 0, NULL, 0, env, n);
	put("roundtrip-text", 2, NULL, 0, (const uint8_t *) "hello, world", 12);

	for (i = 0; i < set.nkeys; i++)
	{
		char		name[64];
		char		prefix[80];

		n = m365_envelope_wrap_aad(aad, ACCOUNT, GENERATION, set.keys[i].id);
		if (m365_wrap_key(set.keys[i].key, aad, n, data_key, wrapped) != M365_CRYPTO_OK)
			return 1;
		snprintf(prefix, sizeof(prefix), "%s\n", set.keys[i].id);
		snprintf(name, sizeof(name), "wrapped-%s", set.keys[i].id);
		put(name, 1, (const uint8_t *) prefix, strlen(prefix), wrapped, sizeof(wrapped));
		snprintf(name, sizeof(name), "wrapped-%s-truncated", set.keys[i].id);
		put(name, 1, (const uint8_t *) prefix, strlen(prefix), wrapped, sizeof(wrapped) - 1);
	}
	/* the k1 wrap presented as k2's, and under an unknown id */
	put("wrapped-wrong-id", 1, (const uint8_t *) "k2\n", 3, wrapped, sizeof(wrapped));
	put("wrapped-unknown-id", 1, (const uint8_t *) "k9\n", 3, wrapped, sizeof(wrapped));
	wrapped[0] = M365_WRAP_VERSION + 1;
	put("wrapped-version2", 1, (const uint8_t *) "k1\n", 3, wrapped, sizeof(wrapped));
	return 0;
}

/*
 * fuzz_keyfile.c — libFuzzer target of the master key file parser
 * (src/keyfile.c) as masterkey.c calls it, on the bytes of a key file.
 *
 * Promises checked: on error the key set is wiped and the message is
 * terminated and quotes no run of 8 or more hex digits that follows a colon
 * in the input (no part of a key); on success every key is found by its id
 * and keys[0] is the first key line.
 */
#include <ctype.h>

#include "keyfile.h"
#include "fuzz.h"

/*
 * Does err contain 8 consecutive hex digits that follow a colon in text
 * (key material) and are not also part of a line's key id (which errors
 * may name)?
 */
static int
leaks_key(const char *err, const uint8_t *text, size_t len)
{
	size_t		i;
	char	   *ids = calloc(2 * len + 2, 1);
	size_t		nids = 0;
	int			leak = 0;
	int			at_start = 1;

	FUZZ_CHECK(ids != NULL);
	for (i = 0; i < len; i++)
	{
		if (at_start)
		{
			while (i < len && text[i] != ':' && text[i] != '\n')
			{
				ids[nids++] = text[i] ? (char) text[i] : ' ';
				i++;
			}
			ids[nids++] = '\n';
			at_start = 0;
		}
		if (i < len && text[i] == '\n')
			at_start = 1;
	}

	for (i = 0; i < len; i++)
	{
		size_t		start,
					j;

		if (text[i] != ':')
			continue;
		start = i + 1;
		for (j = start; j < len && text[j] != '\n'; j++)
		{
			if (j - start >= 7 && isxdigit(text[j]))
			{
				char		frag[9];
				size_t		k;
				int			allhex = 1;

				memcpy(frag, text + j - 7, 8);
				frag[8] = '\0';
				for (k = 0; k < 8; k++)
					allhex &= isxdigit((unsigned char) frag[k]) != 0;
				if (allhex && strstr(err, frag) != NULL && strstr(ids, frag) == NULL)
					leak = 1;
			}
		}
	}
	free(ids);
	return leak;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	M365KeySet *set = malloc(sizeof(M365KeySet));
	char		err[256];
	int			i;
	static const uint8_t zero[M365_KEY_BYTES];

	FUZZ_CHECK(set != NULL);
	memset(err, 0x5a, sizeof(err));
	if (m365_keyfile_parse((const char *) data, size, set, err, sizeof(err)) == 0)
	{
		FUZZ_CHECK(set->nkeys >= 1 && set->nkeys <= M365_MAX_MASTER_KEYS);
		for (i = 0; i < set->nkeys; i++)
		{
			FUZZ_CHECK(fuzz_terminated(set->keys[i].id, sizeof(set->keys[i].id)));
			FUZZ_CHECK(m365_keyset_find(set, set->keys[i].id) == &set->keys[i]);
		}
		m365_keyset_wipe(set);
		FUZZ_CHECK(set->nkeys == 0);
	}
	else
	{
		FUZZ_CHECK(fuzz_terminated(err, sizeof(err)));
		FUZZ_CHECK(!leaks_key(err, data, size));
		for (i = 0; i < M365_MAX_MASTER_KEYS; i++)
			FUZZ_CHECK(memcmp(set->keys[i].key, zero, sizeof(zero)) == 0);
	}
	FUZZ_CHECK(m365_keyset_find(set, "no-such-key") == NULL || set->nkeys > 0);
	free(set);
	return 0;
}

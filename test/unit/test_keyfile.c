/*
 * test_keyfile.c — unit tests of the master key file parser (src/keyfile.c):
 * a table of inputs with the expected outcome side by side. Every error must
 * name its line and must never contain any part of a key.
 */
#include <string.h>

#include "keyfile.h"
#include "tap.h"

#define K1 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define K2 "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f"
#define K2UP "F0E1D2C3B4A5968778695A4B3C2D1E0FF0E1D2C3B4A5968778695A4B3C2D1E0F"

typedef struct Case
{
	const char *name;
	const char *text;
	int			nkeys;			/* expected keys, or -1 for an error */
	const char *first_id;		/* id of keys[0] when ok */
	const char *error;			/* substring of the error */
} Case;

static const Case cases[] = {
	{"one key with newline", "k1:" K1 "\n", 1, "k1", NULL},
	{"one key without final newline", "k1:" K1, 1, "k1", NULL},
	{"first line is the current key", "new:" K2 "\nold:" K1 "\n", 2, "new", NULL},
	{"CRLF line ends", "k1:" K1 "\r\nk2:" K2 "\r\n", 2, "k1", NULL},
	{"comments and blank lines are skipped", "# rotated 2024\n\nk1:" K1 "\n  \n", 1, "k1", NULL},
	{"upper-case hex", "k2:" K2UP "\n", 1, "k2", NULL},
	{"id with dots, dashes, underscores", "prod-2024_01.a:" K1 "\n", 1, "prod-2024_01.a", NULL},
	{"empty file", "", -1, NULL, "holds no key"},
	{"only comments", "# nothing\n\n", -1, NULL, "holds no key"},
	{"bad hex on line 2", "k1:" K1 "\nk2:" "g0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f\n",
	 -1, NULL, "line 2: key \"k2\" has a character that is not a hex digit (column 4)"},
	{"bad hex deep in the key", "k1:" "0011223344556677889zaabbccddeeff00112233445566778899aabbccddeeff\n",
	 -1, NULL, "line 1: key \"k1\" has a character that is not a hex digit (column 23)"},
	{"63 hex digits", "k1:" "0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
	 -1, NULL, "line 1: key \"k1\" has 63 characters after the colon, expected 64 hex digits"},
	{"65 hex digits", "k1:" K1 "0\n", -1, NULL, "line 1: key \"k1\" has 65 characters"},
	{"empty key", "k1:\n", -1, NULL, "line 1: key \"k1\" has 0 characters"},
	{"duplicate id", "a:" K1 "\nb:" K2 "\na:" K2 "\n", -1, NULL, "line 3: key id \"a\" appears a second time"},
	{"line numbers count comments", "# c\n\nk1:" K1 "\nbroken\n", -1, NULL, "line 4: expected <key id>:<64 hex digits>"},
	{"missing colon", K1 "\n", -1, NULL, "line 1: expected <key id>:<64 hex digits>"},
	{"empty id", ":" K1 "\n", -1, NULL, "line 1: key id is empty"},
	{"id with a space", "my key:" K1 "\n", -1, NULL, "line 1: key id may contain only"},
	{"trailing space", "k1:" K1 " \n", -1, NULL, "line 1: leading or trailing white space"},
	{"leading space", " k1:" K1 "\n", -1, NULL, "line 1: leading or trailing white space"},
	{"all-zero key", "k1:" "0000000000000000000000000000000000000000000000000000000000000000\n",
	 -1, NULL, "line 1: key \"k1\" is all zeros"},
	{"id too long", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:" K1 "\n",
	 -1, NULL, "line 1: key id is longer than 63 characters"},
};

/* No 6-hex-digit run of any key used here may show up in an error. */
static int
leaks_key(const char *err)
{
	static const char *keys[] = {K1, K2, K2UP};
	size_t		k,
				i;

	for (k = 0; k < 3; k++)
		for (i = 0; i + 6 <= 64; i++)
		{
			char		piece[7];

			memcpy(piece, keys[k] + i, 6);
			piece[6] = '\0';
			if (strstr(err, piece))
				return 1;
		}
	return 0;
}

int
main(void)
{
	size_t		i;
	M365KeySet	set;
	char		err[256];

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		const Case *c = &cases[i];
		int			rc = m365_keyfile_parse(c->text, strlen(c->text), &set, err, sizeof(err));

		if (c->nkeys >= 0)
			ok(rc == 0 && set.nkeys == c->nkeys && strcmp(set.keys[0].id, c->first_id) == 0,
			   "%s: %d key(s), current \"%s\"", c->name, c->nkeys, c->first_id);
		else
			ok(rc == -1 && strstr(err, c->error) != NULL && !leaks_key(err) && set.nkeys == 0,
			   "%s: error \"%s\" (got \"%s\")", c->name, c->error, err);
	}

	/* key bytes are decoded, and find() looks them up by id */
	m365_keyfile_parse("new:" K2 "\nold:" K1 "\n", 4 + 64 + 1 + 4 + 64 + 1, &set, err, sizeof(err));
	ok(set.keys[1].key[0] == 0x00 && set.keys[1].key[1] == 0x11 && set.keys[1].key[31] == 0xff &&
	   set.keys[0].key[0] == 0xf0, "hex is decoded into key bytes");
	ok(m365_keyset_find(&set, "old") == &set.keys[1] && m365_keyset_find(&set, "gone") == NULL,
	   "keys are found by id");
	m365_keyset_wipe(&set);
	{
		size_t		j;
		int			zero = 1;

		for (j = 0; j < sizeof(set.keys[1].key); j++)
			zero &= set.keys[1].key[j] == 0;
		ok(set.nkeys == 0 && zero, "wipe clears every key");
	}

	/* a failed parse leaves nothing of the good lines before it */
	m365_keyfile_parse("k1:" K1 "\nk1:" K2 "\n", 2 * 68, &set, err, sizeof(err));
	ok(set.nkeys == 0 && set.keys[0].key[0] == 0 && set.keys[0].key[1] == 0,
	   "a failed parse keeps no half-read key");

	/* NUL byte inside the text */
	{
		char		text[80] = "k1:" K1 "\n";

		text[10] = '\0';
		ok(m365_keyfile_parse(text, 68, &set, err, sizeof(err)) == -1 &&
		   strstr(err, "line 1: contains a NUL byte") != NULL, "a NUL byte is refused");
	}

	/* too many keys */
	{
		char		text[40 * 80];
		size_t		len = 0;
		int			k;

		for (k = 0; k < M365_MAX_MASTER_KEYS + 1; k++)
			len += sprintf(text + len, "k%d:%s\n", k, K1);
		ok(m365_keyfile_parse(text, len, &set, err, sizeof(err)) == -1 &&
		   strstr(err, "line 33: more than 32 keys") != NULL, "more than 32 keys are refused");
	}

	/* a huge file is refused unread */
	ok(m365_keyfile_parse("x", M365_KEYFILE_MAX_BYTES + 1, &set, err, sizeof(err)) == -1 &&
	   strstr(err, "larger than") != NULL, "a file over 64 kB is refused");

	/* a tiny error buffer is never overrun */
	{
		char		small[8];

		ok(m365_keyfile_parse("", 0, &set, small, sizeof(small)) == -1 && strlen(small) == 7,
		   "errors are truncated to the buffer");
	}
	return done_testing();
}

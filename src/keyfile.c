/*
 * keyfile.c — strict parser of the master key file (see keyfile.h).
 *
 * Pure C: it reads a buffer, never a file, and reports errors as text that
 * names the line number and, where useful, the key id or a column — never a
 * character of a key. Half-parsed keys are wiped before returning an error.
 */
#include "keyfile.h"

#include <stdio.h>
#include <string.h>

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int
id_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

const M365MasterKey *
m365_keyset_find(const M365KeySet *set, const char *id)
{
	int			i;

	for (i = 0; i < set->nkeys; i++)
		if (strcmp(set->keys[i].id, id) == 0)
			return &set->keys[i];
	return NULL;
}

void
m365_keyset_wipe(M365KeySet *set)
{
	m365_secure_zero(set, sizeof(*set));
	set->nkeys = 0;
}

/* Parse one non-blank line (without its newline) into *key. */
static int
parse_line(const char *line, size_t len, int lineno, const M365KeySet *seen,
		   M365MasterKey *key, char *err, size_t errlen)
{
	const char *colon = memchr(line, ':', len);
	size_t		idlen;
	size_t		hexlen;
	const char *hex;
	size_t		i;
	uint8_t		nonzero = 0;
	const M365MasterKey *dup;

	if (colon == NULL)
	{
		snprintf(err, errlen, "line %d: expected <key id>:<64 hex digits>", lineno);
		return -1;
	}
	idlen = colon - line;
	if (idlen == 0)
	{
		snprintf(err, errlen, "line %d: key id is empty", lineno);
		return -1;
	}
	if (idlen > M365_KEY_ID_MAX)
	{
		snprintf(err, errlen, "line %d: key id is longer than %d characters",
				 lineno, M365_KEY_ID_MAX);
		return -1;
	}
	for (i = 0; i < idlen; i++)
		if (!id_char(line[i]))
		{
			snprintf(err, errlen,
					 "line %d: key id may contain only letters, digits, '.', '_' and '-' (column %zu)",
					 lineno, i + 1);
			return -1;
		}
	memcpy(key->id, line, idlen);
	key->id[idlen] = '\0';

	dup = m365_keyset_find(seen, key->id);
	if (dup != NULL)
	{
		snprintf(err, errlen, "line %d: key id \"%s\" appears a second time",
				 lineno, key->id);
		return -1;
	}

	hex = colon + 1;
	hexlen = len - idlen - 1;
	if (hexlen != 2 * M365_KEY_BYTES)
	{
		snprintf(err, errlen,
				 "line %d: key \"%s\" has %zu characters after the colon, expected %d hex digits",
				 lineno, key->id, hexlen, 2 * M365_KEY_BYTES);
		return -1;
	}
	for (i = 0; i < M365_KEY_BYTES; i++)
	{
		int			hi = hex_value(hex[2 * i]);
		int			lo = hex_value(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
		{
			snprintf(err, errlen,
					 "line %d: key \"%s\" has a character that is not a hex digit (column %zu)",
					 lineno, key->id, idlen + 2 + 2 * i + (hi < 0 ? 0 : 1));
			return -1;
		}
		key->key[i] = (uint8_t) (hi << 4 | lo);
		nonzero |= key->key[i];
	}
	if (nonzero == 0)
	{
		snprintf(err, errlen, "line %d: key \"%s\" is all zeros", lineno, key->id);
		return -1;
	}
	return 0;
}

int
m365_keyfile_parse(const char *text, size_t len, M365KeySet *out,
				   char *err, size_t errlen)
{
	size_t		pos = 0;
	int			lineno = 0;

	m365_keyset_wipe(out);
	if (errlen > 0)
		err[0] = '\0';
	if (len > M365_KEYFILE_MAX_BYTES)
	{
		snprintf(err, errlen, "key file is larger than %d bytes", M365_KEYFILE_MAX_BYTES);
		return -1;
	}

	while (pos < len)
	{
		const char *line = text + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t		linelen = nl ? (size_t) (nl - line) : len - pos;
		size_t		i;
		int			blank = 1;

		pos += linelen + (nl ? 1 : 0);
		lineno++;

		if (linelen > 0 && line[linelen - 1] == '\r')
			linelen--;
		if (memchr(line, '\0', linelen) != NULL)
		{
			snprintf(err, errlen, "line %d: contains a NUL byte", lineno);
			goto fail;
		}
		for (i = 0; i < linelen; i++)
			if (line[i] != ' ' && line[i] != '\t')
				blank = 0;
		if (blank || line[0] == '#')
			continue;
		if (line[0] == ' ' || line[0] == '\t' ||
			line[linelen - 1] == ' ' || line[linelen - 1] == '\t')
		{
			snprintf(err, errlen, "line %d: leading or trailing white space", lineno);
			goto fail;
		}
		if (out->nkeys == M365_MAX_MASTER_KEYS)
		{
			snprintf(err, errlen, "line %d: more than %d keys", lineno, M365_MAX_MASTER_KEYS);
			goto fail;
		}
		if (parse_line(line, linelen, lineno, out, &out->keys[out->nkeys], err, errlen) != 0)
			goto fail;
		out->nkeys++;
	}

	if (out->nkeys == 0)
	{
		snprintf(err, errlen, "key file holds no key (expected lines <key id>:<64 hex digits>)");
		goto fail;
	}
	return 0;

fail:
	m365_keyset_wipe(out);
	return -1;
}

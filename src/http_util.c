/*
 * http_util.c — pure-C helpers of the HTTP layer: percent-encoding, the
 * endpoint name that error messages show, Retry-After, request ids and
 * reading a whole file (the CA bundles).
 *
 * No postgres.h and no curl here, so unit tests and fuzz targets run these
 * outside a backend. Results are malloc'd; nothing here logs or keeps state.
 * The endpoint name is what every HTTP error message shows, so it must never
 * carry a query string (codes, tokens, states live there) or an address.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE				/* timegm, stpcpy */
#endif
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "http_util.h"

static int
is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

char *
m365_url_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t		len = strlen(s);
	char	   *out = malloc(len * 3 + 1);
	char	   *p = out;

	if (out == NULL)
		return NULL;
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (is_unreserved(c))
			*p++ = (char) c;
		else
		{
			*p++ = '%';
			*p++ = hex[c >> 4];
			*p++ = hex[c & 15];
		}
	}
	*p = '\0';
	return out;
}

char *
m365_url_with_params(const char *prefix, const char *const *pairs)
{
	size_t		cap = strlen(prefix) + 1;
	size_t		i;
	char	   *out;
	char	   *p;
	int			first = 1;

	for (i = 0; pairs[i] != NULL; i += 2)
		if (pairs[i + 1] != NULL)
			cap += 3 * (strlen(pairs[i]) + strlen(pairs[i + 1])) + 2;
	out = malloc(cap);
	if (out == NULL)
		return NULL;
	p = stpcpy(out, prefix);
	for (i = 0; pairs[i] != NULL; i += 2)
	{
		char	   *k,
				   *v;

		if (pairs[i + 1] == NULL)
			continue;
		k = m365_url_encode(pairs[i]);
		v = m365_url_encode(pairs[i + 1]);
		if (k == NULL || v == NULL)
		{
			free(k);
			free(v);
			free(out);
			return NULL;
		}
		if (!first)
			*p++ = '&';
		first = 0;
		p = stpcpy(p, k);
		*p++ = '=';
		p = stpcpy(p, v);
		free(k);
		free(v);
	}
	*p = '\0';
	return out;
}

int
m365_url_is_https(const char *url)
{
	return url != NULL && strncasecmp(url, "https://", 8) == 0 &&
		url[8] != '\0' && url[8] != '/' && url[8] != ':';
}

/* Does [seg, seg+len) look like an e-mail address? */
static int
segment_is_address(const char *seg, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
	{
		if (seg[i] == '@')
			return 1;
		if (seg[i] == '%' && i + 2 < len && seg[i + 1] == '4' && seg[i + 2] == '0')
			return 1;
	}
	return 0;
}

static void
append(char *out, size_t outlen, size_t *pos, const char *s, size_t n)
{
	while (n-- > 0 && *pos + 1 < outlen)
		out[(*pos)++] = *s++;
	out[*pos] = '\0';
}

void
m365_url_endpoint(const char *url, char *out, size_t outlen)
{
	const char *p;
	const char *host;
	const char *end;
	size_t		pos = 0;

	if (outlen == 0)
		return;
	out[0] = '\0';
	if (url == NULL || (p = strstr(url, "://")) == NULL)
	{
		append(out, outlen, &pos, "(invalid URL)", 13);
		return;
	}
	host = p + 3;
	end = host + strcspn(host, "/?#");
	/* Drop user info: everything up to the last '@' of the authority. */
	for (p = host; p < end; p++)
		if (*p == '@')
			host = p + 1;
	/* Drop the port, keeping an IPv6 literal whole. */
	p = host;
	if (*p == '[')
		p = memchr(host, ']', end - host) ? (const char *) memchr(host, ']', end - host) + 1 : end;
	else
		while (p < end && *p != ':')
			p++;
	if (segment_is_address(host, p - host))
		append(out, outlen, &pos, "{mailbox}", 9);	/* "%40" in a host name */
	else
		append(out, outlen, &pos, host, p - host);

	/* The path, segment by segment, up to the query or fragment. */
	p = end;
	while (*p == '/')
	{
		const char *seg = p + 1;
		size_t		len = strcspn(seg, "/?#");

		append(out, outlen, &pos, "/", 1);
		if (segment_is_address(seg, len))
			append(out, outlen, &pos, "{mailbox}", 9);
		else
			append(out, outlen, &pos, seg, len);
		p = seg + len;
	}
}

/* Month name → 0..11, or -1. */
static int
month_index(const char *m)
{
	static const char *const months[] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
	};
	int			i;

	for (i = 0; i < 12; i++)
		if (strncasecmp(m, months[i], 3) == 0)
			return i;
	return -1;
}

/*
 * HTTP-date (RFC 9110 §5.6.7): IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT",
 * RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT", asctime "Sun Nov  6 08:49:37 1994".
 */
static int
parse_http_date(const char *s, time_t *out)
{
	struct tm	tm;
	char		wday[16],
				mon[4],
				zone[4];
	int			day,
				year,
				hh,
				mm,
				ss,
				n = 0;
	int			m;

	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%15[A-Za-z], %2d %3s %4d %2d:%2d:%2d %3s%n",
			   wday, &day, mon, &year, &hh, &mm, &ss, zone, &n) == 8 && n > 0)
	{
		if (strcmp(zone, "GMT") != 0)
			return 0;
	}
	else if (n = 0, sscanf(s, "%15[A-Za-z], %2d-%3s-%2d %2d:%2d:%2d %3s%n",
						   wday, &day, mon, &year, &hh, &mm, &ss, zone, &n) == 8 && n > 0)
	{
		if (strcmp(zone, "GMT") != 0)
			return 0;
		/* RFC 9110: a two-digit year more than 50 years ahead is in the past. */
		year += (year < 70) ? 2000 : 1900;
	}
	else if (n = 0, sscanf(s, "%15[A-Za-z] %3s %2d %2d:%2d:%2d %4d%n",
						   wday, mon, &day, &hh, &mm, &ss, &year, &n) == 7 && n > 0)
		;
	else
		return 0;

	/* Nothing but blanks may follow. */
	for (s += n; *s; s++)
		if (!isspace((unsigned char) *s))
			return 0;
	if ((m = month_index(mon)) < 0 || day < 1 || day > 31 || hh > 23 || mm > 59 ||
		ss > 60 || year < 1970 || year > 9999)
		return 0;
	tm.tm_year = year - 1900;
	tm.tm_mon = m;
	tm.tm_mday = day;
	tm.tm_hour = hh;
	tm.tm_min = mm;
	tm.tm_sec = ss;
	*out = timegm(&tm);
	return *out != (time_t) -1;
}

#define RETRY_AFTER_MAX_S 86400.0

int
m365_parse_retry_after(const char *value, time_t now, double *seconds)
{
	const char *p = value;
	double		v = 0;
	int			digits = 0;
	time_t		when;

	if (value == NULL)
		return 0;
	while (isspace((unsigned char) *p))
		p++;
	if (isdigit((unsigned char) *p))
	{
		const char *q = p;
		double		scale = 0.1;

		while (isdigit((unsigned char) *q))
		{
			if (v < 1e9)
				v = v * 10 + (*q - '0');
			q++;
			digits++;
		}
		if (*q == '.')
		{
			q++;
			if (!isdigit((unsigned char) *q))
				return 0;
			while (isdigit((unsigned char) *q))
			{
				v += (*q - '0') * scale;
				scale /= 10;
				q++;
			}
		}
		while (isspace((unsigned char) *q))
			q++;
		if (*q == '\0' && digits > 0)
		{
			*seconds = v > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : v;
			return 1;
		}
		/* An HTTP-date starts with a day name, never with a digit. */
		return 0;
	}
	if (!parse_http_date(p, &when))
		return 0;
	v = difftime(when, now);
	if (v < 0)
		v = 0;
	*seconds = v > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : v;
	return 1;
}

int
m365_header_value(const char *line, size_t n, const char *name,
				  const char **value, size_t *vlen)
{
	const char *colon = memchr(line, ':', n);
	size_t		nl = strlen(name);
	const char *v;
	const char *end;

	if (colon == NULL || (size_t) (colon - line) != nl || strncasecmp(line, name, nl) != 0)
		return 0;
	v = colon + 1;
	end = line + n;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	*value = v;
	*vlen = (size_t) (end - v);
	return 1;
}

int
m365_header_is_status_line(const char *line, size_t n)
{
	return n >= 5 && strncmp(line, "HTTP/", 5) == 0;
}

void
m365_format_uuid(const unsigned char bytes[16], char out[37])
{
	unsigned char b[16];

	memcpy(b, bytes, 16);
	b[6] = (b[6] & 0x0f) | 0x40;	/* version 4 */
	b[8] = (b[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
	snprintf(out, 37,
			 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
			 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
			 b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* Read a whole file into malloc'd memory; NULL on failure (see http_util.h). */
char *
m365_read_file(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	char	   *buf = NULL;
	size_t		cap = 0,
				n = 0,
				r;

	if (f == NULL)
		return NULL;
	for (;;)
	{
		if (n + 65536 > cap)
		{
			char	   *nb = realloc(buf, cap = n + 65536 * 2);

			if (nb == NULL)
			{
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0)
			break;
	}
	if (ferror(f))
	{
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	*len = n;
	return buf;
}

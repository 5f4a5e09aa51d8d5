/*
 * http_util.h — pure-C helpers of the HTTP layer (http_util.c): URL and form
 * encoding, the endpoint name used in messages, Retry-After parsing and
 * request ids. No postgres.h, no curl, no allocation through palloc: unit
 * tests and fuzz targets call these outside a backend. Functions that return
 * strings return malloc'd memory the caller frees (NULL on out of memory).
 */
#ifndef M365SYNC_HTTP_UTIL_H
#define M365SYNC_HTTP_UTIL_H

#include <stddef.h>
#include <time.h>

/*
 * Percent-encode every byte outside RFC 3986's unreserved set
 * (ALPHA DIGIT - . _ ~). Suitable for query values, form values and path
 * segments alike. Returns malloc'd NUL-terminated text.
 */
extern char *m365_url_encode(const char *s);

/*
 * Append "key=value" pairs, percent-encoded and joined with '&', to prefix
 * (e.g. "https://h/p?" or "" for a form body). pairs is a NULL-terminated
 * array of key, value, key, value, ...; a NULL value skips its pair.
 * Returns malloc'd text.
 */
extern char *m365_url_with_params(const char *prefix, const char *const *pairs);

/*
 * The endpoint a URL names, fit for an error message: "host/path" without
 * scheme, user info, port, query or fragment, with any path segment that
 * looks like an address (contains '@' or "%40") replaced by "{mailbox}", cut
 * to outlen-1 bytes. Never fails; a malformed URL yields "(invalid URL)".
 */
extern void m365_url_endpoint(const char *url, char *out, size_t outlen);

/* True when url starts with "https://" (case-insensitive) and has a host. */
extern int	m365_url_is_https(const char *url);

/*
 * Parse a Retry-After value: delay-seconds ("120"), fractional seconds as
 * Graph sends them ("2.128") or an HTTP-date (IMF-fixdate, RFC 850 or
 * asctime form), relative to now. On success stores the delay in seconds
 * (never negative, capped at one day) and returns 1; returns 0 when the
 * value is not one of those forms.
 */
extern int	m365_parse_retry_after(const char *value, time_t now, double *seconds);

/*
 * One raw response header line as curl hands it over ("Name: value\r\n",
 * not NUL-terminated, n bytes). When the line's name is `name`
 * (case-insensitive, nothing between name and colon) stores the value
 * without leading blanks and trailing CR, LF and spaces in *value / *vlen
 * (pointing into line) and returns 1; otherwise returns 0.
 */
extern int	m365_header_value(const char *line, size_t n, const char *name,
							  const char **value, size_t *vlen);

/* True when a header line starts a new response ("HTTP/..."), e.g. after 100 Continue. */
extern int	m365_header_is_status_line(const char *line, size_t n);

/* Format 16 random bytes as a version-4 UUID (37 bytes with the NUL). */
extern void m365_format_uuid(const unsigned char bytes[16], char out[37]);

/* Read a whole file into malloc'd memory (*len bytes); NULL on any failure. */
extern char *m365_read_file(const char *path, size_t *len);

#endif							/* M365SYNC_HTTP_UTIL_H */

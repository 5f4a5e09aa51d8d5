/*
 * http_ca.h — the trust store a transfer hands curl when m365sync.ca_file
 * is set (http_ca.c), for http.c only.
 */
#ifndef M365SYNC_HTTP_CA_H
#define M365SYNC_HTTP_CA_H

#include "postgres.h"

typedef struct M365CaBundle
{
	const char *file;			/* the bundle as a file (CURLOPT_CAINFO), or NULL */
	const char *data;			/* else the bundle in memory (CURLOPT_CAINFO_BLOB), or NULL */
	size_t		len;
} M365CaBundle;

/*
 * The system bundle at system_path plus m365sync.ca_file, built again when
 * the file changes (path, mtime, size). Both fields NULL when ca_file is
 * unset (curl's own default store). Returns false when ca_file is set but
 * unreadable. What it points to stays until the next call.
 */
extern bool m365_http_ca_bundle(const char *system_path, M365CaBundle *out);

#endif							/* M365SYNC_HTTP_CA_H */

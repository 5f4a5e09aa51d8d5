/*
 * http_transfer.h — private to http.c and http_stream.c, the two files that
 * include curl.h: one transfer's state and the steps both drive loops share
 * (http.c: start, answer, release, the multi handles; http_stream.c: the
 * stream over them).
 */
#ifndef M365SYNC_HTTP_TRANSFER_H
#define M365SYNC_HTTP_TRANSFER_H

#include "postgres.h"

#include <curl/curl.h>

#include "http.h"

/* How long a drive loop waits in curl_multi_poll before checking interrupts. */
#define M365_HTTP_POLL_MS 100

/* One transfer in flight: malloc'd, freed by m365_http_release_transfer(). */
typedef struct M365HttpTransfer
{
	M365HttpRequest *req;
	CURL	   *easy;
	struct curl_slist *headers;
	bool		added;			/* to multi */
	CURLM	   *multi;			/* the multi handle it was added to */
	bool		done;
	char	   *buf;
	size_t		len;
	size_t		cap;
	size_t		max;
	bool		too_large;
	char	   *content_type;
	char	   *location;
	char	   *retry_after;
	char	   *request_id;
	char		errbuf[CURL_ERROR_SIZE];
} M365HttpTransfer;

/*
 * Streams running in this backend (http_stream.c counts them): while one
 * runs, m365_http_multi_for hands out a separate multi handle.
 */
extern int	m365_http_stream_depth;

/* The multi handle for a call with this many transfers in flight. */
extern CURLM *m365_http_multi_for(int parallel);

/*
 * Set t up and add it to multi; false when set-up failed, in which case t's
 * answer (the failure) is already in its response and t is released.
 */
extern bool m365_http_start_transfer(CURLM *multi, M365HttpTransfer *t, MemoryContext cxt);

/* curl finished t with code: its answer into cxt, then t released. */
extern void m365_http_transfer_answered(M365HttpTransfer *t, CURLcode code, MemoryContext cxt);

/* Free t's curl side and buffers; safe on a released or never-started t. */
extern void m365_http_release_transfer(M365HttpTransfer *t);

#endif							/* M365SYNC_HTTP_TRANSFER_H */

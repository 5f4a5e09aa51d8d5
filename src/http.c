/*
 * http.c — libcurl behind a small request/response API (see http.h): a
 * transfer's set-up (TLS, headers, limits), its callbacks, the multi
 * handles, and the single and parallel calls. The stream of requests
 * (m365_http_perform_stream) drives these transfers from http_stream.c;
 * http_transfer.h is what the two share. They are the only files that
 * include curl.h.
 *
 * Memory: curl and everything it touches (easy handles, header lists,
 * receive buffers) live in malloc'd memory owned by one perform call and
 * are released in PG_FINALLY on every path, including an ERROR or a cancel
 * raised while waiting. curl never gets palloc (its resolver may run in a
 * thread) and our callbacks never palloc or ereport: they only copy bytes
 * into malloc'd buffers and set flags. Results are copied into the caller's
 * memory context once a transfer is done.
 *
 * One multi handle per backend holds the connection cache, so a worker
 * round or a run of SQL calls reuses TLS connections; calls made while a
 * stream runs get a second one (m365_http_multi_for).
 *
 * Trust: peer and host verification are always on. m365sync.ca_file adds
 * certificates to the system store rather than replacing it: http_ca.c
 * writes the system bundle and the extra file, concatenated, to a file named
 * by its hash in the data directory, handed to curl as CURLOPT_CAINFO, so
 * curl compares a short path when it reuses a connection and parses the
 * bundle once into its CA cache, instead of comparing and parsing a 200 kB
 * CURLOPT_CAINFO_BLOB on every reuse and every new connection (about 8% of
 * a poll's CPU). The blob is the fallback when the file cannot be written.
 *
 * Never: CURLOPT_VERBOSE, a debug callback, following redirects, or logging
 * a URL with its query, a header or a body.
 */
#include "postgres.h"

#include <curl/curl.h>
#include <time.h>

#include "miscadmin.h"
#include "storage/pmsignal.h"
#include "utils/memutils.h"

#include "crypto.h"
#include "http.h"
#include "http_ca.h"
#include "http_transfer.h"
#include "http_util.h"
#include "settings.h"

/* The User-Agent names the version the Makefile passes (m365sync.control's). */
#ifndef M365SYNC_VERSION
#define M365SYNC_VERSION "unknown"
#endif

#define DEFAULT_SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"
#define MAX_HEADER_VALUE 2048

uint64		m365_http_requests_started = 0;

static CURLM *backend_multi = NULL;

void
m365_http_init(M365HttpRequest *req, M365HttpMethod method, const char *url)
{
	memset(req, 0, sizeof(*req));
	req->method = method;
	req->url = url;
}

void
m365_http_add_header(M365HttpRequest *req, const char *header)
{
	int			i;

	for (i = 0; i < M365_HTTP_MAX_HEADERS; i++)
		if (req->headers[i] == NULL)
		{
			req->headers[i] = header;
			req->headers[i + 1] = NULL;
			return;
		}
	elog(ERROR, "too many HTTP headers on one request");
}

char *
m365_http_endpoint(const char *url)
{
	char		buf[256];

	m365_url_endpoint(url, buf, sizeof(buf));
	return pstrdup(buf);
}

/* Turn a malloc'd result of the pure helpers into palloc'd text. */
static char *
malloc_to_palloc(char *m)
{
	char	   *p;

	if (m == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	p = pstrdup(m);
	free(m);
	return p;
}

char *
m365_http_escape(const char *s)
{
	return malloc_to_palloc(m365_url_encode(s));
}

char *
m365_http_build_query(const char *base, const char *const *pairs)
{
	char	   *prefix = base ? psprintf("%s%s", base, strchr(base, '?') ? "&" : "?") : "";

	return malloc_to_palloc(m365_url_with_params(prefix, pairs));
}

/* --- callbacks: no palloc, no ereport, no longjmp ------------------------- */

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	M365HttpTransfer *t = (M365HttpTransfer *) userp;
	size_t		n = size * nmemb;

	if (t->len + n > t->max)
	{
		t->too_large = true;
		return 0;				/* curl aborts with CURLE_WRITE_ERROR */
	}
	if (t->len + n + 1 > t->cap)
	{
		size_t		cap = t->cap ? t->cap : 16384;
		char	   *nb;

		while (cap < t->len + n + 1)
			cap *= 2;
		/* not realloc: it would free the old block with the answer still in it */
		nb = malloc(cap);
		if (nb == NULL)
			return 0;
		if (t->buf)
		{
			memcpy(nb, t->buf, t->len);
			m365_secure_zero(t->buf, t->len);
			free(t->buf);
		}
		t->buf = nb;
		t->cap = cap;
	}
	memcpy(t->buf + t->len, data, n);
	t->len += n;
	t->buf[t->len] = '\0';
	return n;
}

static void
keep_header(char **slot, const char *value, size_t len)
{
	char	   *v;

	if (len > MAX_HEADER_VALUE)
		return;
	v = malloc(len + 1);
	if (v == NULL)
		return;
	memcpy(v, value, len);
	v[len] = '\0';
	free(*slot);
	*slot = v;
}

/*
 * The body's buffer at the size Content-Length announces (when within the
 * transfer's limit), so a large answer is not copied and wiped as the
 * buffer doubles. A wrong length only means growing as usual.
 */
static void
presize_body(M365HttpTransfer *t, const char *data, size_t n)
{
	const char *v;
	size_t		vlen;
	char		num[24];
	char	   *end;
	unsigned long long want;

	if (t->buf != NULL || !m365_header_value(data, n, "content-length", &v, &vlen) ||
		vlen == 0 || vlen >= sizeof(num))
		return;
	memcpy(num, v, vlen);
	num[vlen] = '\0';
	errno = 0;
	want = strtoull(num, &end, 10);
	if (errno != 0 || *end != '\0' || want == 0 || want > t->max)
		return;
	t->buf = malloc((size_t) want + 1);
	if (t->buf != NULL)
		t->cap = (size_t) want + 1;
}

/* Keep the few headers callers need; everything else is dropped unseen. */
static size_t
header_cb(char *data, size_t size, size_t nitems, void *userp)
{
	M365HttpTransfer *t = (M365HttpTransfer *) userp;
	size_t		n = size * nitems;
	static const struct
	{
		const char *name;
		size_t		off;
	}			wanted[] = {
		{"content-type", offsetof(M365HttpTransfer, content_type)},
		{"location", offsetof(M365HttpTransfer, location)},
		{"retry-after", offsetof(M365HttpTransfer, retry_after)},
		{"request-id", offsetof(M365HttpTransfer, request_id)},
	};
	size_t		i;

	/* A new status line (after 100 Continue): forget the previous headers. */
	if (m365_header_is_status_line(data, n))
	{
		for (i = 0; i < lengthof(wanted); i++)
		{
			char	  **slot = (char **) ((char *) t + wanted[i].off);

			free(*slot);
			*slot = NULL;
		}
		return n;
	}
	for (i = 0; i < lengthof(wanted); i++)
	{
		const char *v;
		size_t		vlen;

		if (m365_header_value(data, n, wanted[i].name, &v, &vlen))
			keep_header((char **) ((char *) t + wanted[i].off), v, vlen);
	}
	presize_body(t, data, n);
	return n;
}

/* Abort the transfer when the backend is asked to cancel or die. */
static int
progress_cb(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
			curl_off_t ultotal, curl_off_t ulnow)
{
	/* Cancel, shutdown, or an orphan whose postmaster died: stop now. */
	return (QueryCancelPending || ProcDiePending || !PostmasterIsAlive()) ? 1 : 0;
}

/* --- set-up --------------------------------------------------------------- */

static CURLM *
get_multi(void)
{
	if (backend_multi == NULL)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			elog(ERROR, "could not initialise libcurl");
		backend_multi = curl_multi_init();
		if (backend_multi == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		curl_multi_setopt(backend_multi, CURLMOPT_MAXCONNECTS, 32L);
	}
	return backend_multi;
}

/*
 * Transfers started while a stream runs (from its done(): a push, a token
 * refresh, a calendar list at a round's end) get a multi handle of their
 * own: on the stream's, their loop would take the stream's answers.
 */
int			m365_http_stream_depth = 0;
static CURLM *nested_multi = NULL;

static CURLM *
get_nested_multi(void)
{
	(void) get_multi();			/* curl_global_init */
	if (nested_multi == NULL)
	{
		nested_multi = curl_multi_init();
		if (nested_multi == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		curl_multi_setopt(nested_multi, CURLMOPT_MAXCONNECTS, 8L);
	}
	return nested_multi;
}

CURLM *
m365_http_multi_for(int parallel)
{
	static long cache_size = 0;

	if (m365_http_stream_depth > 0)
		return get_nested_multi();

	/*
	 * Keep at least one idle connection per parallel slot: a connection
	 * closed and opened again costs a TLS handshake (and curl's parse of the
	 * CA bundle) per request.
	 */
	if (parallel > cache_size)
	{
		cache_size = Max(parallel, 32);
		curl_multi_setopt(get_multi(), CURLMOPT_MAXCONNECTS, cache_size);
	}
	return get_multi();
}

/* Where curl looks for the system bundle by default. */
static const char *
system_ca_path(CURL *easy)
{
	const char *path = DEFAULT_SYSTEM_CA;

#if LIBCURL_VERSION_NUM >= 0x075400		/* 7.84: curl's built-in default */
	char	   *def = NULL;

	if (curl_easy_getinfo(easy, CURLINFO_CAINFO, &def) == CURLE_OK && def != NULL)
		path = def;
#endif
	return path;
}

static const char *
method_name(M365HttpMethod m)
{
	switch (m)
	{
		case M365_HTTP_GET:
			return "GET";
		case M365_HTTP_POST:
			return "POST";
		case M365_HTTP_PATCH:
			return "PATCH";
		case M365_HTTP_PUT:
			return "PUT";
		case M365_HTTP_DELETE:
			return "DELETE";
	}
	return "GET";
}

static bool
append_header(M365HttpTransfer *t, const char *h)
{
	struct curl_slist *l = curl_slist_append(t->headers, h);

	if (l == NULL)
		return false;
	t->headers = l;
	return true;
}

/*
 * Prepare one easy handle. Returns a transport result: anything but OK means
 * the request was not sent.
 */
static M365HttpResult
setup_transfer(M365HttpTransfer *t)
{
	M365HttpRequest *req = t->req;
	struct curl_blob blob;
	M365CaBundle ca;
	unsigned char rnd[16];
	char		line[128];
	int			i;
	bool		ok = true;

	if (!m365_url_is_https(req->url))
		return M365_HTTP_ERR_URL;
	t->easy = curl_easy_init();
	if (t->easy == NULL)
		return M365_HTTP_ERR_INTERNAL;
	t->max = req->max_response ? req->max_response : M365_HTTP_DEFAULT_MAX_RESPONSE;

	if (m365_random_bytes(rnd, sizeof(rnd)) != M365_CRYPTO_OK)
		return M365_HTTP_ERR_INTERNAL;
	m365_format_uuid(rnd, req->response.client_request_id);

	snprintf(line, sizeof(line), "client-request-id: %s", req->response.client_request_id);
	ok &= append_header(t, line);
	ok &= append_header(t, "return-client-request-id: true");
	ok &= append_header(t, "Accept: application/json");
	ok &= append_header(t, "Expect:");
	if (req->content_type)
	{
		char	   *ct = psprintf("Content-Type: %s", req->content_type);

		ok &= append_header(t, ct);
		pfree(ct);
	}
	for (i = 0; i < M365_HTTP_MAX_HEADERS && req->headers[i]; i++)
		ok &= append_header(t, req->headers[i]);
	if (req->bearer_token)
	{
		size_t		len = strlen(req->bearer_token) + 32;
		char	   *auth = malloc(len);

		if (auth == NULL)
			return M365_HTTP_ERR_INTERNAL;
		snprintf(auth, len, "Authorization: Bearer %s", req->bearer_token);
		ok &= append_header(t, auth);
		m365_secure_zero(auth, len);
		free(auth);
	}
	if (!ok)
		return M365_HTTP_ERR_INTERNAL;

#define SET(opt, val) do { if (curl_easy_setopt(t->easy, opt, val) != CURLE_OK) return M365_HTTP_ERR_INTERNAL; } while (0)
	SET(CURLOPT_URL, req->url);
#if LIBCURL_VERSION_NUM >= 0x075500		/* 7.85 */
	SET(CURLOPT_PROTOCOLS_STR, "https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "https");
#else
	SET(CURLOPT_PROTOCOLS, (long) CURLPROTO_HTTPS);
	SET(CURLOPT_REDIR_PROTOCOLS, (long) CURLPROTO_HTTPS);
#endif
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	SET(CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
	if (!m365_http_ca_bundle(system_ca_path(t->easy), &ca))
		return M365_HTTP_ERR_CA_FILE;
	if (ca.file != NULL)
		SET(CURLOPT_CAINFO, ca.file);
	else if (ca.data != NULL)
	{
		/* copied: a changed ca_file rebuilds the bundle while this transfer runs */
		blob.data = unconstify(char *, ca.data);
		blob.len = ca.len;
		blob.flags = CURL_BLOB_COPY;
		SET(CURLOPT_CAINFO_BLOB, &blob);
	}
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_TIMEOUT_MS, (long) m365_http_timeout_ms);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long) m365_http_timeout_ms);
	SET(CURLOPT_ACCEPT_ENCODING, "");
	SET(CURLOPT_USERAGENT, "m365sync/" M365SYNC_VERSION);
	SET(CURLOPT_HTTPHEADER, t->headers);
	SET(CURLOPT_WRITEFUNCTION, write_cb);
	SET(CURLOPT_WRITEDATA, t);
	SET(CURLOPT_HEADERFUNCTION, header_cb);
	SET(CURLOPT_HEADERDATA, t);
	SET(CURLOPT_NOPROGRESS, 0L);
	SET(CURLOPT_XFERINFOFUNCTION, progress_cb);
	SET(CURLOPT_ERRORBUFFER, t->errbuf);
	SET(CURLOPT_PRIVATE, t);
	switch (req->method)
	{
		case M365_HTTP_GET:
			SET(CURLOPT_HTTPGET, 1L);
			break;
		case M365_HTTP_POST:
			SET(CURLOPT_POST, 1L);
			break;
		default:
			SET(CURLOPT_CUSTOMREQUEST, method_name(req->method));
			break;
	}
	if (req->body != NULL || req->method == M365_HTTP_POST)
	{
		SET(CURLOPT_POSTFIELDS, req->body ? req->body : "");
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) (req->body ? req->body_len : 0));
	}
#undef SET
	return M365_HTTP_OK;
}

static M365HttpResult
map_curl_code(M365HttpTransfer *t, CURLcode code)
{
	switch (code)
	{
		case CURLE_OK:
			return M365_HTTP_OK;
		case CURLE_UNSUPPORTED_PROTOCOL:
		case CURLE_URL_MALFORMAT:
			return M365_HTTP_ERR_URL;
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
			return M365_HTTP_ERR_RESOLVE;
		case CURLE_COULDNT_CONNECT:
			return M365_HTTP_ERR_CONNECT;
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CIPHER:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_SSL_ISSUER_ERROR:
		case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		case CURLE_SSL_INVALIDCERTSTATUS:
			return M365_HTTP_ERR_TLS;
		case CURLE_OPERATION_TIMEDOUT:
			return M365_HTTP_ERR_TIMEOUT;
		case CURLE_WRITE_ERROR:
			return t->too_large ? M365_HTTP_ERR_TOO_LARGE : M365_HTTP_ERR_INTERNAL;
		case CURLE_FILESIZE_EXCEEDED:
			return M365_HTTP_ERR_TOO_LARGE;
		case CURLE_ABORTED_BY_CALLBACK:
			return M365_HTTP_ERR_CANCELLED;
		case CURLE_SEND_ERROR:
		case CURLE_RECV_ERROR:
		case CURLE_GOT_NOTHING:
		case CURLE_PARTIAL_FILE:
		case CURLE_HTTP2:
		case CURLE_HTTP2_STREAM:
			return M365_HTTP_ERR_IO;
		default:
			return M365_HTTP_ERR_INTERNAL;
	}
}

static char *
take_header(char *m)
{
	return m ? pstrdup(m) : NULL;
}

/* Copy a finished transfer's results into the caller's memory context. */
static void
finish_transfer(M365HttpTransfer *t, M365HttpResult result, MemoryContext cxt)
{
	M365HttpResponse *r = &t->req->response;
	MemoryContext old = MemoryContextSwitchTo(cxt);

	r->result = result;
	if (t->easy)
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &r->status);
	if (result != M365_HTTP_OK)
		r->status = (result == M365_HTTP_ERR_TOO_LARGE) ? r->status : 0;
	r->body_len = (result == M365_HTTP_OK) ? t->len : 0;
	r->body = palloc(r->body_len + 1);
	if (r->body_len)
		memcpy(r->body, t->buf, r->body_len);
	r->body[r->body_len] = '\0';
	r->content_type = take_header(t->content_type);
	r->location = take_header(t->location);
	r->retry_after = take_header(t->retry_after);
	r->request_id = take_header(t->request_id);
	r->has_retry_after = r->retry_after != NULL &&
		m365_parse_retry_after(r->retry_after, time(NULL), &r->retry_after_s);
	/* curl's reason, unless it could quote something that is not ours to show */
	if (result != M365_HTTP_OK && t->errbuf[0] != '\0' &&
		strpbrk(t->errbuf, "?@&=") == NULL)
		r->error_detail = pstrdup(t->errbuf);
	MemoryContextSwitchTo(old);
	t->done = true;
}

void
m365_http_release_transfer(M365HttpTransfer *t)
{
	if (t->easy)
	{
		if (t->added)
			curl_multi_remove_handle(t->multi, t->easy);
		curl_easy_cleanup(t->easy);
		t->easy = NULL;
	}
	t->added = false;
	curl_slist_free_all(t->headers);
	t->headers = NULL;
	if (t->buf)
	{
		m365_secure_zero(t->buf, t->len);	/* what was written (and the NUL) */
		free(t->buf);
		t->buf = NULL;
	}
	free(t->content_type);
	free(t->location);
	free(t->retry_after);
	free(t->request_id);
	t->content_type = t->location = t->retry_after = t->request_id = NULL;
}

/* Start transfer t; a set-up failure finishes it at once. */
bool
m365_http_start_transfer(CURLM *multi, M365HttpTransfer *t, MemoryContext cxt)
{
	M365HttpResult r = setup_transfer(t);

	if (r == M365_HTTP_OK && curl_multi_add_handle(multi, t->easy) != CURLM_OK)
		r = M365_HTTP_ERR_INTERNAL;
	if (r != M365_HTTP_OK)
	{
		finish_transfer(t, r, cxt);
		m365_http_release_transfer(t);
		return false;
	}
	t->added = true;
	t->multi = multi;
	m365_http_requests_started++;
	return true;
}

/* Keep what a transfer curl finished brought, then free its curl side. */
void
m365_http_transfer_answered(M365HttpTransfer *t, CURLcode code, MemoryContext cxt)
{
	finish_transfer(t, map_curl_code(t, code), cxt);
	m365_http_release_transfer(t);
}

/* Drive the transfers to completion; ts[] is released by the caller. */
static void
run_transfers(CURLM *multi, M365HttpTransfer *ts, int n, int max_parallel, MemoryContext cxt)
{
	int			next = 0;
	int			active = 0;

	while (next < n || active > 0)
	{
		CURLMsg    *msg;
		int			still,
					queued;

		while (next < n && active < max_parallel)
			if (m365_http_start_transfer(multi, &ts[next++], cxt))
				active++;
		if (active == 0)
			break;
		if (curl_multi_perform(multi, &still) != CURLM_OK)
			elog(ERROR, "curl_multi_perform failed");
		while ((msg = curl_multi_info_read(multi, &queued)) != NULL)
		{
			M365HttpTransfer *t;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
			m365_http_transfer_answered(t, msg->data.result, cxt);
			active--;
		}
		if (active > 0 && still > 0)
			curl_multi_poll(multi, NULL, 0, M365_HTTP_POLL_MS, NULL);
		/* Safe here: PG_FINALLY in our caller releases every handle. */
		CHECK_FOR_INTERRUPTS();
	}
}

void
m365_http_perform_many(M365HttpRequest *reqs, int n, int max_parallel)
{
	MemoryContext cxt = CurrentMemoryContext;
	CURLM	   *multi;
	M365HttpTransfer *volatile ts;
	int			i;

	if (n <= 0)
		return;
	multi = m365_http_multi_for(max_parallel);
	for (i = 0; i < n; i++)
		memset(&reqs[i].response, 0, sizeof(M365HttpResponse));
	ts = calloc(n, sizeof(M365HttpTransfer));
	if (ts == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	for (i = 0; i < n; i++)
		ts[i].req = &reqs[i];

	PG_TRY();
	{
		run_transfers(multi, ts, n, Max(max_parallel, 1), cxt);
	}
	PG_FINALLY();
	{
		int			j;

		for (j = 0; j < n; j++)
			m365_http_release_transfer(&ts[j]);
		free(ts);
	}
	PG_END_TRY();
}

void
m365_http_perform(M365HttpRequest *req)
{
	m365_http_perform_many(req, 1, 1);
}

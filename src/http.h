/*
 * http.h — the HTTP client every module that talks to Microsoft uses
 * (http.c and http_stream.c, the only files that include curl.h).
 *
 * A request is a plain struct: fill method, url, optional bearer token,
 * headers and body, then run it alone (m365_http_perform) or with others in
 * parallel (m365_http_perform_many, one curl multi handle per backend so
 * connections are reused across calls). A request that fails is data: the
 * response carries a transport result and the HTTP status; nothing here
 * raises an ERROR except for cancellation (query cancel, shutdown) and out
 * of memory. m365_http_raise() turns a transport failure into an ereport
 * that names the endpoint (host and path, no query) and never a token.
 *
 * Always: https only, TLS 1.2 or newer, peer and host verification on (no
 * setting turns them off), m365sync.ca_file trusted in addition to the
 * system store, m365sync.http_timeout per request, no redirects followed
 * (callers follow Graph's links explicitly), a response size cap, a fresh
 * client-request-id per call, never a verbose or header dump.
 */
#ifndef M365SYNC_HTTP_H
#define M365SYNC_HTTP_H

#include "postgres.h"

typedef enum M365HttpMethod
{
	M365_HTTP_GET,
	M365_HTTP_POST,
	M365_HTTP_PATCH,
	M365_HTTP_PUT,
	M365_HTTP_DELETE
} M365HttpMethod;

typedef enum M365HttpResult
{
	M365_HTTP_OK = 0,			/* a response arrived; look at status */
	M365_HTTP_ERR_URL,			/* not an https URL */
	M365_HTTP_ERR_RESOLVE,		/* host name did not resolve */
	M365_HTTP_ERR_CONNECT,		/* TCP connect failed */
	M365_HTTP_ERR_TLS,			/* handshake failed: untrusted or wrong-host certificate, old protocol */
	M365_HTTP_ERR_TIMEOUT,		/* m365sync.http_timeout passed */
	M365_HTTP_ERR_TOO_LARGE,	/* response body over the cap */
	M365_HTTP_ERR_IO,			/* connection broke mid-transfer */
	M365_HTTP_ERR_CA_FILE,		/* m365sync.ca_file unreadable */
	M365_HTTP_ERR_CANCELLED,	/* query cancel or shutdown while waiting */
	M365_HTTP_ERR_INTERNAL		/* curl failed otherwise */
} M365HttpResult;

#define M365_HTTP_MAX_HEADERS		8
#define M365_HTTP_DEFAULT_MAX_RESPONSE	(64 * 1024 * 1024)

typedef struct M365HttpResponse
{
	M365HttpResult result;
	long		status;			/* HTTP status; 0 when no response */
	char	   *body;			/* NUL-terminated, palloc'd; "" when empty */
	size_t		body_len;
	char	   *content_type;	/* selected headers, palloc'd or NULL */
	char	   *location;
	char	   *retry_after;	/* raw value */
	char	   *request_id;		/* the server's request-id */
	bool		has_retry_after;	/* retry_after parsed */
	double		retry_after_s;
	char		client_request_id[37];	/* what we sent */
	char	   *error_detail;	/* curl's reason for a transport failure, or NULL */
} M365HttpResponse;

typedef struct M365HttpRequest
{
	/* input */
	M365HttpMethod method;
	const char *url;
	const char *bearer_token;	/* sent as Authorization: Bearer, or NULL */
	const char *content_type;	/* of the body, or NULL */
	const char *body;			/* request body, or NULL */
	size_t		body_len;
	const char *headers[M365_HTTP_MAX_HEADERS + 1]; /* "Name: value", NULL-ended */
	size_t		max_response;	/* 0: M365_HTTP_DEFAULT_MAX_RESPONSE */
	void	   *user_data;		/* for the caller (e.g. which mailbox) */
	/* output, allocated in the memory context current at perform time */
	M365HttpResponse response;
} M365HttpRequest;

/* Requests started by this backend so far (sync_runs.http_requests). */
extern uint64 m365_http_requests_started;

/* Zero a request and set method and url. */
extern void m365_http_init(M365HttpRequest *req, M365HttpMethod method, const char *url);

/* Add a "Name: value" header; ERROR when more than M365_HTTP_MAX_HEADERS. */
extern void m365_http_add_header(M365HttpRequest *req, const char *header);

/* Run one request, blocking (interruptible), bounded by m365sync.http_timeout. */
extern void m365_http_perform(M365HttpRequest *req);

/*
 * Run n requests with at most max_parallel in flight at once; returns when
 * all are done. Each gets its own response; one failing does not stop the
 * others.
 */
extern void m365_http_perform_many(M365HttpRequest *reqs, int n, int max_parallel);

/*
 * Streaming: keep up to max_parallel requests in flight. next(arg) gives
 * the next request to send (NULL: nothing to send right now); done(req,
 * arg) gets each answer as soon as it arrives and may make next() return
 * more. Returns when nothing is in flight and next() has nothing. The
 * answer's memory is freed after done() returns: copy what you keep.
 */
typedef M365HttpRequest *(*M365HttpNext) (void *arg);
typedef void (*M365HttpDone) (M365HttpRequest *req, void *arg);

extern void m365_http_perform_stream(M365HttpNext next, M365HttpDone done, void *arg,
									 int max_parallel);

/*
 * From inside done(): start what next() gives now and send it, before
 * done() goes on with its work (the answer done() has keeps its memory).
 * Answers that arrive meanwhile are handed over after done() returns.
 * Nothing outside a stream's done().
 */
extern void m365_http_stream_send_now(void);

/* "host/path" of a URL for messages (palloc'd); see m365_url_endpoint. */
extern char *m365_http_endpoint(const char *url);

/* ereport(ERROR) for a transport failure (response.result != OK). */
extern void m365_http_raise(const M365HttpRequest *req) pg_attribute_noreturn();

/* A transient condition worth retrying later (timeouts, 429, 5xx ...). */
extern bool m365_http_is_transient(const M365HttpResponse *resp);

/* Percent-encode one value (palloc'd). */
extern char *m365_http_escape(const char *s);

/*
 * base + "?" + key=value&... with every value percent-encoded (palloc'd).
 * pairs is NULL-terminated; a NULL value skips its pair. With base NULL the
 * result is the bare "key=value&..." form body.
 */
extern char *m365_http_build_query(const char *base, const char *const *pairs);

#endif							/* M365SYNC_HTTP_H */

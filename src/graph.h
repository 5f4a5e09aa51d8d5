/*
 * graph.h — Microsoft Graph endpoints (graph.c), on top of http.h.
 *
 * graph.c builds URLs under m365sync.graph_url, sets the JSON and Prefer
 * headers, sends the bearer token it gets from a token source (asking the
 * source again once when Graph answers 401), follows @odata.nextLink only
 * within the Graph origin, and reads Graph's error body. It knows nothing
 * of SPI or accounts: tokens come through M365TokenSource (oauth.c makes
 * one per account). Failures come back as an M365GraphResult, which the
 * caller records or turns into an ERROR with m365_graph_raise.
 *
 * Endpoints here: GET /me, GET /users/{id}, GET /users/{id}/calendars
 * (paged), and for the push: parallel sends (event writes and $batch are
 * built by push.c with graph_util.h), the lookup of an event by its
 * transactionId.
 */
#ifndef M365SYNC_GRAPH_H
#define M365SYNC_GRAPH_H

#include "postgres.h"

#include "nodes/pg_list.h"

#include "graph_util.h"
#include "http.h"

/*
 * Hands out an access token (palloc'd). rejected: the token Graph just
 * refused with 401, or NULL for the first call; a source asked with a
 * rejected token must refresh rather than return it again. NULL means no
 * token can be had (the source has recorded why, e.g. reauth_required).
 */
typedef struct M365TokenSource
{
	char	   *(*get) (struct M365TokenSource *self, const char *rejected);
	void	   *arg;
} M365TokenSource;

typedef struct M365GraphResult
{
	bool		ok;
	bool		no_token;		/* the token source gave none */
	bool		transient;		/* worth retrying later */
	M365HttpResult transport;
	long		status;			/* HTTP status, 0 when none */
	char		code[64];		/* Graph error code, "" when none */
	bool		has_retry_after;
	double		retry_after_s;
	char	   *endpoint;		/* host/path of the failed request */
	char		client_request_id[37];
} M365GraphResult;

/* Prefer headers callers combine as needed. */
#define M365_PREFER_IMMUTABLE_ID	"Prefer: IdType=\"ImmutableId\""
#define M365_PREFER_UTC				"Prefer: outlook.timezone=\"UTC\""

/*
 * {graph_url}/{path}[?query]: path segments are given raw in segs and
 * escaped here, e.g. m365_graph_build_url((const char *[]){"users", id, "calendars", NULL}, NULL).
 */
extern char *m365_graph_build_url(const char *const *segs, const char *const *query);

/* Same scheme, host and port as m365sync.graph_url (where tokens may go). */
extern bool m365_graph_same_origin(const char *url);

/* Set up a request to Graph with the standard headers. */
extern void m365_graph_prepare(M365HttpRequest *req, M365HttpMethod method, const char *url);

/*
 * Send a prepared request with a token from ts; on 401 ask ts once more and
 * resend. Returns true on 2xx; otherwise fills res.
 */
extern bool m365_graph_send(M365HttpRequest *req, M365TokenSource *ts, M365GraphResult *res);

/* ERROR for a failed call; what names the operation ("read the signed-in user"). */
/*
 * Classify a request that has run (alone or with others through
 * m365_http_perform_many): true for a 2xx, else res says what failed.
 */
extern bool m365_graph_result(const M365HttpRequest *req, M365GraphResult *res);

extern void m365_graph_raise(const M365GraphResult *res, const char *what) pg_attribute_noreturn();

/*
 * GET /me (user == NULL) or /users/{user}. Fills *out with palloc'd strings
 * (do not call m365_graph_user_free on it).
 */
extern bool m365_graph_get_user(M365TokenSource *ts, const char *user,
								M365GraphUser *out, M365GraphResult *res);

/* GET /users/{id}/calendars, all pages: a List of palloc'd M365GraphCalendar. */
extern bool m365_graph_list_calendars(M365TokenSource *ts, const char *user_id,
									  List **out, M365GraphResult *res);

/*
 * The same list read a page at a time in a caller's stream (pull.c): the
 * first page's URL, and one answer (page page_no, from 1) taken into *out
 * with *next its nextLink (NULL on the last page). false, with res, when
 * the answer is a failure, malformed, or links too far or to another host.
 */
extern char *m365_graph_calendars_url(const char *user_id);
extern bool m365_graph_take_calendars(const M365HttpRequest *req, const char *url, int page_no,
									  List **out, char **next, M365GraphResult *res);


/* ------------------------------------------------------------ writes (push) */

/* "/users/{u}/events/{id}" style path, segments escaped (palloc'd); relative to graph_url. */
extern char *m365_graph_build_path(const char *const *segs);

/* graph_url + path (palloc'd). */
extern char *m365_graph_url_of(const char *path);

/*
 * Send n prepared requests in parallel, at most max_parallel at once, all
 * with one token from ts (asked with rejected, NULL at first). No 401 retry:
 * the caller sees the 401 and asks again with that token. False, sending
 * nothing, when the source has no token.
 */
extern bool m365_graph_send_many(M365HttpRequest *reqs, int n, int max_parallel,
								 M365TokenSource *ts, const char *rejected, char **token_used);

/* Fill res from a finished request that did not succeed. */
extern void m365_graph_result_from(const M365HttpRequest *req, M365GraphResult *res);

/*
 * Find the event a create with transactionId txid made in calendar cal of
 * user (after a 409 to a repeated transactionId): the calendar's events are
 * listed page by page until one carries txid, then read whole. True with
 * *event_json (palloc'd Graph object) when found; false with res->ok true
 * when the calendar has no such event, res filled otherwise.
 */
extern bool m365_graph_find_by_transaction(M365TokenSource *ts, const char *user,
										   const char *cal, const char *txid,
										   char **event_json, M365GraphResult *res);

#endif							/* M365SYNC_GRAPH_H */

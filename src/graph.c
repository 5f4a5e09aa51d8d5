/*
 * graph.c — Microsoft Graph calls (see graph.h): URLs, headers, the 401
 * retry, paging and Graph's error body.
 *
 * Talks to the network only through http.c and parses only through
 * graph_util.c. Knows nothing of SPI, accounts or encryption. A bearer
 * token is only ever sent to the m365sync.graph_url origin: a nextLink that
 * points elsewhere is refused, never followed.
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "graph.h"
#include "http_util.h"
#include "settings.h"

#define MAX_CALENDAR_PAGES 100

char *
m365_graph_build_url(const char *const *segs, const char *const *query)
{
	StringInfoData buf;
	const char *base = m365_graph_url;
	size_t		blen = strlen(base);
	int			i;

	initStringInfo(&buf);
	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	appendBinaryStringInfo(&buf, base, blen);
	for (i = 0; segs[i] != NULL; i++)
	{
		char	   *e = m365_http_escape(segs[i]);

		appendStringInfo(&buf, "/%s", e);
		pfree(e);
	}
	if (query != NULL && query[0] != NULL)
		return m365_http_build_query(buf.data, query);
	return buf.data;
}

/* Does url share scheme, host and port with m365sync.graph_url? */
bool
m365_graph_same_origin(const char *url)
{
	const char *base = m365_graph_url;
	const char *p = strstr(base, "://");
	size_t		olen;

	if (p == NULL)
		return false;
	olen = (p + 3 - base) + strcspn(p + 3, "/?#");
	return strncasecmp(url, base, olen) == 0 &&
		(url[olen] == '/' || url[olen] == '\0' || url[olen] == '?');
}

void
m365_graph_prepare(M365HttpRequest *req, M365HttpMethod method, const char *url)
{
	m365_http_init(req, method, url);
	m365_http_add_header(req, M365_PREFER_IMMUTABLE_ID);
}

static void
fill_failure(const M365HttpRequest *req, M365GraphResult *res)
{
	const M365HttpResponse *r = &req->response;

	res->ok = false;
	res->transport = r->result;
	res->status = r->status;
	res->transient = m365_http_is_transient(r);
	res->has_retry_after = r->has_retry_after;
	res->retry_after_s = r->retry_after_s;
	res->endpoint = m365_http_endpoint(req->url);
	memcpy(res->client_request_id, r->client_request_id, sizeof(res->client_request_id));
	if (r->result == M365_HTTP_OK)
		(void) m365_graph_parse_error(r->body, r->body_len, res->code, sizeof(res->code));
}

bool
m365_graph_send(M365HttpRequest *req, M365TokenSource *ts, M365GraphResult *res)
{
	char	   *token = NULL;
	int			attempt;

	memset(res, 0, sizeof(*res));
	for (attempt = 0; attempt < 2; attempt++)
	{
		if (ts != NULL)
		{
			token = ts->get(ts, attempt == 0 ? NULL : token);
			if (token == NULL)
			{
				res->no_token = true;
				res->endpoint = m365_http_endpoint(req->url);
				return false;
			}
		}
		req->bearer_token = token;
		m365_http_perform(req);
		req->bearer_token = NULL;
		if (req->response.result == M365_HTTP_OK && req->response.status == 401 && ts != NULL)
			continue;
		break;
	}
	return m365_graph_result(req, res);
}

bool
m365_graph_result(const M365HttpRequest *req, M365GraphResult *res)
{
	memset(res, 0, sizeof(*res));
	if (req->response.result == M365_HTTP_OK &&
		req->response.status >= 200 && req->response.status < 300)
	{
		res->ok = true;
		res->status = req->response.status;
		return true;
	}
	fill_failure(req, res);
	return false;
}

void
m365_graph_raise(const M365GraphResult *res, const char *what)
{
	int			code;

	if (res->no_token)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("could not %s: no valid access token", what),
				 errdetail("Request to %s was not sent.", res->endpoint),
				 errhint("See m365sync.account_status for the account's status.")));
	if (res->transport != M365_HTTP_OK)
		ereport(ERROR,
				(errcode(res->transport == M365_HTTP_ERR_CANCELLED ? ERRCODE_QUERY_CANCELED :
						 ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not %s: request to %s failed (%s)", what, res->endpoint,
						res->transport == M365_HTTP_ERR_TLS ? "TLS handshake failed" :
						res->transport == M365_HTTP_ERR_TIMEOUT ? "timed out" :
						res->transport == M365_HTTP_ERR_TOO_LARGE ? "response too large" :
						"no response")));
	switch (res->status)
	{
		case 400:
			code = ERRCODE_INVALID_PARAMETER_VALUE;
			break;
		case 401:
		case 403:
			code = ERRCODE_INSUFFICIENT_PRIVILEGE;
			break;
		case 404:
			code = ERRCODE_NO_DATA_FOUND;
			break;
		default:
			code = ERRCODE_CONNECTION_FAILURE;
			break;
	}
	ereport(ERROR,
			(errcode(code),
			 errmsg("could not %s: Microsoft Graph answered HTTP %ld from %s",
					what, res->status, res->endpoint),
			 res->code[0] ? errdetail("Graph error code: %s; client-request-id %s.",
									  res->code, res->client_request_id) :
			 errdetail("client-request-id %s.", res->client_request_id)));
}

static char *
pdup(const char *s)
{
	return s ? pstrdup(s) : NULL;
}

bool
m365_graph_get_user(M365TokenSource *ts, const char *user,
					M365GraphUser *out, M365GraphResult *res)
{
	M365HttpRequest req;
	M365GraphUser u;
	const char *me[] = {"me", NULL};
	const char *other[] = {"users", user, NULL};
	const char *query[] = {"$select", "id,userPrincipalName,mail", NULL};

	memset(out, 0, sizeof(*out));
	m365_graph_prepare(&req, M365_HTTP_GET, m365_graph_build_url(user ? other : me, query));
	if (!m365_graph_send(&req, ts, res))
		return false;
	if (m365_graph_parse_user(req.response.body, req.response.body_len, &u) != 0)
	{
		res->ok = false;
		res->status = req.response.status;
		strlcpy(res->code, "malformedResponse", sizeof(res->code));
		res->endpoint = m365_http_endpoint(req.url);
		return false;
	}
	PG_TRY();
	{
		out->id = pdup(u.id);
		out->upn = pdup(u.upn);
		out->mail = pdup(u.mail);
	}
	PG_FINALLY();
	{
		m365_graph_user_free(&u);
	}
	PG_END_TRY();
	return true;
}

/* Copy a parsed page into palloc'd list items; frees the page. Returns the nextLink. */
static pg_noinline char *
take_calendar_page(M365GraphCalendarPage *page, List **out)
{
	char	   *volatile next = NULL;

	PG_TRY();
	{
		int			i;

		for (i = 0; i < page->count; i++)
		{
			M365GraphCalendar *c = palloc0(sizeof(M365GraphCalendar));

			c->id = pdup(page->items[i].id);
			c->name = pdup(page->items[i].name);
			c->is_default = page->items[i].is_default;
			c->can_edit = page->items[i].can_edit;
			*out = lappend(*out, c);
		}
		next = pdup(page->next_link);
	}
	PG_CATCH();
	{
		m365_graph_calendar_page_free(page);
		PG_RE_THROW();
	}
	PG_END_TRY();
	m365_graph_calendar_page_free(page);
	return next;
}

char *
m365_graph_calendars_url(const char *user_id)
{
	const char *segs[] = {"users", user_id, "calendars", NULL};

	return m365_graph_build_url(segs, NULL);
}

bool
m365_graph_take_calendars(const M365HttpRequest *req, const char *url, int page_no,
						  List **out, char **next, M365GraphResult *res)
{
	M365GraphCalendarPage page;

	*next = NULL;
	if (!m365_graph_result(req, res))
		return false;
	if (m365_graph_parse_calendars(req->response.body, req->response.body_len, &page) != 0)
	{
		memset(res, 0, sizeof(*res));
		res->status = req->response.status;
		strlcpy(res->code, "malformedResponse", sizeof(res->code));
		res->endpoint = m365_http_endpoint(url);
		return false;
	}
	*next = take_calendar_page(&page, out);
	if (*next != NULL && (page_no >= MAX_CALENDAR_PAGES || !m365_graph_same_origin(*next)))
	{
		memset(res, 0, sizeof(*res));
		strlcpy(res->code, page_no >= MAX_CALENDAR_PAGES ? "tooManyPages" : "foreignNextLink",
				sizeof(res->code));
		res->endpoint = m365_http_endpoint(*next);
		*next = NULL;
		return false;
	}
	return true;
}

bool
m365_graph_list_calendars(M365TokenSource *ts, const char *user_id,
						  List **out, M365GraphResult *res)
{
	char	   *url = m365_graph_calendars_url(user_id);
	int			pages = 0;

	*out = NIL;
	while (url != NULL)
	{
		M365HttpRequest req;
		char	   *next;

		m365_graph_prepare(&req, M365_HTTP_GET, url);
		if (!m365_graph_send(&req, ts, res))
			return false;
		if (!m365_graph_take_calendars(&req, url, ++pages, out, &next, res))
			return false;
		url = next;
	}
	return true;
}

/* ------------------------------------------------------------ writes (push) */

char *
m365_graph_build_path(const char *const *segs)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; segs[i] != NULL; i++)
	{
		char	   *e = m365_http_escape(segs[i]);

		appendStringInfo(&buf, "/%s", e);
		pfree(e);
	}
	return buf.data;
}

char *
m365_graph_url_of(const char *path)
{
	const char *base = m365_graph_url;
	size_t		blen = strlen(base);

	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	return psprintf("%.*s%s", (int) blen, base, path);
}

bool
m365_graph_send_many(M365HttpRequest *reqs, int n, int max_parallel, M365TokenSource *ts,
					 const char *rejected, char **token_used)
{
	char	   *token = ts->get(ts, rejected);

	*token_used = token;
	if (token == NULL)
		return false;
	for (int i = 0; i < n; i++)
		reqs[i].bearer_token = token;
	m365_http_perform_many(reqs, n, max_parallel);
	for (int i = 0; i < n; i++)
		reqs[i].bearer_token = NULL;
	return true;
}

void
m365_graph_result_from(const M365HttpRequest *req, M365GraphResult *res)
{
	memset(res, 0, sizeof(*res));
	fill_failure(req, res);
}

#define MAX_EVENT_PAGES 1000

bool
m365_graph_find_by_transaction(M365TokenSource *ts, const char *user, const char *cal,
							   const char *txid, char **event_json, M365GraphResult *res)
{
	const char *segs[] = {"users", user, "calendars", cal, "events", NULL};
	const char *query[] = {"$select", "id,transactionId", "$top", "100", NULL};
	char	   *url = m365_graph_build_url(segs, query);
	char	   *found = NULL;
	int			pages = 0;

	*event_json = NULL;
	while (url != NULL && found == NULL)
	{
		M365HttpRequest req;
		char	   *f = NULL,
				   *next = NULL;

		if (++pages > MAX_EVENT_PAGES || !m365_graph_same_origin(url))
		{
			memset(res, 0, sizeof(*res));
			strlcpy(res->code, pages > MAX_EVENT_PAGES ? "tooManyPages" : "foreignNextLink",
					sizeof(res->code));
			res->endpoint = m365_http_endpoint(url);
			return false;
		}
		m365_graph_prepare(&req, M365_HTTP_GET, url);
		if (!m365_graph_send(&req, ts, res))
			return false;
		if (m365_graph_find_transaction(req.response.body, req.response.body_len, txid,
										&f, &next) != 0)
		{
			memset(res, 0, sizeof(*res));
			strlcpy(res->code, "malformedResponse", sizeof(res->code));
			res->endpoint = m365_http_endpoint(url);
			return false;
		}
		found = pdup(f);
		url = pdup(next);
		free(f);
		free(next);
	}
	memset(res, 0, sizeof(*res));
	res->ok = true;
	if (found == NULL)
		return false;
	{
		const char *esegs[] = {"users", user, "events", found, NULL};
		M365HttpRequest req;

		m365_graph_prepare(&req, M365_HTTP_GET, m365_graph_build_url(esegs, NULL));
		m365_http_add_header(&req, M365_PREFER_UTC);
		if (!m365_graph_send(&req, ts, res))
			return false;
		*event_json = req.response.body;
	}
	return true;
}

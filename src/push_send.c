/*
 * push_send.c — the requests of a push wave (see push_send.h): each outbox
 * entry's write (POST to its calendar with the transactionId fixed when the
 * app wrote it, PATCH of the changed fields or DELETE, both with If-Match of
 * the last known changeKey), sent singly or in $batch requests, and the
 * answers read back into the writes: transport result, status, body,
 * Retry-After, a 401 noted for the wave. What an answer means is push.c's.
 *
 * Never more than 4 requests are in flight for the mailbox, inner requests
 * of $batch counted. A $batch refused as a whole is no verdict on its
 * changes: they are sent again one by one. Never logs content.
 */
#include "postgres.h"

#include <time.h>

#include "utils/jsonb.h"

#include "event_patch.h"
#include "graph.h"
#include "http_util.h"
#include "push_send.h"
#include "settings.h"

static char *
event_path(PushState *ps, const char *graph_id)
{
	const char *segs[] = {"users", ps->ms_user_id, "events", graph_id, NULL};

	return m365_graph_build_path(segs);
}

static bool
is_series_member(const M365PushEntry *e)
{
	return e->event_type != NULL &&
		(strcmp(e->event_type, "occurrence") == 0 || strcmp(e->event_type, "exception") == 0);
}

/* The write body from the stored object; NULL when there is nothing to send. */
static char *
write_body(const M365PushEntry *e, bool create)
{
	char	   *text = JsonbToCString(NULL, &e->data->root, VARSIZE(e->data));
	cJSON	   *tree = cJSON_Parse(text);
	cJSON	   *body = NULL;
	char	   *printed = NULL;
	char	   *out = NULL;
	int			n = 0;

	pfree(text);
	if (tree == NULL)
		ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED), errmsg("a stored event is not JSON")));
	body = m365_event_write_body(tree, create ? NULL : (const char *const *) e->changed,
								 create ? 0 : e->nchanged, is_series_member(e),
								 create ? e->transaction_id : NULL, &n);
	if (body != NULL && (create || n > 0))
		printed = cJSON_PrintUnformatted(body);
	cJSON_Delete(body);
	cJSON_Delete(tree);
	if (printed != NULL)
	{
		out = pstrdup(printed);
		cJSON_free(printed);
	}
	else if (body == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	return out;
}

/* Fill w for its entry; false when there is nothing to send (done at once). */
bool
m365_push_prepare_write(PushState *ps, Write *w)
{
	M365PushEntry *e = w->e;

	if (strcmp(e->op, "create") == 0)
	{
		const char *segs[] = {"users", ps->ms_user_id, "calendars", e->calendar_graph_id, "events", NULL};

		w->method = M365_HTTP_POST;
		w->method_name = "POST";
		w->path = m365_graph_build_path(segs);
		w->body = write_body(e, true);
		return true;
	}
	if (e->graph_id == NULL)
		return false;
	if (e->change_key)
		w->if_match = psprintf("W/\"%s\"", e->change_key);
	w->path = event_path(ps, e->graph_id);
	if (strcmp(e->op, "delete") == 0)
	{
		w->method = M365_HTTP_DELETE;
		w->method_name = "DELETE";
		return true;
	}
	w->method = M365_HTTP_PATCH;
	w->method_name = "PATCH";
	w->body = write_body(e, false);
	return w->body != NULL;
}

static void
take_http_answer(Write *w, const M365HttpResponse *r)
{
	w->transport = r->result;
	w->status = r->status;
	w->answer = r->body ? r->body : "";
	w->has_retry_after = r->has_retry_after;
	w->retry_after_s = r->retry_after_s;
}

void
m365_push_send_single(PushState *ps, Write *ws, int n)
{
	M365HttpRequest *reqs = palloc0(sizeof(M365HttpRequest) * n);
	char	   *token;

	for (int i = 0; i < n; i++)
	{
		m365_graph_prepare(&reqs[i], ws[i].method, m365_graph_url_of(ws[i].path));
		m365_http_add_header(&reqs[i], M365_PREFER_UTC);
		if (ws[i].if_match)
			m365_http_add_header(&reqs[i], psprintf("If-Match: %s", ws[i].if_match));
		if (ws[i].body)
		{
			reqs[i].content_type = "application/json";
			reqs[i].body = ws[i].body;
			reqs[i].body_len = strlen(ws[i].body);
		}
	}
	ps->st->http_requests += n;
	if (!m365_graph_send_many(reqs, n, M365_MAX_REQUESTS_PER_MAILBOX, &ps->ts, ps->rejected, &token))
	{
		for (int i = 0; i < n; i++)
			ws[i].status = 401;	/* no token: nothing was sent */
		ps->no_token = true;
		return;
	}
	for (int i = 0; i < n; i++)
	{
		take_http_answer(&ws[i], &reqs[i].response);
		if (ws[i].transport == M365_HTTP_OK && ws[i].status == 401)
			ps->saw_401 = true;
	}
	ps->last_token = token;
}

/* Inner answers of one $batch into its writes. */
static pg_noinline void
fill_batch_answers(PushState *ps, Write *ws, M365BatchAnswer *ans, int cnt)
{
	for (int i = 0; i < cnt; i++)
	{
		Write	   *w = &ws[i];

		w->transport = M365_HTTP_OK;
		if (!ans[i].present)
		{
			w->status = 502;	/* the batch forgot it: try again */
			w->answer = "";
			continue;
		}
		w->status = ans[i].status;
		w->answer = ans[i].body ? pstrdup(ans[i].body) : "";
		if (ans[i].retry_after)
			w->has_retry_after = m365_parse_retry_after(ans[i].retry_after, time(NULL),
														&w->retry_after_s) == 1;
		if (w->status == 401)
			ps->saw_401 = true;
	}
}

/* The same, freeing ans (malloc'd) on every path. */
static pg_noinline void
take_batch_answers(PushState *ps, Write *ws, M365BatchAnswer *ans, int cnt)
{
	PG_TRY();
	{
		fill_batch_answers(ps, ws, ans, cnt);
	}
	PG_CATCH();
	{
		m365_graph_batch_answers_free(ans, cnt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	m365_graph_batch_answers_free(ans, cnt);
}

/*
 * Graph refused a $batch as a whole (a 4xx on the batch request itself, not
 * on its requests): the batch payload was not accepted, often because of one
 * request in it, and none of its requests ran. That says nothing about each
 * change, so none is failed for it; they are sent again one by one, and only
 * those Graph refuses singly fail. Not for 401 (a fresh token, next wave) or
 * 429 (throttled: every write waits).
 */
static bool
batch_refused_as_whole(const M365HttpResponse *r)
{
	return r->result == M365_HTTP_OK && r->status >= 400 && r->status < 500 &&
		r->status != 401 && r->status != 429;
}

/*
 * $batch requests in flight at once for one mailbox: Graph runs up to 4
 * inner requests of each at a time, and they count toward the mailbox's 4
 * concurrent requests like any other (GRAPH.md §11), so batches of 4 or
 * more go one after the other.
 */
static int
parallel_batches(int per_batch)
{
	return Max(1, M365_MAX_REQUESTS_PER_MAILBOX / Min(per_batch, M365_MAX_REQUESTS_PER_MAILBOX));
}

void
m365_push_send_batched(PushState *ps, Write *ws, int n, int per_batch)
{
	int			nb = (n + per_batch - 1) / per_batch;
	M365HttpRequest *reqs = palloc0(sizeof(M365HttpRequest) * nb);
	char	   *token;
	bool	   *refused = palloc0(sizeof(bool) * nb);

	for (int b = 0; b < nb; b++)
	{
		int			first = b * per_batch;
		int			cnt = Min(per_batch, n - first);
		M365BatchRequest br[M365_BATCH_MAX];
		char	   *body;

		for (int i = 0; i < cnt; i++)
		{
			br[i].method = ws[first + i].method_name;
			br[i].url = ws[first + i].path;
			br[i].if_match = ws[first + i].if_match;
			br[i].body = ws[first + i].body;
		}
		body = m365_graph_batch_body(br, cnt);
		if (body == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		m365_graph_prepare(&reqs[b], M365_HTTP_POST, m365_graph_url_of("/$batch"));
		reqs[b].content_type = "application/json";
		reqs[b].body = pstrdup(body);
		reqs[b].body_len = strlen(body);
		cJSON_free(body);
	}
	ps->st->http_requests += nb;
	if (!m365_graph_send_many(reqs, nb, parallel_batches(per_batch), &ps->ts, ps->rejected, &token))
	{
		for (int i = 0; i < n; i++)
			ws[i].status = 401;
		ps->no_token = true;
		return;
	}
	ps->last_token = token;
	for (int b = 0; b < nb; b++)
	{
		int			first = b * per_batch;
		int			cnt = Min(per_batch, n - first);
		M365HttpResponse *r = &reqs[b].response;
		M365BatchAnswer ans[M365_BATCH_MAX];

		if (batch_refused_as_whole(r))
		{
			refused[b] = true;
			continue;
		}
		if (r->result != M365_HTTP_OK || r->status != 200 ||
			m365_graph_parse_batch(r->body, r->body_len, ans, cnt) != 0)
		{
			/* the batch as a whole failed: each write shares its fate */
			for (int i = 0; i < cnt; i++)
			{
				take_http_answer(&ws[first + i], r);
				if (r->result == M365_HTTP_OK && r->status == 200)
					ws[first + i].status = 502;	/* unreadable answer: try again */
			}
			if (r->result == M365_HTTP_OK && r->status == 401)
				ps->saw_401 = true;
			continue;
		}
		take_batch_answers(ps, &ws[first], ans, cnt);
	}
	for (int b = 0; b < nb && !ps->no_token; b++)
	{
		int			first = b * per_batch;
		int			cnt = Min(per_batch, n - first);

		if (!refused[b])
			continue;
		ereport(LOG,
				(errmsg("m365sync: Graph refused a $batch of %d changes of account %lld as a whole (HTTP %ld), sending them one by one",
						cnt, (long long) ps->account_id, reqs[b].response.status)));
		m365_push_send_single(ps, &ws[first], cnt);
	}
}

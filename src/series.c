/*
 * series.c — the masters of the series a delta page touches, fetched for
 * the pull (see series.h). Builds the $batch requests and reads their
 * answers; the SQL is store_events_series.c's, the JSON merge
 * series_json.c's, applying the masters pull.c's.
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "graph_util.h"
#include "series.h"
#include "series_json.h"
#include "store_events_series.h"

/* Two requests per series (master, instances): ten series to a batch. */
#define SERIES_PER_BATCH (M365_BATCH_MAX / 2)
#define INSTANCES_TOP "1000"

typedef struct SeriesEntry
{
	const char *master_id;		/* Graph id (points into the page) */
	cJSON	   *master;			/* the fetched master, or NULL */
	bool		gone;			/* Graph answered 404 */
	cJSON	   *instances;		/* the instances answer, or NULL */
	const char **instance_ids;	/* malloc'd, into instances */
	int			n_instances;
	bool		complete;		/* every instance listed (one page) */
} SeriesEntry;

struct M365Series
{
	MemoryContext cxt;			/* everything palloc'd for this page's series */
	M365DeltaPage page;
	const char *ms_user_id;
	bool		has_window;
	TimestampTz ws,
				we;
	const char *ws_iso,
			   *we_iso;
	SeriesEntry *entries;
	int			n;
	int			next;			/* first series of the batch to send */
	int			sent;			/* series in the batch out, 0 when none */
	cJSON	   *filled;			/* the last filled stub */
};

M365Series *
m365_series_plan(const M365DeltaPage *page, const char *ms_user_id, const M365SeriesWindow *w)
{
	M365Series *s = NULL;
	int			i;

	for (i = 0; i < page->n_items; i++)
	{
		const cJSON *mid;
		int			j;

		if (page->items[i].removed)
			continue;
		mid = cJSON_GetObjectItemCaseSensitive(page->items[i].event, "seriesMasterId");
		if (!cJSON_IsString(mid) || mid->valuestring[0] == '\0')
			continue;
		if (s == NULL)
		{
			MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "m365sync series",
													  ALLOCSET_SMALL_SIZES);

			s = MemoryContextAllocZero(cxt, sizeof(M365Series));
			s->cxt = cxt;
			s->page = *page;
			s->ms_user_id = MemoryContextStrdup(cxt, ms_user_id);
			s->has_window = w != NULL;
			if (w)
			{
				s->ws = w->start;
				s->we = w->end;
				s->ws_iso = MemoryContextStrdup(cxt, w->start_iso);
				s->we_iso = MemoryContextStrdup(cxt, w->end_iso);
			}
			s->entries = MemoryContextAllocZero(cxt, sizeof(SeriesEntry) * page->n_items);
		}
		for (j = 0; j < s->n; j++)
			if (strcmp(s->entries[j].master_id, mid->valuestring) == 0)
				break;
		if (j == s->n)
			s->entries[s->n++].master_id = mid->valuestring;
	}
	return s;
}

bool
m365_series_next_request(M365Series *s, M365HttpRequest *req)
{
	M365BatchRequest br[M365_BATCH_MAX] = {{0}};
	int			cnt = 0;
	int			i;
	char	   *body;
	MemoryContext old;

	if (s->next >= s->n)
		return false;
	old = MemoryContextSwitchTo(s->cxt);
	s->sent = Min(SERIES_PER_BATCH, s->n - s->next);
	for (i = s->next; i < s->next + s->sent; i++)
	{
		const char *segs[] = {"users", s->ms_user_id, "events", s->entries[i].master_id, NULL, NULL};
		char	   *path = m365_graph_build_path(segs);

		memset(&br[cnt], 0, sizeof(M365BatchRequest));
		br[cnt].method = "GET";
		br[cnt++].url = path;
		if (s->has_window)
		{
			const char *q[] = {"startDateTime", s->ws_iso, "endDateTime", s->we_iso,
			"$top", INSTANCES_TOP, "$select", "id", NULL};

			segs[4] = "instances";
			memset(&br[cnt], 0, sizeof(M365BatchRequest));
			br[cnt].method = "GET";
			br[cnt++].url = m365_http_build_query(m365_graph_build_path(segs), q);
		}
	}
	body = m365_graph_batch_body(br, cnt);
	if (body == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	m365_graph_prepare(req, M365_HTTP_POST, m365_graph_url_of("/$batch"));
	req->content_type = "application/json";
	req->body = pstrdup(body);
	req->body_len = strlen(body);
	cJSON_free(body);
	MemoryContextSwitchTo(old);
	return true;
}

bool
m365_series_waiting(const M365Series *s)
{
	return s->next < s->n;
}

const char *const *
m365_series_master_ids(const M365Series *s, int *n)
{
	const char **ids = MemoryContextAlloc(s->cxt, sizeof(char *) * Max(s->n, 1));

	for (int i = 0; i < s->n; i++)
		ids[i] = s->entries[i].master_id;
	*n = s->n;
	return ids;
}

static bool
fail(M365GraphResult *res, long status, const char *code, bool transient)
{
	memset(res, 0, sizeof(M365GraphResult));
	res->ok = false;
	res->transport = M365_HTTP_OK;
	res->status = status;
	res->transient = transient;
	strlcpy(res->code, code, sizeof(res->code));
	return false;
}

/* Only ErrorItemNotFound means gone (GRAPH.md §11: not MailboxNotEnabledForRESTAPI). */
static bool
item_not_found(const M365BatchAnswer *a)
{
	char		code[64];

	return a->body && m365_graph_parse_error(a->body, strlen(a->body), code, sizeof(code)) == 0 &&
		strcmp(code, "ErrorItemNotFound") == 0;
}

bool
m365_series_take_answer(M365Series *s, const M365HttpRequest *req, M365GraphResult *res)
{
	int			per = s->has_window ? 2 : 1;
	int			cnt = s->sent * per;
	M365BatchAnswer ans[M365_BATCH_MAX];
	int			i;

	if (!m365_graph_result(req, res))
		return false;
	memset(ans, 0, sizeof(ans));
	if (m365_graph_parse_batch(req->response.body, req->response.body_len, ans, cnt) != 0)
		return fail(res, req->response.status, "malformedResponse", false);
	for (i = 0; i < s->sent; i++)
	{
		SeriesEntry *e = &s->entries[s->next + i];
		M365BatchAnswer *m = &ans[i * per];

		if (m->present && m->status == 404 && item_not_found(m))
			e->gone = true;
		else if (m->present && m->status == 200 && m->body &&
				 (e->master = cJSON_Parse(m->body)) != NULL && cJSON_IsObject(e->master))
			;
		else
		{
			/* Throttled, failed or garbled: this page waits for a later round. */
			bool		transient = !m->present || m->status == 429 || m->status >= 500;
			long		st = m->present ? m->status : 502;

			m365_graph_batch_answers_free(ans, cnt);
			return fail(res, st, "seriesMasterNotFetched", transient);
		}
		if (per == 2)
		{
			M365BatchAnswer *in = &ans[i * per + 1];

			/* Without a full list nothing is reconciled: never delete on a guess. */
			if (in->present && in->status == 200 && in->body &&
				(e->instances = cJSON_Parse(in->body)) != NULL &&
				m365_series_instance_ids(e->instances, &e->instance_ids, &e->n_instances,
										 &e->complete) != 0)
				e->complete = false;
		}
	}
	m365_graph_batch_answers_free(ans, cnt);
	s->next += s->sent;
	s->sent = 0;
	return true;
}

M365DeltaPage *
m365_series_page(M365Series *s)
{
	return &s->page;
}

int
m365_series_master_count(const M365Series *s)
{
	return s->n;
}

const cJSON *
m365_series_master(const M365Series *s, int i)
{
	return s->entries[i].master;
}

static SeriesEntry *
entry_of(M365Series *s, const cJSON *item)
{
	const cJSON *mid = cJSON_GetObjectItemCaseSensitive(item, "seriesMasterId");

	if (!cJSON_IsString(mid))
		return NULL;
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->entries[i].master_id, mid->valuestring) == 0)
			return &s->entries[i];
	return NULL;
}

const cJSON *
m365_series_event_of(M365Series *s, const cJSON *item)
{
	SeriesEntry *e = entry_of(s, item);

	if (e == NULL)
		return item;
	if (e->gone)
		return NULL;
	if (e->master == NULL || !m365_series_is_stub(item))
		return item;
	cJSON_Delete(s->filled);
	s->filled = m365_series_fill_stub(e->master, item);
	if (s->filled == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	return s->filled;
}

int
m365_series_finish(M365Series *s, int64 account_id)
{
	int			gone = 0;

	for (int i = 0; i < s->n; i++)
	{
		SeriesEntry *e = &s->entries[i];

		if (e->gone)
			gone += m365_store_events_series_master_gone(account_id, e->master_id) ? 1 : 0;
		else if (e->complete)
			gone += m365_store_events_series_reconcile(account_id, e->master_id,
													   e->instance_ids, e->n_instances,
													   s->ws, s->we);
	}
	return gone;
}

void
m365_series_free(M365Series *s)
{
	if (s == NULL)
		return;
	for (int i = 0; i < s->n; i++)
	{
		cJSON_Delete(s->entries[i].master);
		cJSON_Delete(s->entries[i].instances);
		free(s->entries[i].instance_ids);
		s->entries[i].master = s->entries[i].instances = NULL;
		s->entries[i].instance_ids = NULL;
	}
	cJSON_Delete(s->filled);
	s->filled = NULL;
	m365_delta_page_free(&s->page);
	MemoryContextDelete(s->cxt);
}

/*
 * push.c — brings FlowAgent's changes to Outlook (see push.h).
 *
 * The flow is outbox (store_push) → write bodies (event_patch, from the
 * stored Graph object) → $batch or single requests (graph, http) → answers
 * → store_push, or conflicts.c by the policy. Exactly once: a create carries the
 * transactionId fixed when the app wrote it, so a resend after a crash
 * never makes a second event (a 409 to a repeated transactionId is settled
 * by finding the event that transactionId made); updates and deletes carry
 * If-Match with the last known changeKey, and a delete of something already
 * gone is done. A 412 reads the remote version and hands both to the
 * conflict policy; a 404 on an update is a remote delete meeting a local
 * edit. A success whose body arrives garbled is read again (a create by its
 * transactionId), never failed: the write happened. Permanent failures
 * (4xx) mark the entry failed with Graph's code and are never retried on
 * their own; transient ones wait (Retry-After, else exponential backoff
 * with jitter). A $batch refused as a whole is no verdict on its changes:
 * they are sent again one by one.
 *
 * Knows nothing of SQL text (store_push.c) or of Graph's field names
 * (event_json.h, event_patch.c). Never logs content.
 */
#include "postgres.h"

#include <math.h>
#include <time.h>

#include "common/pg_prng.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "conflicts.h"
#include "event_json.h"
#include "event_patch.h"
#include "event_row.h"
#include "graph.h"
#include "http_util.h"
#include "jsonb_cjson.h"
#include "settings.h"
#include "oauth.h"
#include "push.h"
#include "xact_util.h"
#include "store_push.h"

#define MAX_WAVES_PER_ROUND 1000
#define MAX_BACKOFF_S 3600.0

/* One write on its way, and what came back. */
typedef struct Write
{
	M365PushEntry *e;
	M365HttpMethod method;
	const char *method_name;
	char	   *path;			/* relative to graph_url */
	char	   *if_match;
	char	   *body;			/* JSON text or NULL */
	/* the answer */
	M365HttpResult transport;
	long		status;
	char	   *answer;			/* body text, "" when none */
	bool		has_retry_after;
	double		retry_after_s;
} Write;

typedef struct PushState
{
	int64		account_id;
	const char *ms_user_id;
	M365TokenSource ts;
	int64		ts_account;
	char	   *rejected;		/* a token Graph refused with 401 */
	bool		saw_401;		/* in this wave */
	bool		no_token;		/* the account has no usable token */
	char	   *last_token;		/* the token this wave used */
	int			auth_retries;
	bool		transient;
	bool		has_retry_after;
	double		retry_after_s;
	char		transient_code[64];
	M365RoundStats *st;
} PushState;

/* ------------------------------------------------------------ requests */

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
static bool
prepare_write(PushState *ps, Write *w)
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

static void
send_single(PushState *ps, Write *ws, int n)
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

static void
send_batched(PushState *ps, Write *ws, int n, int per_batch)
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
	if (!m365_graph_send_many(reqs, nb, M365_MAX_REQUESTS_PER_MAILBOX, &ps->ts, ps->rejected, &token))
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
		send_single(ps, &ws[first], cnt);
	}
}

/* ------------------------------------------------------------ answers */

/*
 * The zones the caller wrote stay in the row (issue 17): Graph answers in
 * UTC (outlook.timezone) and was written Windows names (event_patch.c), so
 * where the answer's start and end are the instants the local version had,
 * its start, end and recurrenceTimeZone are the local version's.
 */
static void
keep_caller_zones(cJSON *answer, const M365EventColumns *cols, Jsonb *local)
{
	char	   *text = JsonbToCString(NULL, &local->root, VARSIZE(local));
	cJSON	   *volatile mine = cJSON_Parse(text);

	pfree(text);
	if (mine == NULL)
		return;
	PG_TRY();
	{
		M365Event	lev;
		M365EventError err;
		M365EventColumns lcols;

		if (m365_event_parse(mine, M365_EV_FROM_GRAPH, &lev, &err) == M365_EV_OK)
		{
			m365_event_columns(&lev, true, &lcols);	/* stored: checked when written, or Graph's copy */
			if (lcols.start_at == cols->start_at && lcols.end_at == cols->end_at &&
				lcols.is_all_day == cols->is_all_day)
			{
				const char *const fields[] = {M365_F_START, M365_F_END};

				for (int i = 0; i < 2; i++)
				{
					cJSON	   *v = cJSON_GetObjectItemCaseSensitive(mine, fields[i]);

					if (cJSON_IsObject(v) && cJSON_HasObjectItem(answer, fields[i]))
						cJSON_ReplaceItemInObjectCaseSensitive(answer, fields[i], cJSON_Duplicate(v, true));
				}
			}
		}
		{
			cJSON	   *lr = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(mine, M365_F_RECURRENCE), "range");
			cJSON	   *ar = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(answer, M365_F_RECURRENCE), "range");
			cJSON	   *ltz = cJSON_GetObjectItemCaseSensitive(lr, "recurrenceTimeZone");

			if (cJSON_IsString(ltz) && cJSON_IsObject(ar))
			{
				cJSON_DeleteItemFromObjectCaseSensitive(ar, "recurrenceTimeZone");
				cJSON_AddStringToObject(ar, "recurrenceTimeZone", ltz->valuestring);
			}
		}
	}
	PG_FINALLY();
	{
		cJSON_Delete(mine);
	}
	PG_END_TRY();
}

/*
 * Graph's event object (answer text) as row columns and jsonb; false when
 * unreadable. local: the version we sent (its zones stay), or NULL.
 */
static bool
read_event(const char *text, M365EventColumns *cols, Jsonb **data, Jsonb *local)
{
	cJSON	   *volatile tree = cJSON_Parse(text);
	bool		ok = false;

	if (tree == NULL)
		return false;
	PG_TRY();
	{
		M365Event	ev;
		M365EventError err;

		if (m365_event_parse(tree, M365_EV_FROM_GRAPH, &ev, &err) == M365_EV_OK && ev.id != NULL)
		{
			m365_event_columns(&ev, true, cols);	/* Graph's answer, rendered in UTC */
			if (local)
				keep_caller_zones(tree, cols, local);
			/* columns point into the tree: copy them out before it goes */
			cols->graph_id = pstrdup(cols->graph_id);
			cols->ical_uid = cols->ical_uid ? pstrdup(cols->ical_uid) : NULL;
			cols->series_master_graph_id = cols->series_master_graph_id ?
				pstrdup(cols->series_master_graph_id) : NULL;
			cols->event_type = pstrdup(cols->event_type);
			cols->show_as = cols->show_as ? pstrdup(cols->show_as) : NULL;
			cols->change_key = cols->change_key ? pstrdup(cols->change_key) : NULL;
			*data = m365_cjson_to_jsonb(tree);
			ok = *data != NULL;
		}
	}
	PG_FINALLY();
	{
		cJSON_Delete(tree);
	}
	PG_END_TRY();
	return ok;
}

static double
backoff_s(const Write *w)
{
	double		base;

	if (w->has_retry_after)
		return w->retry_after_s;
	base = Min(MAX_BACKOFF_S, 5.0 * pow(2.0, Min(w->e->attempts - 1, 12)));
	return base * (0.75 + 0.5 * pg_prng_double(&pg_global_prng_state));
}

static void
transient(PushState *ps, Write *w, const char *code)
{
	double		delay = backoff_s(w);

	m365_store_outbox_retry_later(ps->account_id, w->e->outbox_id, delay, code);
	if (!ps->transient)
		strlcpy(ps->transient_code, code, sizeof(ps->transient_code));
	ps->transient = true;
	if (w->has_retry_after)
	{
		ps->retry_after_s = ps->has_retry_after ? Max(ps->retry_after_s, w->retry_after_s) : w->retry_after_s;
		ps->has_retry_after = true;
	}
}

static const char *
error_code(const Write *w)
{
	char		code[64];

	if (w->transport != M365_HTTP_OK)
		return "networkError";
	if (m365_graph_parse_error(w->answer, strlen(w->answer), code, sizeof(code)) == 0 && code[0])
		return pstrdup(code);
	return psprintf("http%ld", w->status);
}

/*
 * A success whose body could not be read (cut short, garbled on the way):
 * the write happened, so it is never a failure. The event is read again,
 * a create through its transactionId, an update by its id.
 */
static void reread_answer(PushState *ps, Write *w);

static void
done_write(PushState *ps, Write *w, const char *answer, bool reread)
{
	M365EventColumns cols;
	Jsonb	   *data;

	if (!read_event(answer, &cols, &data, w->e->data))
	{
		if (reread)
			reread_answer(ps, w);
		else
			transient(ps, w, "malformedResponse");
		return;
	}
	if (m365_store_outbox_done_write(ps->account_id, w->e, &cols, data))
		ps->st->pushed++;
}

/* A 409 to a repeated transactionId: the event it made is the answer. */
static void
settle_duplicate(PushState *ps, Write *w)
{
	M365GraphResult res;
	char	   *json;

	ps->st->http_requests++;	/* at least one listing page */
	if (m365_graph_find_by_transaction(&ps->ts, ps->ms_user_id, w->e->calendar_graph_id,
									   w->e->transaction_id, &json, &res))
		done_write(ps, w, json, false);
	else if (res.ok)
		/* not listed (yet): the pull links it by transactionId, or we ask again */
		transient(ps, w, "ErrorDuplicateTransactionId");
	else
		transient(ps, w, res.code[0] ? res.code : "networkError");
}

static void
reread_answer(PushState *ps, Write *w)
{
	M365HttpRequest req;
	M365GraphResult res;

	if (strcmp(w->e->op, "create") == 0)
	{
		settle_duplicate(ps, w);
		return;
	}
	m365_graph_prepare(&req, M365_HTTP_GET, m365_graph_url_of(w->path));
	m365_http_add_header(&req, M365_PREFER_UTC);
	ps->st->http_requests++;
	if (m365_graph_send(&req, &ps->ts, &res))
		done_write(ps, w, req.response.body, false);
	else
		transient(ps, w, res.code[0] ? res.code : "malformedResponse");
}

/* A 412: read the remote version and let the policy choose. */
static void
settle_precondition(PushState *ps, Write *w)
{
	M365HttpRequest req;
	M365GraphResult res;
	M365EventColumns cols;
	Jsonb	   *data;
	bool		is_delete = strcmp(w->e->op, "delete") == 0;

	m365_graph_prepare(&req, M365_HTTP_GET, m365_graph_url_of(w->path));
	m365_http_add_header(&req, M365_PREFER_UTC);
	ps->st->http_requests++;
	if (m365_graph_send(&req, &ps->ts, &res))
	{
		if (!read_event(req.response.body, &cols, &data, NULL))
		{
			transient(ps, w, "malformedResponse");
			return;
		}
		if (cols.change_key && w->e->change_key && strcmp(cols.change_key, w->e->change_key) == 0)
		{
			/* nothing changed there: a transient 412 (GRAPH.md §3), send again later */
			transient(ps, w, "ErrorIrresolvableConflict");
			return;
		}
		(void) m365_conflicts_remote_changed(m365_conflict_policy, ps->account_id, w->e->event_id, &cols, data);
		ps->st->conflicts++;
	}
	else if (res.status == 404 && res.transport == M365_HTTP_OK)
	{
		if (is_delete)
		{
			m365_store_outbox_done_delete(ps->account_id, w->e);
			ps->st->pushed++;
		}
		else
		{
			(void) m365_conflicts_remote_deleted(m365_conflict_policy, ps->account_id, w->e->event_id);
			ps->st->conflicts++;
		}
	}
	else
		transient(ps, w, res.code[0] ? res.code : "ErrorIrresolvableConflict");
}

static void
handle_answer(PushState *ps, Write *w)
{
	const char *op = w->e->op;
	long		s = w->status;

	if (w->transport != M365_HTTP_OK)
	{
		transient(ps, w, "networkError");
		return;
	}
	if (s == 401)
		return;					/* stays due: the next wave brings a fresh token */
	if (s >= 200 && s < 300)
	{
		if (strcmp(op, "delete") == 0)
		{
			m365_store_outbox_done_delete(ps->account_id, w->e);
			ps->st->pushed++;
		}
		else
			done_write(ps, w, w->answer, true);
		return;
	}
	if (s == 409 && strcmp(op, "create") == 0)
		settle_duplicate(ps, w);
	else if (s == 404 && strcmp(op, "delete") == 0)
	{
		m365_store_outbox_done_delete(ps->account_id, w->e);	/* already gone */
		ps->st->pushed++;
	}
	else if (s == 404 && strcmp(op, "update") == 0)
	{
		(void) m365_conflicts_remote_deleted(m365_conflict_policy, ps->account_id, w->e->event_id);
		ps->st->conflicts++;
	}
	else if (s == 412 && strcmp(op, "create") != 0)
		settle_precondition(ps, w);
	else if (s == 429 || s == 500 || s == 502 || s == 503 || s == 504)
		transient(ps, w, error_code(w));
	else
		m365_store_outbox_failed(ps->account_id, w->e, error_code(w));
}

/* ------------------------------------------------------------ waves */

/* One wave: take, send, store. Returns the number of entries taken. */
static int
push_wave(PushState *ps, bool commit_each_wave, int per_batch)
{
	int			wave_size = per_batch * M365_MAX_REQUESTS_PER_MAILBOX;
	List	   *ids;
	List	   *entries;
	Write	   *ws;
	int			n = 0;
	ListCell   *lc;

	if (commit_each_wave)
		(void) m365_account_access_token(ps->account_id, NULL);
	ps->saw_401 = false;
	ps->last_token = NULL;
	ids = m365_store_outbox_mark_sending(ps->account_id, wave_size);
	if (ids == NIL)
		return 0;
	if (commit_each_wave)
		m365_commit_and_continue();	/* the sends are counted before they happen */
	entries = m365_store_outbox_lock_entries(ps->account_id, ids);
	if (entries == NIL)
		return 0;				/* all held by the app: its commit wakes us */
	ws = palloc0(sizeof(Write) * Max(list_length(entries), 1));
	foreach(lc, entries)
	{
		Write	   *w = &ws[n];

		w->e = lfirst(lc);
		if (!prepare_write(ps, w))
		{
			if (strcmp(w->e->op, "delete") == 0)
				m365_store_outbox_done_delete(ps->account_id, w->e);
			else
				m365_store_outbox_done_nothing(ps->account_id, w->e);
			continue;
		}
		n++;
	}
	if (n == 1 || (n > 0 && per_batch == 1))
		send_single(ps, ws, n);
	else if (n > 0)
		send_batched(ps, ws, n, per_batch);
	for (int i = 0; i < n; i++)
		handle_answer(ps, &ws[i]);
	if (commit_each_wave)
		m365_commit_and_continue();
	return list_length(entries);
}

bool
m365_push_account(int64 account_id, const char *ms_user_id, bool commit_each_wave,
				  M365RoundStats *st)
{
	PushState	ps = {0};
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext wave_cxt = AllocSetContextCreate(caller, "m365sync push wave",
												   ALLOCSET_DEFAULT_SIZES);
	int			per_batch = Max(1, Min(m365_push_batch_size, M365_BATCH_MAX));

	ps.account_id = account_id;
	ps.ms_user_id = ms_user_id;
	ps.ts_account = account_id;
	ps.st = st;
	m365_account_token_source(&ps.ts, &ps.ts_account);

	for (int wave = 0; wave < MAX_WAVES_PER_ROUND; wave++)
	{
		int			taken;

		CHECK_FOR_INTERRUPTS();
		MemoryContextSwitchTo(wave_cxt);
		taken = push_wave(&ps, commit_each_wave, per_batch);
		MemoryContextSwitchTo(caller);
		if (ps.rejected)
			pfree(ps.rejected);
		ps.rejected = NULL;
		if (ps.no_token)
		{
			st->ok = false;
			strlcpy(st->error, "noAccessToken", sizeof(st->error));
			break;
		}
		if (ps.saw_401 && ps.last_token)
		{
			/* Graph refused the token: once more with a fresh one, then give up */
			ps.rejected = pstrdup(ps.last_token);
			if (++ps.auth_retries > 1)
			{
				st->ok = false;
				strlcpy(st->error, "InvalidAuthenticationToken", sizeof(st->error));
				break;
			}
		}
		MemoryContextReset(wave_cxt);
		if (taken == 0 || ps.transient)
			break;
	}
	MemoryContextDelete(wave_cxt);
	if (ps.transient)
	{
		st->ok = false;
		st->transient = true;
		st->has_retry_after = ps.has_retry_after;
		st->retry_after_s = ps.retry_after_s;
		strlcpy(st->error, ps.transient_code, sizeof(st->error));
	}
	return st->ok;
}

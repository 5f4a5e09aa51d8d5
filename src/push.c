/*
 * push.c — brings FlowAgent's changes to Outlook (see push.h).
 *
 * The flow is outbox (store_push) → write bodies (event_patch, from the
 * stored Graph object) → $batch or single requests (graph, http) → answers
 * → store_push, or conflicts.c by the policy. Exactly once: a create carries the
 * transactionId fixed when the app wrote it, so a resend after a crash
 * never makes a second event (a repeated transactionId, answered 400
 * ErrorDuplicateTransactionId by the live service or 409, is settled by
 * finding the event that transactionId made); updates and deletes carry
 * If-Match with the last known changeKey, and a delete of something already
 * gone (404 ErrorItemNotFound) is done. A 412 reads the remote version: when
 * its writable fields are those we last knew (Exchange moved the changeKey
 * by itself), the etag is refreshed and the write sent again, otherwise
 * both go to the conflict policy; a 404 ErrorItemNotFound on an update is a
 * remote delete meeting a local edit. Any other 404 is not "gone". Answers
 * that are a state of the account (MailboxNotEnabledForRESTAPI; 403
 * ErrorAccessDenied when the mailbox cannot be read either, else it is a
 * refusal of that write: graph_util.h) fail no write: they stay pending,
 * the round stops and the account shows the state and backs off. A success
 * whose body arrives garbled is read again (a create by its transactionId),
 * never failed: the write happened. Permanent failures (4xx) mark the entry
 * failed with Graph's code and are never retried on their own; transient
 * ones wait (Retry-After, else exponential backoff with jitter). A $batch
 * refused as a whole is no verdict on its changes: they are sent again one
 * by one. Never more than 4 requests are in flight for the mailbox, inner
 * requests of $batch counted (Graph runs up to 4 of a batch at a time).
 *
 * This file takes the waves and decides on each answer; the requests
 * themselves (write bodies, single or $batch, answers read back into each
 * write) are push_send.c's. Knows nothing of SQL text (store_push.c) or of
 * Graph's field names (event_json.h, event_patch.c). Never logs content.
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
#include "event_row.h"
#include "graph.h"
#include "http_util.h"
#include "jsonb_cjson.h"
#include "settings.h"
#include "oauth.h"
#include "push.h"
#include "push_send.h"
#include "xact_util.h"
#include "store_push.h"

#define MAX_WAVES_PER_ROUND 1000
#define MAX_BACKOFF_S 3600.0

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

/*
 * The answer is a state of the account (graph_util.h): the write stays
 * pending, untouched, and the round ends; the scheduler shows the state and
 * backs the account off.
 */
static void
account_state(PushState *ps, Write *w, const char *state, const char *code)
{
	m365_store_outbox_retry_later(ps->account_id, w->e->outbox_id, 0, code);
	if (ps->account_state == NULL)
	{
		ps->account_state = state;
		strlcpy(ps->state_code, code, sizeof(ps->state_code));
	}
}

/*
 * A write answered 403 ErrorAccessDenied: is it the account (an Exchange
 * ApplicationAccessPolicy, a permission taken away: reads are refused
 * too) or this write (a calendar we may only read)? One read of the
 * write's calendar per wave tells.
 */
static int
access_probe(PushState *ps, Write *w)
{
	const char *segs[] = {"users", ps->ms_user_id, "calendars", w->e->calendar_graph_id, NULL};
	M365HttpRequest req;
	M365GraphResult res;

	if (ps->probe != 0)
		return ps->probe;
	m365_graph_prepare(&req, M365_HTTP_GET, m365_graph_url_of(m365_graph_build_path(segs)));
	ps->st->http_requests++;
	if (m365_graph_send(&req, &ps->ts, &res))
		ps->probe = 1;
	else if (res.transport == M365_HTTP_OK && m365_graph_account_state(res.status, res.code) != NULL)
		ps->probe = 2;
	else
		ps->probe = 3;
	return ps->probe;
}

/* Graph's error code of an answer, "" when it has none. */
static const char *
answer_code(const Write *w)
{
	char		code[64];

	if (w->transport == M365_HTTP_OK && w->answer != NULL &&
		m365_graph_parse_error(w->answer, strlen(w->answer), code, sizeof(code)) == 0)
		return pstrdup(code);
	return "";
}

/* A lookup of ours failed: an account state, or try again later. */
static void
lookup_failed(PushState *ps, Write *w, const M365GraphResult *res, const char *fallback)
{
	const char *state = res->transport == M365_HTTP_OK ? m365_graph_account_state(res->status, res->code) : NULL;

	if (state != NULL)
		account_state(ps, w, state, res->code);
	else
		transient(ps, w, res->code[0] ? res->code : fallback);
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
		lookup_failed(ps, w, &res, "networkError");
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
		lookup_failed(ps, w, &res, "malformedResponse");
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
		/*
		 * Only the changeKey moved (Exchange rewrites it by itself, GRAPH.md
		 * §11): the row takes the new one and the entry, still pending, goes
		 * again in the next wave with it.
		 */
		if (m365_conflicts_only_etag_moved(ps->account_id, w->e->event_id, &cols, data))
			return;
		(void) m365_conflicts_remote_changed(m365_conflict_policy, ps->account_id, w->e->event_id, &cols, data);
		ps->st->conflicts++;
	}
	else if (res.transport == M365_HTTP_OK && m365_graph_item_gone(res.status, res.code))
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
		lookup_failed(ps, w, &res, "ErrorIrresolvableConflict");
}

static void
handle_answer(PushState *ps, Write *w)
{
	const char *op = w->e->op;
	long		s = w->status;
	const char *code;
	const char *state;

	if (w->transport != M365_HTTP_OK)
	{
		transient(ps, w, "networkError");
		return;
	}
	code = s >= 400 ? answer_code(w) : "";
	state = m365_graph_account_state(s, code);
	if (state != NULL && s == 403)
	{
		int			probe = access_probe(ps, w);

		if (probe == 3)
		{
			transient(ps, w, code);
			return;
		}
		if (probe == 1)
			state = NULL;		/* the mailbox reads: this write is refused (below) */
	}
	if (state != NULL)
	{
		account_state(ps, w, state, code);
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
	if (strcmp(op, "create") == 0 &&
		(s == 409 || (s == 400 && strcmp(code, "ErrorDuplicateTransactionId") == 0)))
		settle_duplicate(ps, w);	/* the first send made it: find it */
	else if (m365_graph_item_gone(s, code) && strcmp(op, "delete") == 0)
	{
		m365_store_outbox_done_delete(ps->account_id, w->e);	/* already gone */
		ps->st->pushed++;
	}
	else if (m365_graph_item_gone(s, code) && strcmp(op, "update") == 0)
	{
		(void) m365_conflicts_remote_deleted(m365_conflict_policy, ps->account_id, w->e->event_id);
		ps->st->conflicts++;
	}
	else if (s == 404 && strcmp(op, "create") != 0)
		transient(ps, w, code[0] ? code : "http404");	/* not "gone": ask again later */
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
	ps->probe = 0;
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
		if (!m365_push_prepare_write(ps, w))
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
		m365_push_send_single(ps, ws, n);
	else if (n > 0)
		m365_push_send_batched(ps, ws, n, per_batch);
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
		if (taken == 0 || ps.transient || ps.account_state)
			break;
	}
	MemoryContextDelete(wave_cxt);
	if (ps.account_state)
	{
		st->ok = false;
		st->transient = false;
		strlcpy(st->account_state, ps.account_state, sizeof(st->account_state));
		strlcpy(st->error, ps.state_code, sizeof(st->error));
	}
	else if (ps.transient)
	{
		st->ok = false;
		st->transient = true;
		st->has_retry_after = ps.has_retry_after;
		st->retry_after_s = ps.retry_after_s;
		strlcpy(st->error, ps.transient_code, sizeof(st->error));
	}
	return st->ok;
}

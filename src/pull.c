/*
 * pull.c — brings Outlook's changes into m365sync.events (see pull.h).
 *
 * The flow is pages → delta_page → event_json/event_row → store_events_pull (a
 * remote change meeting a pending local one → conflicts.c), with
 * the cursor saved in the same transaction as the page it follows, so a
 * crash at any instant resumes from the last committed page: nothing lost,
 * nothing twice. A lost cursor (410, syncStateNotFound, resyncRequired)
 * starts a full round that marks what it sees and, at its deltaLink, sweeps
 * the rest; event_ids of surviving events stay, pending local changes are
 * never dropped. The window moves in weekly steps (current_window): when
 * it moves, the next round is a full one over the new window.
 *
 * Here is one account's round, step by step (pull_job.h); pull_stream.c
 * drives many rounds at once, in waves (see pull.h). In the worker each
 * page's handling is its own transaction, and an ERROR there fails that
 * account's round alone. Knows nothing of HTTP (graph.c) or SQL text
 * (store_events_pull.c).
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "calendars.h"
#include "conflicts.h"
#include "delta_page.h"
#include "event_json.h"
#include "event_row.h"
#include "graph.h"
#include "settings.h"
#include "oauth.h"
#include "pull.h"
#include "pull_item.h"
#include "pull_job.h"
#include "series.h"
#include "store_accounts.h"
#include "store_calendars.h"
#include "store_events_series.h"
#include "xact_util.h"
#include "store_events_pull.h"

#define USECS_PER_DAY_I64 INT64CONST(86400000000)

/* ISO 8601 UTC for the window parameters. */
static char *
iso_utc(TimestampTz t)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "m365sync: window out of range");
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/*
 * The window moves in weekly steps: from the start of the current week
 * (weeks counted from the PostgreSQL epoch, a Saturday 00:00 UTC) it
 * reaches window_past back and window_future plus one week ahead. Graph
 * fixes a calendarView delta's window when its round starts, so every move
 * means a full round that relists the mailbox; a daily move did that every
 * day, this does it once a week.
 *
 * Nothing is missed: at any instant t of the week [w, w + 7 days), the
 * window [w - past, w + 7 days + future) contains [t - past, t + future),
 * the window the settings ask for, so every event that a daily window
 * would hold is in this one, and its changes come in the round's deltas.
 * The extra days (up to a week more of past, a week more of future) are
 * synced too, and leave at the next weekly step like any event leaving the
 * window (the full round's sweep). Where a week more would pass Graph's cap
 * on a calendarView range (1825 days, GRAPH.md section 11), the window
 * moves daily as before.
 */
#define WINDOW_STEP_DAYS 7
#define GRAPH_MAX_RANGE_DAYS 1825

static void
current_window(TimestampTz *start, TimestampTz *end)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		step_days = WINDOW_STEP_DAYS;
	int64		step;
	TimestampTz anchor;

	if ((int64) m365_window_past_s + m365_window_future_s + WINDOW_STEP_DAYS * 86400 >
		(int64) GRAPH_MAX_RANGE_DAYS * 86400)
		step_days = 1;
	step = step_days * USECS_PER_DAY_I64;
	anchor = now - now % step;	/* now is after the epoch: % is not negative */
	*start = anchor - (int64) m365_window_past_s * USECS_PER_SEC;
	*end = anchor + (step_days > 1 ? step : 0) + (int64) m365_window_future_s * USECS_PER_SEC;
}

static void
start_full_round(int64 account_id, const char *ms_user_id, M365PullCalendar *cal, char **url)
{
	const char *segs[] = {"users", ms_user_id, "calendars", cal->graph_id, "calendarView", "delta", NULL};
	const char *query[5];

	current_window(&cal->window_start, &cal->window_end);
	cal->has_window = true;
	cal->full_round_id = GetCurrentTimestamp();
	cal->link = NULL;
	cal->link_is_final = false;
	query[0] = "startDateTime";
	query[1] = iso_utc(cal->window_start);
	query[2] = "endDateTime";
	query[3] = iso_utc(cal->window_end);
	query[4] = NULL;
	*url = m365_graph_build_url(segs, query);
}


/* Apply one event (a page item, or a series master); counts into stats. */
static void
apply_event(int64 account_id, M365PullCalendar *cal, M365PullBatch *batch, const cJSON *event,
			M365RoundStats *st)
{
	M365Event	ev;
	M365EventColumns cols;
	Jsonb	   *data;
	int64		conflict_event_id = 0;

	if (!m365_pull_item_map(account_id, event, &ev, &cols, &data))
	{
		/* No poison events: skipped, counted, its stored copy kept; read again when it next changes. */
		m365_store_events_pull_keep(batch, m365_pull_item_id(event));
		st->skipped++;
		return;
	}
	switch (m365_store_events_pull_apply(batch, cal->calendar_id, &cols, data, &conflict_event_id))
	{
		case M365_APPLY_INSERTED:
		case M365_APPLY_UPDATED:
			st->applied++;
			break;
		case M365_APPLY_CONFLICT:
			/* a changeKey that moved by itself is no conflict (GRAPH.md §11) */
			if (!m365_conflicts_only_etag_moved(account_id, conflict_event_id, &cols, data))
			{
				(void) m365_conflicts_remote_changed(m365_conflict_policy, account_id,
													 conflict_event_id, &cols, data);
				st->conflicts++;
			}
			break;
		case M365_APPLY_UNCHANGED:
			break;
	}
}

/*
 * The series masters fetched for this page, applied before its items (in
 * their own batch: a master is no item of the page). Not counted as fetched.
 */
static void
apply_masters(int64 account_id, M365PullCalendar *cal, M365Series *series, M365RoundStats *st,
			  MemoryContext event_cxt, M365PullWritten *written)
{
	int			n;
	const char *const *ids = m365_series_master_ids(series, &n);
	M365PullBatch *batch = m365_store_events_pull_begin(account_id, 0, ids, n, written);

	for (int i = 0; i < n; i++)
	{
		const cJSON *master = m365_series_master(series, i);
		MemoryContext outer;

		if (master == NULL)
			continue;
		MemoryContextReset(event_cxt);
		outer = MemoryContextSwitchTo(event_cxt);
		apply_event(account_id, cal, batch, master, st);
		MemoryContextSwitchTo(outer);
	}
	m365_store_events_pull_end(batch);
}

/* Apply the items of one page (after its series masters, if any); counts into stats. */
static void
apply_items(int64 account_id, M365PullCalendar *cal, M365DeltaPage *page, M365Series *series,
			M365RoundStats *st, M365PullWritten *written)
{
	const char **ids = palloc(sizeof(char *) * Max(page->n_items, 1));
	M365PullBatch *batch;
	int			i;
	int			n_masters = 0;
	const int64 *masters;
	MemoryContext event_cxt,
				batch_cxt;

	for (i = 0; i < page->n_items; i++)
		ids[i] = page->items[i].id;
	SPI_connect();
	/*
	 * each event's jsonb and row values go with it: the page's memory stays
	 * flat. A first block of 64 kB, which a reset keeps, holds a typical
	 * event's allocations: no malloc and free of further blocks per event.
	 */
	event_cxt = AllocSetContextCreate(CurrentMemoryContext, "m365sync pull event",
									  0, 64 * 1024, ALLOCSET_DEFAULT_MAXSIZE);
	if (series)
		apply_masters(account_id, cal, series, st, event_cxt, written);
	batch = m365_store_events_pull_begin(account_id, cal->full_round_id, ids, page->n_items, written);
	/* the masters of the page's events as they were: those left without events go after it */
	masters = m365_store_events_pull_masters(batch, &n_masters);
	batch_cxt = MemoryContextSwitchTo(event_cxt);
	for (i = 0; i < page->n_items; i++)
	{
		M365DeltaItem *it = &page->items[i];
		const cJSON *event = it->event;

		MemoryContextReset(event_cxt);
		st->fetched++;
		if (it->removed)
		{
			if (m365_store_events_pull_remove(batch, cal->calendar_id, it->id))
				st->deleted++;
			continue;
		}
		/* an occurrence stub takes its content from its master; none of a master gone */
		if (series && (event = m365_series_event_of(series, event)) == NULL)
			continue;
		/* the version we hold (a full round's relist): not even parsed */
		if (m365_store_events_pull_unchanged(batch, cal->calendar_id, it->id,
											 cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(event, M365_F_CHANGE_KEY))))
			continue;
		apply_event(account_id, cal, batch, event, st);
	}
	MemoryContextSwitchTo(batch_cxt);
	MemoryContextDelete(event_cxt);
	m365_store_events_pull_end(batch);
	if (series)
	{
		int			ng;
		const char *const *gids = m365_series_master_ids(series, &ng);

		st->deleted += m365_series_finish(series, account_id);
		(void) m365_store_events_series_drop_orphans(account_id, masters, n_masters, gids, ng);
	}
	else
		(void) m365_store_events_series_drop_orphans(account_id, masters, n_masters, NULL, 0);
	SPI_finish();
}

/*
 * Apply a parsed page and return the link that follows it (copied out of
 * the page, which is freed on every path).
 */
static char *
apply_page(int64 account_id, M365PullCalendar *cal, M365DeltaPage *page, M365Series *series,
		   M365RoundStats *st, M365PullWritten *written, bool *final)
{
	char	   *volatile link = NULL;

	PG_TRY();
	{
		apply_items(account_id, cal, page, series, st, written);
		*final = page->delta_link != NULL;
		link = pstrdup(*final ? page->delta_link : page->next_link);
	}
	PG_CATCH();
	{
		if (series)
			m365_series_free(series);	/* the page is the series state's */
		else
			m365_delta_page_free(page);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (series)
		m365_series_free(series);
	else
		m365_delta_page_free(page);
	return link;
}

static bool
fail_round(M365RoundStats *st, const M365GraphResult *res, const char *code)
{
	st->ok = false;
	if (res)
	{
		const char *state = res->transport == M365_HTTP_OK ?
			m365_graph_account_state(res->status, res->code) : NULL;

		if (state != NULL)		/* not this calendar's failure: the account's state */
			strlcpy(st->account_state, state, sizeof(st->account_state));
		st->transient = res->transient || res->transport != M365_HTTP_OK;
		st->has_retry_after = res->has_retry_after;
		st->retry_after_s = res->retry_after_s;
		if (res->code[0])
			code = res->code;
		else if (res->no_token)
			code = "noAccessToken";
		else if (res->transport != M365_HTTP_OK)
			code = "networkError";
		else if (code == NULL)
			code = psprintf("http%ld", res->status);
	}
	strlcpy(st->error, code ? code : "error", sizeof(st->error));
	return false;
}

/* The round's set of stored ids goes with it (the round's memory outlives many rounds). */
static void
forget_written(M365PullJob *job)
{
	m365_store_events_pull_written_free(job->written);
	job->written = NULL;
}

/* Move the job to its next calendar, or finish it. */
static void
next_calendar(M365PullJob *job)
{
	M365PullCalendar *cal;
	TimestampTz wstart;
	TimestampTz wend;

	if (job->next_calendar >= list_length(job->calendars))
	{
		job->done = true;
		forget_written(job);
		return;
	}
	cal = list_nth(job->calendars, job->next_calendar++);
	job->calendar = cal;
	job->restarted = false;
	job->stats->calendars++;
	current_window(&wstart, &wend);
	if (cal->link == NULL || (cal->link_is_final && (!cal->has_window || cal->window_start != wstart)))
		start_full_round(job->account_id, job->ms_user_id, cal, &job->url);
	else
		job->url = cal->link;
}

static void
fail_job(M365PullJob *job, const M365GraphResult *res, const char *code)
{
	(void) fail_round(job->stats, res, code);
	job->done = true;
	forget_written(job);
	/* a parked page is dropped: its cursor was not saved, a later round brings it again */
	m365_series_free(job->series);
	job->series = NULL;
}

/*
 * The answer to a series batch. Returns the parked page's series state once
 * every master is in, NULL while more are to come or when the job failed.
 */
static M365Series *
series_answer(M365PullJob *job, M365HttpRequest *req)
{
	M365Series *series = job->series;
	M365GraphResult res;

	if (!m365_series_take_answer(series, req, &res))
	{
		if (res.transport == M365_HTTP_OK && res.status == 401 && !job->token_retried)
		{
			/* One fresh token, then the same batch again. */
			job->token_retried = true;
			job->token = m365_account_access_token(job->account_id, job->token);
			if (job->token == NULL)
				fail_job(job, NULL, "noAccessToken");
			return NULL;
		}
		fail_job(job, &res, NULL);
		return NULL;
	}
	job->token_retried = false;
	if (m365_series_waiting(series))
		return NULL;
	job->series = NULL;
	return series;
}

/* After the calendar list (or without it): the calendars to pull, the first one's request. */
static void
begin_calendars(M365PullJob *job)
{
	job->listing = false;
	job->calendars = m365_store_calendars_to_pull(job->account_id);
	job->next_calendar = 0;
	next_calendar(job);
}

/*
 * An answer of the calendar list (calendars.c stores it; read at least
 * daily, GRAPH.md section 11). A failure is logged and the round goes on
 * with the calendars stored; the list is read again next round.
 */
static void
list_answer(M365PullJob *job, M365HttpRequest *req)
{
	M365GraphResult res;
	char	   *next;

	if (!m365_graph_take_calendars(req, job->url, ++job->list_pages, &job->listed, &next, &res))
	{
		if (res.transport == M365_HTTP_OK && res.status == 401 && !job->token_retried)
		{
			/* Graph refused the token: one fresh token, then the same page again. */
			job->token_retried = true;
			job->list_pages--;
			job->token = m365_account_access_token(job->account_id, job->token);
			if (job->token == NULL)
				fail_job(job, NULL, "noAccessToken");
			return;
		}
		ereport(LOG,
				(errmsg("m365sync: could not read the calendar list of account %lld: %s",
						(long long) job->account_id,
						res.code[0] ? res.code : res.transport != M365_HTTP_OK ? "networkError" : "error"),
				 errdetail("HTTP status %ld; trying again next round.", res.status)));
		begin_calendars(job);
		return;
	}
	job->token_retried = false;
	if (next != NULL)
	{
		job->url = next;
		return;
	}
	m365_calendars_apply_list(job->account_id, job->listed, false);
	job->listed = NIL;
	begin_calendars(job);
}

/*
 * Handle the answer to a job's request: apply the page and save the cursor,
 * or decide what comes next (fresh token, full round, failure). False when
 * it wrote nothing (no transaction to commit).
 */
static bool
handle_answer(M365PullJob *job, M365HttpRequest *req, bool own_transaction)
{
	M365PullCalendar *cal = job->calendar;
	M365GraphResult res;
	M365DeltaPage page;
	M365DeltaPage *pagep = &page;
	M365Series *series = NULL;
	char		err[128];
	char	   *link;
	bool		final;
	MemoryContext page_cxt;
	MemoryContext keep;
	bool		empty;

	if (job->listing)
	{
		list_answer(job, req);
		return true;
	}
	if (job->series != NULL)
	{
		/* a parked page: apply it once its series masters are in */
		if ((series = series_answer(job, req)) == NULL)
			return true;
		pagep = m365_series_page(series);
		goto apply;
	}
	if (!m365_graph_result(req, &res))
	{
		if (res.transport == M365_HTTP_OK && res.status == 401 && !job->token_retried)
		{
			/* Graph refused the token: one fresh token, then the same request again. */
			job->token_retried = true;
			job->token = m365_account_access_token(job->account_id, job->token);
			if (job->token == NULL)
				fail_job(job, NULL, "noAccessToken");
			return true;
		}
		if (!job->restarted && res.transport == M365_HTTP_OK &&
			m365_delta_cursor_lost(res.status, res.code))
		{
			/* The cursor is gone: a full round over the window, once. */
			job->restarted = true;
			start_full_round(job->account_id, job->ms_user_id, cal, &job->url);
			return true;
		}
		if (res.transport == M365_HTTP_OK && res.status == 404 && strcmp(res.code, "ErrorItemNotFound") == 0)
		{
			/*
			 * The calendar is gone (deleted, or its id changed; GRAPH.md
			 * §11): left out from now on, the list read again at once, and
			 * the account's other calendars go on in this round.
			 */
			ereport(LOG,
					(errmsg("m365sync: calendar %lld of account %lld answered 404 ErrorItemNotFound; it is left out until the calendar list is read again",
							(long long) cal->calendar_id, (long long) job->account_id)));
			m365_store_calendars_mark_gone(job->account_id, cal->calendar_id);
			m365_store_accounts_calendars_stale(job->account_id);
			job->calendar_gone = true;
			next_calendar(job);
			return true;
		}
		fail_job(job, &res, NULL);
		return true;
	}
	job->token_retried = false;

	if (m365_delta_page_parse(req->response.body, req->response.body_len, &page, err, sizeof(err)) != M365_DELTA_OK)
	{
		ereport(WARNING,
				(errmsg("m365sync: malformed delta page for account %lld", (long long) job->account_id),
				 errdetail("%s", err)));
		fail_job(job, NULL, "malformedResponse");
		return true;
	}
	/* occurrences or exceptions: park the page, fetch their masters first */
	if (cal->has_window)
	{
		M365SeriesWindow w = {cal->window_start, cal->window_end,
		iso_utc(cal->window_start), iso_utc(cal->window_end)};

		job->series = m365_series_plan(&page, job->ms_user_id, &w);
	}
	else
		job->series = m365_series_plan(&page, job->ms_user_id, NULL);
	if (job->series != NULL)
		return true;
	if (page.next_link != NULL && page.delta_link == NULL && m365_graph_same_origin(page.next_link))
	{
		/*
		 * The next page is asked for now, and comes while this one is
		 * applied: the network and Graph work while the database does. Its
		 * answer waits until this page has committed (or failed the job,
		 * and is dropped); nothing else changes.
		 */
		job->url = MemoryContextStrdup(CurrentMemoryContext, page.next_link);
		m365_http_stream_send_now();
	}
apply:
	if (!job->written_checked && cal->full_round_id != 0 && pagep->n_items > 0)
	{
		/* an initial sync: its pages need not look up ids the round did not store */
		job->written = m365_store_events_pull_written_new(job->account_id, cal->calendar_id,
														  cal->full_round_id);
		job->written_checked = true;
	}
	/* Page-sized scratch memory; only the link outlives it. */
	page_cxt = AllocSetContextCreate(CurrentMemoryContext, "m365sync page", ALLOCSET_DEFAULT_SIZES);
	keep = MemoryContextSwitchTo(page_cxt);
	empty = pagep->n_items == 0 && series == NULL;
	link = apply_page(job->account_id, cal, pagep, series, job->stats, job->written, &final);
	link = MemoryContextStrdup(keep, link);
	MemoryContextSwitchTo(keep);
	MemoryContextDelete(page_cxt);
	if (!m365_graph_same_origin(link))
	{
		/* A link to another host would carry our token there: never follow it. */
		fail_job(job, NULL, "untrustedLink");
		return true;
	}

	job->stats->pages++;
	cal->link = link;
	cal->link_is_final = final;
	if (final && cal->full_round_id == 0 && empty)
	{
		/*
		 * Nothing changed (a poll's usual answer): no page to commit with
		 * the cursor, so the new deltaLink is saved with the round's end,
		 * a wave of rounds in one transaction (save_cursors). A crash
		 * before that leaves the older deltaLink, which brings the same
		 * nothing again.
		 */
		cal->cursor_unsaved = true;
		next_calendar(job);
		return false;
	}
	if (final && cal->full_round_id != 0)
	{
		/* an initial sync stored every row it would look at, each marked seen */
		bool		initial = m365_store_events_pull_written_covers(job->written, cal->calendar_id,
																	cal->full_round_id);

		if (!initial)
			job->stats->deleted += m365_store_events_sweep(job->account_id, cal->calendar_id,
														   cal->full_round_id);
		/* masters whose series has no event left in the window go with them */
		if (!initial || m365_store_events_pull_written_masters(job->written))
		{
			SPI_connect();
			(void) m365_store_events_series_drop_orphans_in(job->account_id, cal->calendar_id);
			SPI_finish();
		}
		cal->full_round_id = 0;
	}
	m365_store_calendars_save_cursor(job->account_id, cal);

	/*
	 * A page and its cursor may commit asynchronously: a crash that loses
	 * the commit leaves the older cursor, and the page comes again and is
	 * applied idempotently. Only in a transaction of our own, and never one
	 * that saved a refreshed token (a lost rotated refresh token would cut
	 * the account off), which returns above.
	 */
	if (own_transaction)
		(void) set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
	if (final)
		next_calendar(job);
	else
		job->url = link;
	return true;
}

/*
 * handle_answer in the worker: its own transaction, and an ERROR fails this
 * job only (reported, rolled back; the cursor stays where it was).
 */
static void
handle_answer_isolated(M365PullJob *job, M365HttpRequest *req, MemoryContext keep)
{
	PG_TRY();
	{
		if (handle_answer(job, req, true))
			m365_commit_and_continue();
	}
	PG_CATCH();
	{
		m365_report_and_continue(keep);
		fail_job(job, NULL, "internalError");
	}
	PG_END_TRY();
}

void
m365_pull_job_answer(M365PullJob *job, M365HttpRequest *req, bool commit_each_page, MemoryContext keep)
{
	if (commit_each_page)
		handle_answer_isolated(job, req, keep);
	else
		(void) handle_answer(job, req, false);
}

bool
m365_pull_job_start(M365PullJob *job)
{
	bool		refreshed = false;

	job->stats->ok = true;
	job->calendar_gone = false;
	job->calendars = NIL;
	job->next_calendar = 0;
	job->done = false;
	job->token_retried = false;
	job->series = NULL;
	forget_written(job);
	job->written_checked = false;
	job->listed = NIL;
	job->list_pages = 0;
	if (job->list_calendars)
	{
		/* Calendar ids change and calendars go (GRAPH.md section 11): the list first, in the stream. */
		job->listing = true;
		job->url = m365_graph_calendars_url(job->ms_user_id);
	}
	else
		begin_calendars(job);
	if (!job->done && (job->token = m365_store_accounts_fresh_access_token(job->account_id)) == NULL)
	{
		/* A refresh (and its rotated refresh token) commits before any page can fail. */
		refreshed = true;
		job->token = m365_account_access_token(job->account_id, NULL);
		if (job->token == NULL)
			fail_job(job, NULL, "noAccessToken");
	}
	return refreshed;
}

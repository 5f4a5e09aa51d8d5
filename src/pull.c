/*
 * pull.c — brings Outlook's changes into m365sync.events (see pull.h).
 *
 * The flow is pages → delta_page → event_json/event_row → store_pull, with
 * the cursor saved in the same transaction as the page it follows, so a
 * crash at any instant resumes from the last committed page: nothing lost,
 * nothing twice. A lost cursor (410, syncStateNotFound, resyncRequired)
 * starts a full round that marks what it sees and, at its deltaLink, sweeps
 * the rest; event_ids of surviving events stay, pending local changes are
 * never dropped. The window moves with the calendar day: when the day
 * changes, the next round is a full one over the new window.
 *
 * Knows nothing of HTTP (graph.c) or SQL text (store_pull.c).
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "delta_page.h"
#include "event_json.h"
#include "event_row.h"
#include "graph.h"
#include "m365sync.h"
#include "oauth.h"
#include "pull.h"
#include "scheduler.h"
#include "store_pull.h"

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

/* The window for today: whole UTC days, so it moves once a day. */
static void
current_window(TimestampTz *start, TimestampTz *end)
{
	TimestampTz today = GetCurrentTimestamp();

	today -= today % USECS_PER_DAY_I64;
	*start = today - (int64) m365_window_past_s * USECS_PER_SEC;
	*end = today + (int64) m365_window_future_s * USECS_PER_SEC;
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


/* The whole Graph object as jsonb (cJSON prints with malloc: free it on error too). */
static Jsonb *
event_to_jsonb(const cJSON *event)
{
	char	   *json = cJSON_PrintUnformatted(event);
	Jsonb	   *volatile data = NULL;

	if (json == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	PG_TRY();
	{
		data = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
	}
	PG_CATCH();
	{
		cJSON_free(json);
		PG_RE_THROW();
	}
	PG_END_TRY();
	cJSON_free(json);
	return data;
}

/* Apply the items of one page; counts into stats. */
static void
apply_items(int64 account_id, M365PullCalendar *cal, M365DeltaPage *page, M365RoundStats *st)
{
	int			i;

	for (i = 0; i < page->n_items; i++)
	{
		M365DeltaItem *it = &page->items[i];

		st->fetched++;
		if (it->removed)
		{
			if (m365_pull_remove_event(account_id, it->id))
				st->deleted++;
		}
		else
		{
			M365Event	ev;
			M365EventError err;
			M365EventColumns cols;

			if (m365_event_parse(it->event, M365_EV_FROM_GRAPH, &ev, &err) != M365_EV_OK)
			{
				/* One odd event must not stop the calendar; the field, never content. */
				ereport(WARNING,
						(errmsg("m365sync: skipped an event Graph sent for account %lld",
								(long long) account_id),
						 errdetail("Field \"%s\" could not be read.", err.field)));
				continue;
			}
			m365_event_columns(&ev, &cols);
			switch (m365_pull_apply_event(account_id, cal->calendar_id, &cols,
										  event_to_jsonb(it->event), cal->full_round_id))
			{
				case M365_APPLY_INSERTED:
				case M365_APPLY_UPDATED:
					st->applied++;
					break;
				case M365_APPLY_CONFLICT:
					st->conflicts++;
					break;
				case M365_APPLY_UNCHANGED:
					break;
			}
		}
	}
}

/*
 * Apply a parsed page and return the link that follows it (copied out of
 * the page, which is freed on every path).
 */
static char *
apply_page(int64 account_id, M365PullCalendar *cal, M365DeltaPage *page,
		   M365RoundStats *st, bool *final)
{
	char	   *volatile link = NULL;

	PG_TRY();
	{
		apply_items(account_id, cal, page, st);
		*final = page->delta_link != NULL;
		link = pstrdup(*final ? page->delta_link : page->next_link);
	}
	PG_CATCH();
	{
		m365_delta_page_free(page);
		PG_RE_THROW();
	}
	PG_END_TRY();
	m365_delta_page_free(page);
	return link;
}

static bool
fail_round(M365RoundStats *st, const M365GraphResult *res, const char *code)
{
	st->ok = false;
	if (res)
	{
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

/* Follow one calendar's links to its deltaLink. */
static bool
pull_calendar(int64 account_id, const char *ms_user_id, M365PullCalendar *cal,
			  M365TokenSource *ts, bool commit_each_page, M365RoundStats *st)
{
	bool		restarted = false;
	char	   *url;
	TimestampTz wstart;
	TimestampTz wend;

	current_window(&wstart, &wend);
	if (cal->link == NULL || (cal->link_is_final && (!cal->has_window || cal->window_start != wstart)))
		start_full_round(account_id, ms_user_id, cal, &url);
	else
		url = cal->link;

	for (;;)
	{
		M365HttpRequest req;
		M365GraphResult res;
		M365DeltaPage page;
		char		err[128];
		MemoryContext page_cxt = AllocSetContextCreate(CurrentMemoryContext, "m365sync page",
													   ALLOCSET_DEFAULT_SIZES);
		MemoryContext old = MemoryContextSwitchTo(page_cxt);
		bool		final;

		if (commit_each_page)
		{
			/* A refresh (and its rotated refresh token) commits before the page can fail. */
			(void) m365_account_access_token(account_id, NULL);
			m365_commit_and_continue();
		}
		m365_graph_prepare(&req, M365_HTTP_GET, url);
		m365_http_add_header(&req, M365_PREFER_UTC);
		m365_http_add_header(&req, psprintf("Prefer: odata.maxpagesize=%d", M365_PULL_PAGE_SIZE));
		st->http_requests++;
		if (!m365_graph_send(&req, ts, &res))
		{
			MemoryContextSwitchTo(old);
			if (!restarted && res.transport == M365_HTTP_OK &&
				m365_delta_cursor_lost(res.status, res.code))
			{
				/* The cursor is gone: a full round over the window, once. */
				restarted = true;
				MemoryContextDelete(page_cxt);
				start_full_round(account_id, ms_user_id, cal, &url);
				continue;
			}
			(void) fail_round(st, &res, NULL);
			MemoryContextDelete(page_cxt);
			return false;
		}
		if (m365_delta_page_parse(req.response.body, req.response.body_len, &page, err, sizeof(err)) != M365_DELTA_OK)
		{
			MemoryContextSwitchTo(old);
			ereport(WARNING,
					(errmsg("m365sync: malformed delta page for account %lld", (long long) account_id),
					 errdetail("%s", err)));
			MemoryContextDelete(page_cxt);
			return fail_round(st, NULL, "malformedResponse");
		}

		url = apply_page(account_id, cal, &page, st, &final);
		MemoryContextSwitchTo(old);
		url = pstrdup(url);		/* the page's memory goes; the link stays */
		MemoryContextDelete(page_cxt);

		st->pages++;
		cal->link = url;
		cal->link_is_final = final;
		if (final && cal->full_round_id != 0)
		{
			st->deleted += m365_pull_sweep(account_id, cal->calendar_id, cal->full_round_id);
			cal->full_round_id = 0;
		}
		m365_pull_save_cursor(account_id, cal);
		if (commit_each_page)
			m365_commit_and_continue();
		if (final)
			return true;
	}
}

bool
m365_pull_account(int64 account_id, const char *ms_user_id, bool commit_each_page,
				  M365RoundStats *st)
{
	List	   *cals = m365_pull_calendars(account_id);
	ListCell   *lc;
	M365TokenSource ts;
	int64		ts_account = account_id;

	st->ok = true;
	m365_account_token_source(&ts, &ts_account);
	foreach(lc, cals)
	{
		M365PullCalendar *cal = lfirst(lc);

		st->calendars++;
		if (!pull_calendar(account_id, ms_user_id, cal, &ts, commit_each_page, st))
			return false;
	}
	return true;
}

/*
 * subscriptions.c — an account's Graph subscriptions (GRAPH.md §8), one
 * per synced calendar on users/{id}/calendars/{cid}/events: one on
 * users/{id}/events reports the default calendar only (GRAPH.md §11).
 * POST /subscriptions with a fresh random clientState when a calendar's
 * sync is switched on, PATCH to renew at half its lifetime, a new one when
 * Graph says it is gone (404, or the lifecycle event subscriptionRemoved)
 * and once a week (a new clientState, so a captured notification body does
 * not stay valid for ever), DELETE when the calendar's sync is switched
 * off, the calendar is gone, the notification URL is emptied or changed,
 * and at erasure; 0.1.0's
 * account-wide subscription is replaced the same way.
 *
 * Runs in the worker's rounds, never in a caller's transaction — except the
 * DELETE at erasure, which must happen while the account's token can still
 * be decrypted. Network through graph.c, rows through store_subscriptions.c. The
 * clientState is never logged; log lines carry account ids, HTTP statuses
 * and Graph error codes only, never a URL.
 */
#include "postgres.h"

#include <time.h>

#include "access/xact.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "crypto.h"
#include "extension_guard.h"
#include "graph.h"
#include "settings.h"
#include "notify_util.h"
#include "oauth.h"
#include "xact_util.h"
#include "store_accounts.h"
#include "store_calendars.h"
#include "store_subscriptions.h"
#include "subscriptions.h"

/* Accounts acted on per worker round. */
#define MAINTAIN_BATCH 32
/*
 * Seconds between passes that found less than a batch: the pass reads every
 * connected account, so at most once a second however busy the worker is.
 */
#define MAINTAIN_IDLE_S 1

/* clientState: 32 random bytes, base64url (43 characters). */
#define CLIENT_STATE_BYTES 32

static char *
expiration_from_now(void)
{
	time_t		t = time(NULL) + (time_t) M365_SUBSCRIPTION_LIFETIME_MIN * 60;
	struct tm	tm;
	char		buf[40];

	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S.0000000Z", &tm);
	return pstrdup(buf);
}

/* One call to /subscriptions[/{id}] with the account's token. */
static bool
subscription_call(int64 *account_id, M365HttpMethod method, const char *subscription_id,
				  char *body, M365HttpRequest *req, M365GraphResult *res)
{
	const char *coll[] = {"subscriptions", NULL};
	const char *one[] = {"subscriptions", subscription_id, NULL};
	M365TokenSource ts;
	bool		ok;

	m365_account_token_source(&ts, account_id);
	m365_graph_prepare(req, method, m365_graph_build_url(subscription_id ? one : coll, NULL));
	if (body != NULL)
	{
		req->content_type = "application/json";
		req->body = body;
		req->body_len = strlen(body);
	}
	ok = m365_graph_send(req, &ts, res);
	if (res->transport == M365_HTTP_ERR_CANCELLED)
		m365_graph_raise(res, "manage a change-notification subscription");
	return ok;
}

static const char *
failure_code(const M365GraphResult *res)
{
	if (res->no_token)
		return "no_token";
	if (res->code[0])
		return res->code;
	if (res->transport != M365_HTTP_OK)
		return "transport";
	return "http_error";
}

/* Take a malloc'd string into palloc. */
static char *
take(char *s)
{
	char	   *p = s ? pstrdup(s) : NULL;

	free(s);
	return p;
}

static bool
delete_remote(int64 account_id, const char *subscription_id)
{
	M365HttpRequest req;
	M365GraphResult res;
	int64		id = account_id;

	if (subscription_call(&id, M365_HTTP_DELETE, subscription_id, NULL, &req, &res) ||
		res.status == 404)
		return true;
	ereport(LOG,
			(errmsg("m365sync: could not delete the subscription of account %lld: %s",
					(long long) account_id, failure_code(&res)),
			 errdetail("HTTP status %ld; it expires by itself.", res.status)));
	return false;
}

/* A new subscription on one calendar; true when stored (or the calendar is gone). */
static bool
create(int64 account_id, const char *ms_user_id, const M365UnwatchedCalendar *cal)
{
	uint8		raw[CLIENT_STATE_BYTES];
	char		client_state[64];
	char	   *resource = psprintf("users/%s/calendars/%s/events", ms_user_id, cal->graph_id);
	char	   *json;
	char	   *body;
	char	   *sid = NULL,
			   *exp = NULL;
	M365HttpRequest req;
	M365GraphResult res;
	int64		id = account_id;
	int			rc;

	if (m365_random_bytes(raw, sizeof(raw)) != M365_CRYPTO_OK ||
		m365_base64url_encode(raw, sizeof(raw), client_state) != M365_CRYPTO_OK)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not generate random bytes")));
	m365_secure_zero(raw, sizeof(raw));
	json = m365_subscription_create_body(resource, m365_notification_url, m365_lifecycle_url,
										 expiration_from_now(), client_state);
	if (json == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	body = pstrdup(json);
	m365_secure_zero(json, strlen(json));
	free(json);

	if (!subscription_call(&id, M365_HTTP_POST, NULL, body, &req, &res))
	{
		m365_secure_zero(body, strlen(body));
		m365_secure_zero(client_state, sizeof(client_state));
		if (res.status == 404 && strcmp(res.code, "ErrorItemNotFound") == 0)
		{
			/* The calendar is gone (GRAPH.md §11): as for a pull's 404, the others go on. */
			ereport(LOG,
					(errmsg("m365sync: calendar %lld of account %lld answered 404 ErrorItemNotFound to a subscription; it is left out until the calendar list is read again",
							(long long) cal->calendar_id, (long long) account_id)));
			m365_store_calendars_mark_gone(account_id, cal->calendar_id);
			m365_store_accounts_calendars_stale(account_id);
			return true;
		}
		m365_store_accounts_subscription_error(account_id, failure_code(&res), M365_SUBSCRIPTION_RETRY_S);
		ereport(LOG,
				(errmsg("m365sync: could not create a subscription for account %lld: %s",
						(long long) account_id, failure_code(&res)),
				 errdetail("HTTP status %ld; trying again in %d seconds.", res.status,
						   M365_SUBSCRIPTION_RETRY_S)));
		return false;
	}
	m365_secure_zero(body, strlen(body));
	rc = m365_parse_subscription(req.response.body, req.response.body_len, &sid, &exp);
	m365_secure_zero(req.response.body, req.response.body_len);	/* Graph echoes the clientState */
	if (rc != 0)
	{
		m365_secure_zero(client_state, sizeof(client_state));
		m365_store_accounts_subscription_error(account_id, "malformedResponse", M365_SUBSCRIPTION_RETRY_S);
		return false;
	}
	sid = take(sid);
	exp = take(exp);
	m365_store_subscriptions_insert(account_id, cal->calendar_id, sid, client_state, m365_notification_url, exp);
	m365_secure_zero(client_state, sizeof(client_state));
	m365_store_accounts_subscription_error(account_id, NULL, 0);
	return true;
}

/* Renew; 1 renewed, 0 gone at Microsoft (404), -1 failed otherwise. */
static int
renew(int64 account_id, const char *subscription_id)
{
	char	   *json = m365_subscription_renew_body(expiration_from_now());
	char	   *body;
	char	   *sid = NULL,
			   *exp = NULL;
	M365HttpRequest req;
	M365GraphResult res;
	int64		id = account_id;
	int			rc;

	if (json == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	body = pstrdup(json);
	free(json);
	if (!subscription_call(&id, M365_HTTP_PATCH, subscription_id, body, &req, &res))
	{
		if (res.status == 404)
			return 0;
		m365_store_subscriptions_retry(account_id, subscription_id, M365_SUBSCRIPTION_RETRY_S);
		m365_store_accounts_subscription_error(account_id, failure_code(&res), 0);
		ereport(LOG,
				(errmsg("m365sync: could not renew the subscription of account %lld: %s",
						(long long) account_id, failure_code(&res)),
				 errdetail("HTTP status %ld; trying again in %d seconds.", res.status,
						   M365_SUBSCRIPTION_RETRY_S)));
		return -1;
	}
	rc = m365_parse_subscription(req.response.body, req.response.body_len, &sid, &exp);
	m365_secure_zero(req.response.body, req.response.body_len);	/* Graph echoes the clientState */
	if (rc != 0)
	{
		m365_store_subscriptions_retry(account_id, subscription_id, M365_SUBSCRIPTION_RETRY_S);
		m365_store_accounts_subscription_error(account_id, "malformedResponse", 0);
		return -1;
	}
	free(sid);
	exp = take(exp);
	m365_store_subscriptions_renewed(account_id, subscription_id, exp);
	m365_store_accounts_subscription_error(account_id, NULL, 0);
	return 1;
}

/*
 * Bring one account's subscriptions to what the settings and its calendars'
 * sync switches want, under the account's row lock (an erasure waits for
 * us, then finds what we made): unwanted ones deleted, due ones renewed,
 * gone ones remade, then one made for each synced calendar without one.
 */
static void
maintain_account(int64 account_id)
{
	M365Account acc;
	List	   *subs;
	List	   *unwatched;
	ListCell   *lc;
	const char *url = m365_notification_url ? m365_notification_url : "";

	if (!m365_store_accounts_lock(account_id, &acc) || acc.ms_user_id == NULL ||
		(strcmp(acc.status, "connected") != 0 && strcmp(acc.status, "error") != 0))
		return;
	subs = m365_store_subscriptions_of_account(account_id);
	foreach(lc, subs)
	{
		M365Subscription *sub = lfirst(lc);

		if (url[0] == '\0' || sub->recreate || !sub->wanted || sub->rotate_due ||
			strcmp(sub->notification_url, url) != 0)
		{
			/*
			 * Removed at Microsoft already, no longer wanted as it is, or a
			 * week old: its clientState is rotated by making a new one (below,
			 * as for any synced calendar without one).
			 */
			if (!sub->recreate)
				(void) delete_remote(account_id, sub->subscription_id);
			m365_store_subscriptions_delete(account_id, sub->subscription_id);
			if (sub->recreate || sub->rotate_due)
				m365_store_wakeups_mark(&account_id, 1);	/* what changed meanwhile */
		}
		else if (sub->renew_due && renew(account_id, sub->subscription_id) == 0)
		{
			/* Gone (expired or removed): a new one, and a pull for what was missed. */
			ereport(LOG,
					(errmsg("m365sync: a subscription of account %lld is gone at Microsoft, making a new one",
							(long long) account_id)));
			m365_store_subscriptions_delete(account_id, sub->subscription_id);
			m365_store_wakeups_mark(&account_id, 1);
		}
	}
	if (url[0] == '\0')
		return;
	unwatched = m365_store_subscriptions_unwatched(account_id);
	foreach(lc, unwatched)
	{
		/* A failure is recorded with a retry time; the rest wait for it too. */
		if (!create(account_id, acc.ms_user_id, lfirst(lc)))
			break;
	}
}

static TimestampTz last_idle_pass = 0;

int
m365_subscriptions_maintain(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	const char *url = m365_notification_url ? m365_notification_url : "";
	List	   *due;
	ListCell   *lc;
	int			n;

	if (last_idle_pass != 0 &&
		!TimestampDifferenceExceeds(last_idle_pass, GetCurrentTimestamp(), MAINTAIN_IDLE_S * 1000))
		return 0;
	/* Under 0.1.0's schema (before ALTER EXTENSION UPDATE) subscriptions wait as they are. */
	if (!m365_schema_is_0_2())
		return 0;
	m365_store_wakeups_prune();
	due = m365_store_subscriptions_due(url, MAINTAIN_BATCH);
	n = list_length(due);
	last_idle_pass = n < MAINTAIN_BATCH ? GetCurrentTimestamp() : 0;
	foreach(lc, due)
	{
		M365DueAccount *j = lfirst(lc);

		m365_commit_and_continue();
		PG_TRY();
		{
			maintain_account(j->account_id);
		}
		PG_CATCH();
		{
			/* One account's failure is its own: report, roll back, go on. */
			m365_report_and_continue(cxt);
			m365_store_accounts_subscription_error(j->account_id, "internalError", M365_SUBSCRIPTION_RETRY_S);
		}
		PG_END_TRY();
	}
	return n;
}

void
m365_subscriptions_purge_remote(int64 account_id)
{
	List	   *ids = m365_store_subscriptions_ids(account_id);
	ListCell   *lc;

	foreach(lc, ids)
		(void) delete_remote(account_id, (const char *) lfirst(lc));
}

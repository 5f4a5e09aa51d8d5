/*
 * store_subscriptions.h — SPI reads and writes of the change-notification tables
 * (store_subscriptions.c): m365sync.subscriptions, the subscription columns of
 * m365sync.accounts, and m365sync.account_wakeups (accounts a notification
 * marked due).
 *
 * The clientState goes in and out in clear here and is encrypted or
 * decrypted inside (keyring.h, row_id 0). Every function runs in the
 * caller's transaction. Nothing above this layer sees SQL.
 */
#ifndef M365SYNC_STORE_SUBSCRIPTIONS_H
#define M365SYNC_STORE_SUBSCRIPTIONS_H

#include "postgres.h"

#include "nodes/pg_list.h"

/* One of the account's subscription rows, as the worker sees it. */
typedef struct M365Subscription
{
	char	   *subscription_id;
	char	   *notification_url;
	int64		calendar_id;	/* 0: 0.1.0's account-wide subscription */
	bool		recreate;		/* removed at Microsoft */
	bool		renew_due;		/* renew_at has passed */
	bool		wanted;			/* its calendar exists, is synced and not gone */
	bool		rotate_due;		/* older than M365_CLIENT_STATE_MAX_AGE_S: remake it */
} M365Subscription;

/* A synced calendar that has no subscription yet. */
typedef struct M365UnwatchedCalendar
{
	int64		calendar_id;
	char	   *graph_id;
} M365UnwatchedCalendar;

/*
 * A clientState lives at most a week: a subscription that old is remade
 * (a new one, with a new clientState), so a captured notification body is
 * accepted for a week at most however often the subscription is renewed.
 */
#define M365_CLIENT_STATE_MAX_AGE_S (7 * 24 * 3600)

/* Least time between lifecycle renewals of one subscription (replays of reauthorizationRequired). */
#define M365_LIFECYCLE_GAP_S 600

/*
 * Connected accounts with a subscription to make (a synced calendar has
 * none, url not empty, no retry pending), renew, remake (gone, or due for
 * a new clientState) or remove (url changed or emptied, calendar no longer
 * synced or gone); at most limit, palloc'd M365DueAccount (store_accounts.h).
 */
extern List *m365_store_subscriptions_due(const char *notification_url, int limit);

/* The account's subscriptions, locked, oldest first (palloc'd M365Subscription). */
extern List *m365_store_subscriptions_of_account(int64 account_id);

/*
 * The account's synced calendars without a subscription, unless a failed
 * create waits for its retry (palloc'd M365UnwatchedCalendar).
 */
extern List *m365_store_subscriptions_unwatched(int64 account_id);

/* Every subscription id of an account (palloc'd strings), for erasure. */
extern List *m365_store_subscriptions_ids(int64 account_id);

/* A new subscription of a calendar: clientState encrypted, renewal at half its lifetime. */
extern void m365_store_subscriptions_insert(int64 account_id, int64 calendar_id, const char *subscription_id,
									  const char *client_state, const char *notification_url,
									  const char *expiration);
extern void m365_store_subscriptions_renewed(int64 account_id, const char *subscription_id,
									   const char *expiration);
/* Renewal failed: try again in delay_s seconds (or earlier if it expires). */
extern void m365_store_subscriptions_retry(int64 account_id, const char *subscription_id, int delay_s);
extern void m365_store_subscriptions_delete(int64 account_id, const char *subscription_id);

/*
 * Accounts whose subscription is subscription_id, with the clientState
 * decrypted (palloc'd, wipe after use): parallel arrays, returns how many.
 */
extern int	m365_store_subscriptions_lookup(const char *subscription_id, int64 **account_ids,
									  char ***client_states);

/*
 * Lifecycle events: renew at once, or remake (it is gone at Microsoft);
 * rate-limited per subscription (M365_LIFECYCLE_GAP_S, see the .c).
 */
extern void m365_store_subscriptions_flag(int64 account_id, const char *subscription_id, bool recreate);

/*
 * Least time between the start of an account's round and a round a
 * notification asks for (issue 23, webhook replay): a mark is due only once
 * that long has passed since the account's last round began, so however
 * many notifications come, one round per gap at most. Never dropped: a
 * change announced after a round's delta request is fetched by the next.
 * The condition, for the due-accounts query (alias a for the account), and
 * its second half for a mark w of account_wakeups:
 * M365_WAKEUP_GAP_PASSED("w.account_id").
 */
#define M365_WAKEUP_GAP_MS 1000
#define M365_WAKEUP_GAP_PASSED(account) \
	"NOT EXISTS (SELECT 1 FROM m365sync.sync_run_log r WHERE r.account_id = " account \
	"   AND r.started_at > pg_catalog.now() - pg_catalog.make_interval(secs => " CppAsString2(M365_WAKEUP_GAP_MS) " / 1000.0))"
#define M365_WAKEUP_MARK_DUE \
	"(EXISTS (SELECT 1 FROM m365sync.account_wakeups w WHERE w.account_id = a.account_id)" \
	" AND " M365_WAKEUP_GAP_PASSED("a.account_id") ")"

/* Mark accounts due (idempotent: a pending mark stays as it is). */
extern void m365_store_wakeups_mark(const int64 *account_ids, int n);

/* Milliseconds until the next mark that is not due yet falls due; -1 if none. */
extern long m365_store_wakeups_next_ms(void);

/* Forget due marks of accounts that no longer exist. */
extern void m365_store_wakeups_prune(void);

/* These accounts' rounds start: their due marks go (later notifications mark them again). */
extern void m365_store_wakeups_clear_many(const int64 *account_ids, int n);

/* purge.c: the rows of these accounts (connects itself). */
extern void m365_store_subscriptions_delete_accounts(const int64 *account_ids, int n);

/* purge.c: the rows of these accounts (connects itself). */
extern void m365_store_wakeups_delete_accounts(const int64 *account_ids, int n);

#endif							/* M365SYNC_STORE_SUBSCRIPTIONS_H */

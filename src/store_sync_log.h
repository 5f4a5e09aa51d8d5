/*
 * store_sync_log.h — the log of account rounds (store_sync_log.c) and the
 * counts a round keeps while it runs. Every function connects to SPI
 * itself and runs in the caller's transaction.
 */
#ifndef M365SYNC_STORE_SYNC_LOG_H
#define M365SYNC_STORE_SYNC_LOG_H

#include "postgres.h"

typedef struct M365RoundStats
{
	int			calendars;
	int			pages;
	int			fetched;
	int			applied;
	int			deleted;
	int			conflicts;
	int			skipped;		/* items the pull could not map (pull_item.c) */
	int			pushed;			/* outbox entries done (push.c) */
	int			http_requests;
	bool		ok;
	bool		transient;		/* worth retrying soon (throttled, 5xx, network) */
	bool		has_retry_after;
	double		retry_after_s;
	char		error[64];		/* an error code, never content */
	char		account_state[24];	/* "" or a state of the account the round met
									 * (graph_util.h: mailbox_disabled, access_denied) */
} M365RoundStats;

/*
 * Rounds of n accounts start (the caller holds their round locks): a round
 * still "running" was cut off by a crash or shutdown and is closed as
 * interrupted. The new run_ids go to run_ids[0 .. n).
 */
extern void m365_store_sync_log_start_many(const int64 *account_ids, int n, int64 *run_ids);

/* Close the round's row with its counts and outcome. */
extern void m365_store_sync_log_finish(int64 account_id, int64 run_id, const M365RoundStats *st);

/* The same for n rounds (a wave), in one statement. */
extern void m365_store_sync_log_finish_many(const int64 *account_ids, const int64 *run_ids,
											const M365RoundStats *const *st, int n);

/* Delete rounds that started more than days ago. */
extern void m365_store_sync_log_prune(int days);

/* purge.c: the rows of these accounts (connects itself). */
extern void m365_store_sync_log_delete_accounts(const int64 *account_ids, int n);

#endif							/* M365SYNC_STORE_SYNC_LOG_H */

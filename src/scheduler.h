/*
 * scheduler.h — the rounds of the accounts that are due (scheduler.c).
 */
#ifndef M365SYNC_SCHEDULER_H
#define M365SYNC_SCHEDULER_H

#include "pull.h"

/*
 * One round of sync worker worker_index (of n_workers): sync whatever is due
 * of its share of the accounts, committing page by page. Returns how many
 * milliseconds to sleep before the next round (the latch may cut it short).
 */
extern long m365_worker_round(int worker_index, int n_workers);

/* One account's round as m365sync.sync() reports it. */
typedef struct M365SyncOutcome
{
	int64		account_id;
	M365RoundStats stats;
} M365SyncOutcome;

/* The rounds of sync(): see scheduler.c. */
extern M365SyncOutcome *m365_sync_in_caller_xact(int64 account_id, int *n);

#endif							/* M365SYNC_SCHEDULER_H */

/*
 * push.h — sending an account's outbox to Microsoft Graph (push.c).
 */
#ifndef M365SYNC_PUSH_H
#define M365SYNC_PUSH_H

#include "postgres.h"

#include "pull.h"

/*
 * Send the account's due outbox entries in outbox order, in waves of at
 * most 4 requests in flight (4 $batch requests of up to
 * m365sync.push_batch_size writes each). Each answer is stored with its
 * entry's done-mark in the same transaction; when commit_each_wave (the
 * worker) every wave commits on its own, otherwise everything stays in the
 * caller's transaction (m365sync.sync()). Counts into stats (pushed,
 * conflicts, http_requests); a transient failure (throttling, 5xx, network)
 * stops the account's push with stats->ok false and the delay to honour.
 */
extern bool m365_push_account(int64 account_id, const char *ms_user_id,
							  bool commit_each_wave, M365RoundStats *stats);

#endif							/* M365SYNC_PUSH_H */

/*
 * subscriptions.h — Graph change-notification subscriptions of accounts
 * (subscriptions.c): made, renewed, remade and removed by the worker; removed
 * at erasure.
 */
#ifndef M365SYNC_SUBSCRIPTIONS_H
#define M365SYNC_SUBSCRIPTIONS_H

#include "postgres.h"

/*
 * Lifetime asked for, well inside the 4,230 minutes Graph allows for events
 * (GRAPH.md §8); renewed when half of it is left.
 */
#define M365_SUBSCRIPTION_LIFETIME_MIN	4000
/* A failed create or renewal is tried again after this long. */
#define M365_SUBSCRIPTION_RETRY_S		300

/*
 * The worker's pass over subscriptions, inside a round's transaction (with
 * an active snapshot): at most a batch of accounts, each in a transaction
 * of its own, an ERROR for one account reported and recorded without
 * touching the others. Returns how many accounts it acted on.
 */
extern int	m365_subscriptions_maintain(void);

/*
 * Erasure (purge.c, before the keys go): delete the account's subscriptions at Microsoft
 * while its token can still be decrypted. Best effort: a failed request is
 * logged and forgotten (the subscription then expires, and its
 * notifications fail the clientState check because the row is gone).
 */
extern void m365_subscriptions_purge_remote(int64 account_id);

#endif							/* M365SYNC_SUBSCRIPTIONS_H */

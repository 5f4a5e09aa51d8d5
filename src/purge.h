/*
 * purge.h — erasing a FlowAgent user (sql_keys.c), for purge_user() and for
 * disconnect(). Crypto-shredding: the user's data keys are destroyed first,
 * then the rows are deleted, all in the caller's transaction, through SPI as
 * the current user (RLS limits m365sync_definer to the acting user).
 */
#ifndef M365SYNC_PURGE_H
#define M365SYNC_PURGE_H

#include "postgres.h"

/*
 * Hook for removing an account's remote state at Microsoft (Graph
 * subscriptions) before its keys are destroyed — the access token needed for
 * that is encrypted under the data key about to go. NULL until the
 * subscriptions module sets it in _PG_init; purge then only forgets locally.
 */
typedef void (*m365_purge_remote_hook_type) (int64 account_id);
extern PGDLLIMPORT m365_purge_remote_hook_type m365_purge_remote_hook;

/* Erase every account of flowagent_user; returns how many accounts there were. */
extern int	m365_purge_user(const char *flowagent_user);

#endif							/* M365SYNC_PURGE_H */

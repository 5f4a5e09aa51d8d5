/*
 * purge.c — erasing a FlowAgent user, for purge_user() (sql_keys.c) and for
 * disconnect() (sql_connect.c).
 *
 * Crypto-shredding, in the caller's transaction, as the current user (RLS
 * limits m365sync_definer to the acting user): each account's Graph
 * subscriptions are deleted at Microsoft first (subscriptions.c; that needs
 * the account's token, encrypted under the data key about to go), then its
 * data key is destroyed (keyring.c), then its rows are deleted, each table
 * by its own store module. No SQL here. Messages name the step, never a
 * value.
 */
#include "postgres.h"

#include "keyring.h"
#include "purge.h"
#include "store_accounts.h"
#include "store_calendars.h"
#include "store_conflicts.h"
#include "store_events.h"
#include "store_outbox.h"
#include "store_removed_events.h"
#include "store_subscriptions.h"
#include "store_sync_log.h"
#include "subscriptions.h"

int
m365_purge_user(const char *flowagent_user)
{
	int64	   *ids;
	int			n;
	int			i;

	n = m365_store_accounts_ids_of_user_lock(flowagent_user, &ids);

	/*
	 * Remote first (it needs the tokens), then the keys: from here on no copy
	 * of these accounts' values — a backup, WAL, a dead tuple — decrypts. A
	 * copy of the old data_keys row itself stays unwrappable until the master
	 * key that wrapped it is retired, which is why erasure policy pairs purges
	 * with master key rotation (new first line, rewrap_keys, drop the old line).
	 */
	for (i = 0; i < n; i++)
	{
		m365_subscriptions_purge_remote(ids[i]);
		m365_destroy_data_key(ids[i]);
	}

	/*
	 * Deleting per table rather than relying on ON DELETE CASCADE keeps the
	 * order visible and lets RLS check every row for a user function caller:
	 * rows that point at an account before the account itself.
	 */
	m365_store_conflicts_delete_accounts(ids, n);
	m365_store_outbox_delete_accounts(ids, n);
	m365_store_events_delete_accounts(ids, n);
	m365_store_removed_events_delete_accounts(ids, n);
	m365_store_calendars_delete_accounts(ids, n);
	m365_store_subscriptions_delete_accounts(ids, n);
	m365_store_wakeups_delete_accounts(ids, n);
	m365_store_sync_log_delete_accounts(ids, n);
	m365_store_accounts_delete_accounts(ids, n);
	m365_store_oauth_states_delete_user(flowagent_user);
	return n;
}

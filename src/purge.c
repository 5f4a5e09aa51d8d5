/*
 * purge.c — erasing a FlowAgent user, for purge_user() (sql_keys.c) and for
 * disconnect() (sql_connect.c).
 *
 * Crypto-shredding, in the caller's transaction, through SPI as the current
 * user (RLS limits m365sync_definer to the acting user): each account's
 * Graph subscriptions are deleted at Microsoft first (subscriptions.c; that
 * needs the account's token, encrypted under the data key about to go),
 * then its data key is destroyed, then its rows are deleted. Messages name
 * the step, never a value.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "keyring.h"
#include "purge.h"
#include "spi_util.h"
#include "subscriptions.h"

/*
 * Deleting per table rather than relying on ON DELETE CASCADE keeps the
 * order visible and lets RLS check every row for a user function caller.
 */
static const char *const purge_statements[] = {
	"DELETE FROM m365sync.conflicts WHERE account_id = ANY ($1)",
	"DELETE FROM m365sync.outbox WHERE account_id = ANY ($1)",
	"DELETE FROM m365sync.events WHERE account_id = ANY ($1)",
	"DELETE FROM m365sync.calendars WHERE account_id = ANY ($1)",
	"DELETE FROM m365sync.subscriptions WHERE account_id = ANY ($1)",
	"DELETE FROM m365sync.account_wakeups WHERE account_id = ANY ($1)",
	"DELETE FROM m365sync.sync_run_log WHERE account_id = ANY ($1)",
	"DELETE FROM m365sync.accounts WHERE account_id = ANY ($1)",
};

int
m365_purge_user(const char *flowagent_user)
{
	M365SpiArgs user = {0};
	M365SpiArgs accounts = {0};
	Datum	   *ids;
	int			n;
	int			i;

	m365_spi_arg_text(&user, flowagent_user);
	SPI_connect();
	m365_spi_run("SELECT account_id FROM m365sync.accounts "
				 "WHERE flowagent_user = $1 ORDER BY account_id FOR UPDATE",
				 &user, SPI_OK_SELECT, "reading the user's accounts");
	n = (int) SPI_processed;
	ids = palloc(sizeof(Datum) * (n + 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
	}

	/*
	 * Remote first (it needs the tokens), then the keys: from here on no copy
	 * of these accounts' values — a backup, WAL, a dead tuple — decrypts. A
	 * copy of the old data_keys row itself stays unwrappable until the master
	 * key that wrapped it is retired, which is why erasure policy pairs purges
	 * with master key rotation (new first line, rewrap_keys, drop the old line).
	 */
	for (i = 0; i < n; i++)
	{
		m365_subscriptions_purge_remote(DatumGetInt64(ids[i]));
		m365_destroy_data_key(DatumGetInt64(ids[i]));
	}

	m365_spi_arg(&accounts, INT8ARRAYOID,
				 PointerGetDatum(construct_array(ids, n, INT8OID, sizeof(int64),
												 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
				 false);
	for (i = 0; i < (int) lengthof(purge_statements); i++)
		m365_spi_run(purge_statements[i], &accounts, SPI_OK_DELETE, "erasing rows of the user");
	m365_spi_run("DELETE FROM m365sync.oauth_states WHERE flowagent_user = $1",
				 &user, SPI_OK_DELETE, "erasing the user's sign-in states");
	SPI_finish();
	return n;
}

/*
 * store_subscriptions.c — SPI access to the change-notification tables (see
 * store_subscriptions.h).
 *
 * The clientState is encrypted here under the account's data key (table
 * subscriptions, column client_state, row_id 0) and decrypted only for
 * handle_notification's comparison; callers wipe the clear copy. The
 * lookup by subscription id runs on every notification, so its plan is
 * saved. Messages name the step, never a value.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "keyring.h"
#include "spi_util.h"
#include "store_accounts.h"
#include "store_placement.h"
#include "store_subscriptions.h"

#define SUB_TABLE	"subscriptions"
#define SUB_COLUMN	"client_state"

/* A subscription's calendar still wants it (SQL condition on s). */
#define WANTED \
	"EXISTS (SELECT 1 FROM m365sync.calendars c WHERE c.account_id = s.account_id" \
	"   AND c.calendar_id = s.calendar_id AND c.sync_enabled AND c.gone_at IS NULL)"

/* Synced calendars of account a without a subscription (SQL condition). */
#define UNWATCHED \
	"c.account_id = a.account_id AND c.sync_enabled AND c.gone_at IS NULL" \
	" AND NOT EXISTS (SELECT 1 FROM m365sync.subscriptions s" \
	"   WHERE s.account_id = c.account_id AND s.calendar_id = c.calendar_id)"

List *
m365_store_subscriptions_due(const char *notification_url, int limit)
{
	M365SpiArgs a = {0};
	MemoryContext caller = CurrentMemoryContext;
	List	   *out;

	/* the worker's: on a Citus node, only the accounts whose shards it holds */
	const char *owned = m365_store_placement_owned_filter("a.account_id");

	m365_spi_arg_text(&a, notification_url);
	m365_spi_arg(&a, INT4OID, Int32GetDatum(limit), false);
	m365_spi_arg(&a, INT4OID, Int32GetDatum(M365_CLIENT_STATE_MAX_AGE_S), false);
	SPI_connect();
	m365_spi_run(psprintf(
		/* subscriptions to renew, remake (gone, or a clientState due for rotation) or remove (a small table) */
		"SELECT a.account_id, a.ms_user_id FROM m365sync.subscriptions s"
		" JOIN m365sync.accounts a ON a.account_id = s.account_id"
		" WHERE a.status IN ('connected', 'error') AND a.ms_user_id IS NOT NULL%s"
		"   AND (s.renew_at <= pg_catalog.now() OR s.recreate OR s.notification_url <> $1"
		"        OR NOT " WANTED
		"        OR s.created_at <= pg_catalog.now() - pg_catalog.make_interval(secs => $3))"
		" UNION"
		/* synced calendars without one; with notifications off this reads nothing */
		" SELECT a.account_id, a.ms_user_id FROM m365sync.accounts a"
		" WHERE $1 <> '' AND a.status IN ('connected', 'error') AND a.ms_user_id IS NOT NULL%s"
		"   AND coalesce(a.subscription_retry_at, '-infinity') <= pg_catalog.now()"
		"   AND EXISTS (SELECT 1 FROM m365sync.calendars c WHERE " UNWATCHED ")"
		" ORDER BY 1 LIMIT $2", owned, owned),
		&a, SPI_OK_SELECT, "finding subscriptions to maintain");
	out = m365_store_accounts_of_result(caller);
	SPI_finish();
	return out;
}

List *
m365_store_subscriptions_of_account(int64 account_id)
{
	M365SpiArgs a = {0};
	MemoryContext caller = CurrentMemoryContext;
	List	   *out = NIL;
	uint64		n;

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg(&a, INT4OID, Int32GetDatum(M365_CLIENT_STATE_MAX_AGE_S), false);
	SPI_connect();
	/* locked, then read: Citus locks rows only in a single-table query of one shard */
	m365_spi_run("SELECT 1 FROM m365sync.subscriptions s WHERE s.account_id = $1 FOR UPDATE",
				 &a, SPI_OK_SELECT, "locking subscriptions");
	n = m365_spi_run("SELECT s.subscription_id, s.notification_url, coalesce(s.calendar_id, 0), s.recreate,"
					 " s.renew_at <= pg_catalog.now(), " WANTED ","
					 " s.created_at <= pg_catalog.now() - pg_catalog.make_interval(secs => $2)"
					 " FROM m365sync.subscriptions s WHERE s.account_id = $1"
					 " ORDER BY s.created_at",
					 &a, SPI_OK_SELECT, "reading subscriptions");
	for (uint64 i = 0; i < n; i++)
	{
		M365Subscription *sub = MemoryContextAllocZero(caller, sizeof(M365Subscription));
		MemoryContext spi = MemoryContextSwitchTo(caller);

		sub->subscription_id = m365_spi_row_text(i, 1, caller);
		sub->notification_url = m365_spi_row_text(i, 2, caller);
		sub->calendar_id = m365_spi_row_int8(i, 3);
		sub->recreate = m365_spi_row_bool(i, 4);
		sub->renew_due = m365_spi_row_bool(i, 5);
		sub->wanted = m365_spi_row_bool(i, 6);
		sub->rotate_due = m365_spi_row_bool(i, 7);
		out = lappend(out, sub);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return out;
}

List *
m365_store_subscriptions_unwatched(int64 account_id)
{
	M365SpiArgs a = {0};
	MemoryContext caller = CurrentMemoryContext;
	List	   *out = NIL;
	uint64		n;

	m365_spi_arg_int8(&a, account_id);
	SPI_connect();
	n = m365_spi_run("SELECT c.calendar_id, c.graph_id FROM m365sync.accounts a"
					 " JOIN m365sync.calendars c ON " UNWATCHED
					 " WHERE a.account_id = $1"
					 "   AND coalesce(a.subscription_retry_at, '-infinity') <= pg_catalog.now()"
					 " ORDER BY c.calendar_id",
					 &a, SPI_OK_SELECT, "finding calendars without a subscription");
	for (uint64 i = 0; i < n; i++)
	{
		M365UnwatchedCalendar *c = MemoryContextAllocZero(caller, sizeof(M365UnwatchedCalendar));
		MemoryContext spi = MemoryContextSwitchTo(caller);

		c->calendar_id = m365_spi_row_int8(i, 1);
		c->graph_id = m365_spi_row_text(i, 2, caller);
		out = lappend(out, c);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return out;
}

List *
m365_store_subscriptions_ids(int64 account_id)
{
	M365SpiArgs a = {0};
	MemoryContext caller = CurrentMemoryContext;
	List	   *out = NIL;
	uint64		n;

	m365_spi_arg_int8(&a, account_id);
	SPI_connect();
	n = m365_spi_run("SELECT subscription_id FROM m365sync.subscriptions WHERE account_id = $1 AND NOT recreate",
					 &a, SPI_OK_SELECT, "reading subscriptions");
	for (uint64 i = 0; i < n; i++)
	{
		MemoryContext spi = MemoryContextSwitchTo(caller);

		out = lappend(out, m365_spi_row_text(i, 1, caller));
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return out;
}

void
m365_store_subscriptions_insert(int64 account_id, int64 calendar_id, const char *subscription_id,
						  const char *client_state, const char *notification_url,
						  const char *expiration)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text(&a, subscription_id);
	m365_spi_arg_bytea(&a, m365_encrypt_text(SUB_TABLE, SUB_COLUMN, account_id, 0, client_state));
	m365_spi_arg_text(&a, notification_url);
	m365_spi_arg_text(&a, expiration);
	m365_spi_arg_int8(&a, calendar_id);
	m365_spi_exec("INSERT INTO m365sync.subscriptions (account_id, subscription_id, client_state, notification_url,"
		 " expires_at, renew_at, calendar_id)"
		 " SELECT $1, $2, $3, $4, x, pg_catalog.now() + (x - pg_catalog.now()) / 2, $6"
		 " FROM CAST($5 AS timestamptz) AS x",
		 &a, SPI_OK_INSERT, "storing a subscription");
}

void
m365_store_subscriptions_renewed(int64 account_id, const char *subscription_id, const char *expiration)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text(&a, subscription_id);
	m365_spi_arg_text(&a, expiration);
	m365_spi_exec("UPDATE m365sync.subscriptions SET renewed_at = pg_catalog.now(), expires_at = x,"
		 " renew_at = pg_catalog.now() + (x - pg_catalog.now()) / 2"
		 " FROM CAST($3 AS timestamptz) AS x WHERE account_id = $1 AND subscription_id = $2",
		 &a, SPI_OK_UPDATE, "renewing a subscription");
}

void
m365_store_subscriptions_retry(int64 account_id, const char *subscription_id, int delay_s)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text(&a, subscription_id);
	m365_spi_arg(&a, INT4OID, Int32GetDatum(delay_s), false);
	m365_spi_exec("UPDATE m365sync.subscriptions SET renew_at = pg_catalog.now() + pg_catalog.make_interval(secs => $3)"
		 " WHERE account_id = $1 AND subscription_id = $2",
		 &a, SPI_OK_UPDATE, "postponing a subscription renewal");
}

void
m365_store_subscriptions_delete(int64 account_id, const char *subscription_id)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text(&a, subscription_id);
	m365_spi_exec("DELETE FROM m365sync.subscriptions WHERE account_id = $1 AND subscription_id = $2",
		 &a, SPI_OK_DELETE, "forgetting a subscription");
}

static SPIPlanPtr lookup_plan = NULL;

int
m365_store_subscriptions_lookup(const char *subscription_id, int64 **account_ids, char ***client_states)
{
	M365SpiArgs a = {0};
	MemoryContext caller = CurrentMemoryContext;
	bytea	  **sealed;
	int			n;

	m365_spi_arg_text(&a, subscription_id);
	SPI_connect();
	n = (int) m365_spi_run_saved(&lookup_plan,
								 "SELECT account_id, client_state FROM m365sync.subscriptions WHERE subscription_id = $1",
								 &a, SPI_OK_SELECT, 0, "finding a subscription");
	*account_ids = MemoryContextAlloc(caller, sizeof(int64) * Max(n, 1));
	*client_states = MemoryContextAlloc(caller, sizeof(char *) * Max(n, 1));
	sealed = palloc(sizeof(bytea *) * Max(n, 1));
	/* read every row first: decryption may run SPI of its own */
	for (int i = 0; i < n; i++)
	{
		(*account_ids)[i] = m365_spi_row_int8(i, 1);
		sealed[i] = m365_spi_row_bytea(i, 2, CurrentMemoryContext);
	}
	for (int i = 0; i < n; i++)
	{
		MemoryContext spi = MemoryContextSwitchTo(caller);

		(*client_states)[i] = m365_decrypt_text(SUB_TABLE, SUB_COLUMN, (*account_ids)[i], 0, sealed[i]);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return n;
}

void
m365_store_subscriptions_flag(int64 account_id, const char *subscription_id, bool recreate)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text(&a, subscription_id);
	m365_spi_arg(&a, BOOLOID, BoolGetDatum(recreate), false);
	m365_spi_arg(&a, INT4OID, Int32GetDatum(M365_LIFECYCLE_GAP_S), false);
	/*
	 * Idempotent, and rate-limited per subscription: a renewal asked for
	 * while one is pending, or within M365_LIFECYCLE_GAP_S of the last
	 * renewal, changes nothing, so a replayed
	 * reauthorizationRequired costs no PATCH. Remaking happens once: the
	 * new subscription has a new id and clientState, and the old body then
	 * matches nothing.
	 */
	m365_spi_exec("UPDATE m365sync.subscriptions SET renew_at = pg_catalog.now(), recreate = recreate OR $3"
		 " WHERE account_id = $1 AND subscription_id = $2"
		 "   AND ($3 AND NOT recreate"
		 "        OR NOT $3 AND renew_at > pg_catalog.now()"
		 "           AND coalesce(renewed_at, '-infinity')"
		 "               <= pg_catalog.now() - pg_catalog.make_interval(secs => $4))",
		 &a, SPI_OK_UPDATE, "flagging a subscription");
}

static SPIPlanPtr mark_plan = NULL;

void
m365_store_wakeups_mark(const int64 *account_ids, int n)
{
	M365SpiArgs a = {0};

	if (n <= 0)
		return;
	m365_spi_arg_int8_array(&a, account_ids, n);
	SPI_connect();
	/* a pending mark takes no second one: a replayed body costs an index probe */
	m365_spi_run_saved(&mark_plan,
					   "INSERT INTO m365sync.account_wakeups (account_id)"
					   " SELECT DISTINCT pg_catalog.unnest($1) ON CONFLICT (account_id) DO NOTHING",
					   &a, SPI_OK_INSERT, 0, "marking accounts due");
	SPI_finish();
}

long
m365_store_wakeups_next_ms(void)
{
	long		ms = -1;
	bool		isnull;
	Datum		d;

	SPI_connect();
	/* marks held back by the gap after their account's last round (M365_WAKEUP_MARK_DUE) */
	m365_spi_run("SELECT pg_catalog.ceil(pg_catalog.date_part('epoch', pg_catalog.min(x.due) - pg_catalog.now()) * 1000)::int8"
				 " FROM (SELECT (SELECT pg_catalog.max(r.started_at) FROM m365sync.sync_run_log r"
				 "                WHERE r.account_id = w.account_id AND r.started_at > pg_catalog.now()"
				 "                  - pg_catalog.make_interval(secs => " CppAsString2(M365_WAKEUP_GAP_MS) " / 1000.0))"
				 "              + pg_catalog.make_interval(secs => " CppAsString2(M365_WAKEUP_GAP_MS) " / 1000.0) AS due"
				 "         FROM m365sync.account_wakeups w) x"
				 " WHERE x.due > pg_catalog.now()",
				 NULL, SPI_OK_SELECT, "finding the next due mark");
	d = m365_spi_row_datum(0, 1, &isnull);
	if (!isnull)
		ms = (long) DatumGetInt64(d);
	SPI_finish();
	return ms;
}

void
m365_store_wakeups_prune(void)
{
	m365_spi_exec("DELETE FROM m365sync.account_wakeups w"
		 " WHERE NOT EXISTS (SELECT 1 FROM m365sync.accounts a WHERE a.account_id = w.account_id)",
		 NULL, SPI_OK_DELETE, "pruning due marks");
}

void
m365_store_wakeups_clear_many(const int64 *account_ids, int n)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8_array(&a, account_ids, n);
	m365_spi_exec("DELETE FROM m365sync.account_wakeups WHERE account_id = ANY ($1)",
				  &a, SPI_OK_DELETE, "clearing due marks");
}

/* purge.c's erasure of a user's rows (see purge.c for the order). */
void
m365_store_subscriptions_delete_accounts(const int64 *account_ids, int n)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8_array(&a, account_ids, n);
	m365_spi_exec("DELETE FROM m365sync.subscriptions WHERE account_id = ANY ($1)",
				  &a, SPI_OK_DELETE, "erasing rows of the user");
}

/* purge.c's erasure of a user's rows (see purge.c for the order). */
void
m365_store_wakeups_delete_accounts(const int64 *account_ids, int n)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8_array(&a, account_ids, n);
	m365_spi_exec("DELETE FROM m365sync.account_wakeups WHERE account_id = ANY ($1)",
				  &a, SPI_OK_DELETE, "erasing rows of the user");
}

/*
 * sql_citus.c — the SQL-callable pieces of a distributed m365sync
 * (SPEC §2 "Scale-out"); m365sync.distribute() itself is SQL (70_citus.sql).
 *
 * m365sync._acting_owns(account_id) is the row-level-security check of every
 * per-account table: Citus refuses subqueries in policies on distributed
 * tables, so the policy calls this instead (store_placement.c reads the
 * account row under the accounts policy, on the node evaluating it).
 * m365sync._wake_here() asks this node's worker to wake at commit; a
 * coordinator routes it to the node holding an account's shards.
 */
#include "postgres.h"

#include "fmgr.h"

#include "store_placement.h"
#include "wake.h"

PG_FUNCTION_INFO_V1(m365sync_acting_owns);

Datum
m365sync_acting_owns(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(m365_store_placement_acting_owns(PG_GETARG_INT64(0)));
}

PG_FUNCTION_INFO_V1(m365sync_wake_here);

Datum
m365sync_wake_here(PG_FUNCTION_ARGS)
{
	m365_wake_worker_at_commit();
	PG_RETURN_BOOL(true);
}

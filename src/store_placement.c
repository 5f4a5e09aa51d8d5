/*
 * store_placement.c — SPI on Citus's catalog and the routed calls of a
 * distributed m365sync (see store_placement.h). Citus's own tables and
 * functions are named only here, and only after the check that m365sync is
 * distributed, so a server without Citus never parses a query naming them.
 *
 * The worker's ownership filter names the shards of m365sync.accounts this
 * node holds (pg_dist_placement in this node's group): every per-account
 * table is co-located with accounts, so the account's events, outbox and
 * the rest are on the same node, and the round's queries run there by local
 * execution. After a shard move the next round of each node reads the new
 * placements.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "identity.h"
#include "spi_util.h"
#include "store_placement.h"
#include "wake.h"

/* Distribution is for good once seen; "not distributed" is asked again each transaction. */
static bool distributed_seen = false;
static LocalTransactionId not_distributed_lxid = InvalidLocalTransactionId;

bool
m365_store_placement_distributed(void)
{
	bool		dist;

	if (distributed_seen)
		return true;
	/* no Citus in this database: a catalog cache lookup, no query */
	if (!OidIsValid(get_extension_oid("citus", true)))
		return false;
	if (MyProc != NULL && LocalTransactionIdIsValid(not_distributed_lxid) &&
		not_distributed_lxid == MyProc->lxid)
		return false;
	SPI_connect();
	m365_spi_run_read_only("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition"
						   " WHERE logicalrelid OPERATOR(pg_catalog.=) 'm365sync.accounts'::pg_catalog.regclass)",
						   NULL, SPI_OK_SELECT, "asking Citus whether m365sync is distributed");
	dist = m365_spi_get_bool(1);
	SPI_finish();
	if (dist)
		distributed_seen = true;
	else if (MyProc != NULL)
		not_distributed_lxid = MyProc->lxid;
	return dist;
}

char *
m365_store_placement_owned_filter(const char *col)
{
	StringInfoData s;
	uint64		n;
	uint64		i;

	if (!m365_store_placement_distributed())
		return "";
	initStringInfo(&s);
	SPI_connect();
	n = m365_spi_run_read_only("SELECT s.shardid FROM pg_catalog.pg_dist_shard s"
							   " JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid"
							   " WHERE s.logicalrelid = 'm365sync.accounts'::pg_catalog.regclass"
							   "   AND p.groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group)"
							   " ORDER BY 1",
							   NULL, SPI_OK_SELECT, "finding the shards this node holds");
	if (n == 0)
		appendStringInfoString(&s, " AND false");
	else
	{
		appendStringInfo(&s, " AND pg_catalog.get_shard_id_for_distribution_column("
						 "'m365sync.accounts', %s) IN (", col);
		for (i = 0; i < n; i++)
			appendStringInfo(&s, "%s" INT64_FORMAT, i ? ", " : "", m365_spi_row_int8(i, 1));
		appendStringInfoChar(&s, ')');
	}
	SPI_finish();
	return s.data;
}

/*
 * Citus's SQL functions get_shard_id_for_distribution_column and shard_name,
 * called through fmgr as the query "SELECT to_regclass(shard_name($1,
 * get_shard_id_for_distribution_column($1, $2)))" would call them, without
 * the executor around them: every events() call asks this twice (the
 * coordinator for user_accounts, the node for events and accounts), and the
 * statement cost more than the functions (test/bench/citus). Nothing is
 * cached here but the functions' lookups, dropped with any change of
 * pg_proc: Citus answers from its own metadata cache, which it invalidates
 * itself when shards move or split, so a moved shard is never named.
 */
typedef struct CitusFn
{
	Oid			oid;
	FmgrInfo	flinfo;
}			CitusFn;

static CitusFn shard_id_fn,
			shard_name_fn;
static int	shard_name_nargs;
static bool citus_fns_callback = false;

static void
forget_citus_fns(Datum arg, int cacheid, uint32 hashvalue)
{
	shard_id_fn.oid = InvalidOid;
	shard_name_fn.oid = InvalidOid;
}

static Oid
citus_fn_oid(const char *name, int nargs, const Oid *types)
{
	return LookupFuncName(list_make2(makeString("pg_catalog"), makeString(unconstify(char *, name))),
						  nargs, types, true);
}

static void
citus_fns_look_up(void)
{
	static const Oid id_types[] = {REGCLASSOID, ANYOID};
	static const Oid name_types[] = {REGCLASSOID, INT8OID, BOOLOID};
	MemoryContext old;

	if (OidIsValid(shard_id_fn.oid) && OidIsValid(shard_name_fn.oid))
		return;
	if (!citus_fns_callback)
	{
		CacheRegisterSyscacheCallback(PROCOID, forget_citus_fns, (Datum) 0);
		citus_fns_callback = true;
	}
	shard_id_fn.oid = InvalidOid;
	shard_name_fn.oid = InvalidOid;
	/* shard_name has a third argument (skip_qualify_public) since Citus 13.1 */
	shard_name_nargs = 3;
	shard_name_fn.oid = citus_fn_oid("shard_name", 3, name_types);
	if (!OidIsValid(shard_name_fn.oid))
	{
		shard_name_nargs = 2;
		shard_name_fn.oid = citus_fn_oid("shard_name", 2, name_types);
	}
	shard_id_fn.oid = citus_fn_oid("get_shard_id_for_distribution_column", 2, id_types);
	if (!OidIsValid(shard_id_fn.oid) || !OidIsValid(shard_name_fn.oid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("m365sync: Citus's functions get_shard_id_for_distribution_column and shard_name are missing")));
	old = MemoryContextSwitchTo(TopMemoryContext);
	fmgr_info(shard_name_fn.oid, &shard_name_fn.flinfo);
	fmgr_info(shard_id_fn.oid, &shard_id_fn.flinfo);
	/* the type of its "any" argument comes from the call's expression, as from a query's */
	shard_id_fn.flinfo.fn_expr = (Node *) makeFuncExpr(shard_id_fn.oid, INT8OID,
													   list_make2(makeNullConst(REGCLASSOID, -1, InvalidOid),
																  makeNullConst(INT8OID, -1, InvalidOid)),
													   InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	MemoryContextSwitchTo(old);
}

char *
m365_store_placement_local_shard(const char *table, int64 account_id)
{
	LOCAL_FCINFO(fcinfo, 3);
	Oid			relid;
	Datum		shard_id;
	Datum		name;
	Oid			shard;
	char	   *nsp;
	char	   *rel;

	citus_fns_look_up();
	relid = DatumGetObjectId(DirectFunctionCall1(regclassin, CStringGetDatum(table)));

	InitFunctionCallInfoData(*fcinfo, &shard_id_fn.flinfo, 2, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(relid);
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = Int64GetDatum(account_id);
	fcinfo->args[1].isnull = false;
	shard_id = FunctionCallInvoke(fcinfo);
	if (fcinfo->isnull)
		return NULL;

	InitFunctionCallInfoData(*fcinfo, &shard_name_fn.flinfo, shard_name_nargs, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(relid);
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = shard_id;
	fcinfo->args[1].isnull = false;
	fcinfo->args[2].value = BoolGetDatum(true);	/* the default */
	fcinfo->args[2].isnull = false;
	name = FunctionCallInvoke(fcinfo);
	if (fcinfo->isnull)
		return NULL;

	/* to_regclass(): NULL when the shard is not on this node */
	shard = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(TextDatumGetCString(name))),
							 NoLock, true);
	if (!OidIsValid(shard))
		return NULL;
	/*
	 * always schema-qualified (shard_name's text is not, where the schema is
	 * public): statements on shards are kept, and PostgreSQL parses a kept
	 * one again under another search_path (_acting_owns has none of its own)
	 */
	nsp = get_namespace_name(get_rel_namespace(shard));
	rel = get_rel_name(shard);
	if (nsp == NULL || rel == NULL)
		return NULL;			/* dropped since */
	return (char *) quote_qualified_identifier(nsp, rel);
}

/*
 * Plans of statements on this node's shards, by statement and shard: a node
 * holds some of each table's shards (32 by default), and a few statements
 * run this way. PostgreSQL's plan cache replans one whose shard changed; a
 * shard moved away is no longer named by m365_store_placement_local_shard.
 */
#define SHARD_PLANS 64
static struct
{
	const char *sql;
	char		shard[2 * NAMEDATALEN + 2];
	SPIPlanPtr	plan;
}			shard_plans[SHARD_PLANS];
static int	shard_plans_next = 0;

bool
m365_store_placement_run_on_shard(const char *table, int64 account_id, const char *sql,
								  const M365SpiArgs *a, long limit, bool read_only)
{
	char	   *shard = m365_store_placement_local_shard(table, account_id);
	int			i;

	if (shard == NULL)
		return false;
	if (strlen(shard) >= sizeof(shard_plans[0].shard))
		elog(ERROR, "m365sync: shard name too long");
	for (i = 0; i < SHARD_PLANS; i++)
		if (shard_plans[i].plan != NULL && shard_plans[i].sql == sql && strcmp(shard_plans[i].shard, shard) == 0)
			break;
	if (i == SHARD_PLANS)
	{
		i = shard_plans_next;
		shard_plans_next = (shard_plans_next + 1) % SHARD_PLANS;
		m365_spi_forget_saved(&shard_plans[i].plan);
		/* an entry counts only with its plan, so a failed plan leaves none */
		shard_plans[i].sql = sql;
		strlcpy(shard_plans[i].shard, shard, sizeof(shard_plans[i].shard));
	}
	if (read_only)
		m365_spi_run_saved_read_only(&shard_plans[i].plan, shard_plans[i].plan ? NULL : psprintf(sql, shard),
									 a, SPI_OK_SELECT, limit, NULL);
	else
		m365_spi_run_saved(&shard_plans[i].plan, shard_plans[i].plan ? NULL : psprintf(sql, shard),
						   a, SPI_OK_SELECT, limit, NULL);
	return true;
}

uint64
m365_store_placement_run_routed_read(SPIPlanPtr *slot, const char *sql, const M365SpiArgs *a, long limit)
{
	int			level = NewGUCNestLevel();
	uint64		n;

	/*
	 * Citus 13 (adaptive_executor.c, DecideTransactionPropertiesForTaskList;
	 * executor_util_tasks.c, TaskListRequiresRollback): a read-only task in
	 * a transaction block opens a remote one only with this setting on, or
	 * when the transaction is already coordinated (it has a remote
	 * transaction somewhere), and then uses the connection that wrote the
	 * placement. Under a snapshot for the whole transaction the remote
	 * block stays, so two reads of one transaction agree.
	 */
	if (!IsolationUsesXactSnapshot())
		(void) set_config_option("citus.select_opens_transaction_block", "off", PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	n = m365_spi_run_saved(slot, *slot ? NULL : sql, a, SPI_OK_SELECT, limit, NULL);
	AtEOXact_GUC(true, level);
	return n;
}

/* The last account the acting user was found to own, in which transaction, as whom. */
static LocalTransactionId owns_lxid = InvalidLocalTransactionId;
static int64 owns_account = 0;
static char owns_user[256];

bool
m365_store_placement_acting_owns(int64 account_id)
{
	static SPIPlanPtr owns_plan;
	static const char *owns_on_shard = "SELECT 1 FROM %1$s a WHERE a.account_id OPERATOR(pg_catalog.=) $1";
	const char *user = m365_flowagent_user;
	M365SpiArgs a = {0};
	bool		owns;

	if (user == NULL || user[0] == '\0' || strlen(user) >= sizeof(owns_user) || MyProc == NULL)
		return false;
	if (owns_lxid == MyProc->lxid && owns_account == account_id && strcmp(owns_user, user) == 0)
		return true;

	m365_spi_arg_int8(&a, account_id);
	SPI_connect();
	/* the accounts policy keeps only the acting user's rows */
	if (!m365_store_placement_distributed())
		owns = m365_spi_run_saved_read_only(&owns_plan, "SELECT 1 FROM m365sync.accounts a"
											" WHERE a.account_id OPERATOR(pg_catalog.=) $1",
											&a, SPI_OK_SELECT, 1, "checking the acting user's account") > 0;
	else
	{
		/* on a Citus node from the account's shard; not on this node: nothing of it is read here either, so refuse */
		owns = m365_store_placement_run_on_shard("m365sync.accounts", account_id, owns_on_shard, &a, 1, true) &&
			SPI_processed > 0;
	}
	SPI_finish();
	if (owns)
	{
		owns_lxid = MyProc->lxid;
		owns_account = account_id;
		strlcpy(owns_user, user, sizeof(owns_user));
	}
	return owns;
}

void
m365_store_placement_wake_owner(int64 account_id)
{
	M365SpiArgs a = {0};

	m365_wake_account_at_commit(account_id);	/* this node's worker of the account */
	if (!m365_store_placement_distributed())
		return;
	m365_spi_arg_int8(&a, account_id);
	/* routed to the account's shard: the call runs on its node, in this transaction */
	m365_spi_exec("SELECT m365sync._wake_here() FROM m365sync.accounts a WHERE a.account_id = $1",
				  &a, SPI_OK_SELECT, "waking the worker of the account's node");
}

/*
 * Citus's lock on the placement metadata of a hash-distributed shard
 * (Citus 13 resource_lock.c, SetLocktagForShardDistributionMetadata: an
 * advisory tag of class 8 on the shard's index among its table's shards and
 * its colocation id, so it is one lock for the co-located shards of every
 * table). Writes through Citus hold it in ShareLock for their transaction;
 * citus_move_shard_placement (and so the rebalancer) takes it in
 * ExclusiveLock on the coordinator and on every node with metadata
 * (BlockWritesToShardList, lock_shard_metadata()) before it switches the
 * placement. TAP 091 fails if a Citus release changes it.
 */
#define CITUS_COLOCATED_SHARDS_METADATA_LOCK_CLASS 8

static void
shard_metadata_tag(LOCKTAG *tag, const M365Shard *shard)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, shard->shard_index, shard->colocation_id,
						 CITUS_COLOCATED_SHARDS_METADATA_LOCK_CLASS);
}

void
m365_store_placement_shard_of(int64 account_id, M365Shard *out)
{
	M365SpiArgs a = {0};

	memset(out, 0, sizeof(*out));
	if (!m365_store_placement_distributed())
		return;
	m365_spi_arg_int8(&a, account_id);
	SPI_connect();
	m365_spi_run_read_only("SELECT s.shardid, p.colocationid::bigint,"
						   "  (SELECT pg_catalog.count(*) FROM pg_catalog.pg_dist_shard o"
						   "    WHERE o.logicalrelid = s.logicalrelid"
						   "      AND o.shardminvalue::bigint < s.shardminvalue::bigint)"
						   " FROM pg_catalog.pg_dist_shard s"
						   " JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid = s.logicalrelid"
						   " WHERE s.shardid = pg_catalog.get_shard_id_for_distribution_column('m365sync.accounts', $1)",
						   &a, SPI_OK_SELECT, "finding an account's shard");
	out->shard_id = m365_spi_get_int8(1);
	out->colocation_id = (uint32) m365_spi_get_int8(2);
	out->shard_index = (uint32) m365_spi_get_int8(3);
	SPI_finish();
}

bool
m365_store_placement_hold_shard(const M365Shard *shard, bool session)
{
	LOCKTAG		tag;

	shard_metadata_tag(&tag, shard);
	return LockAcquire(&tag, ShareLock, session, true) != LOCKACQUIRE_NOT_AVAIL;
}

void
m365_store_placement_release_shard(const M365Shard *shard)
{
	LOCKTAG		tag;

	shard_metadata_tag(&tag, shard);
	LockRelease(&tag, ShareLock, true);
}

bool
m365_store_placement_shard_here(int64 shard_id)
{
	M365SpiArgs a = {0};
	bool		here;

	m365_spi_arg_int8(&a, shard_id);
	SPI_connect();
	/* not read-only: a snapshot of now, so a move that committed since the round's batch was read counts */
	m365_spi_run("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_placement p"
				 " WHERE p.shardid = $1"
				 "   AND p.groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group))",
				 &a, SPI_OK_SELECT, "finding whether this node holds a shard");
	here = m365_spi_get_bool(1);
	SPI_finish();
	return here;
}

bool
m365_store_placement_lock_on_owner(int64 account_id, int32 lock_class, int32 key2)
{
	M365SpiArgs a = {0};
	bool		locked;

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg(&a, INT4OID, Int32GetDatum(lock_class), false);
	m365_spi_arg(&a, INT4OID, Int32GetDatum(key2), false);
	SPI_connect();
	/* routed to the account's shard: the lock is taken on its node, till this transaction ends */
	locked = m365_spi_run("SELECT pg_catalog.pg_try_advisory_xact_lock($2, $3)"
						  " FROM m365sync.accounts a WHERE a.account_id = $1",
						  &a, SPI_OK_SELECT, "taking the round lock on the account's node") == 1 &&
		m365_spi_get_bool(1);
	SPI_finish();
	return locked;
}

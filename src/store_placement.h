/*
 * store_placement.h — where an account's rows live on a Citus cluster
 * (store_placement.c): is m365sync distributed, which accounts this node
 * owns, the acting user's row-level-security check that needs no subquery,
 * and the wake of the owning node's worker. On a single server every answer
 * is the trivial one (not distributed, every account owned, no remote wake).
 */
#ifndef M365SYNC_STORE_PLACEMENT_H
#define M365SYNC_STORE_PLACEMENT_H

#include "postgres.h"

struct M365SpiArgs;				/* spi_util.h */
struct _SPI_plan;					/* executor/spi.h (SPIPlanPtr) */

/* Is m365sync.accounts a Citus distributed table in this database? */
extern bool m365_store_placement_distributed(void);

/*
 * The ownership predicate of the sync worker's queries, as SQL text to
 * append to a WHERE clause about the accounts column named by col (e.g.
 * "a.account_id"): empty on a single server; on a Citus node "the account's
 * shard is placed on this node" (" AND false" when it holds none).
 */
extern char *m365_store_placement_owned_filter(const char *col);

/*
 * The schema-qualified name of the shard of a distributed table (e.g.
 * "m365sync.events") that holds account_id's rows, when that shard is on
 * this node; NULL when it is not (or the table is not distributed). Only
 * on a Citus node (m365_store_placement_distributed()). Palloc'd in the
 * caller's context.
 */
extern char *m365_store_placement_local_shard(const char *table, int64 account_id);

/*
 * Run the SELECT sql on this node's shard of table that holds account_id's
 * rows (sql names it as %1$s, possibly several times), with a plan kept per
 * statement and shard: a query on a shard is planned by PostgreSQL alone,
 * where Citus plans a query on the distributed table afresh on each call.
 * sql must be a string constant (its address is the key). The caller is
 * connected to SPI; the rows are in SPI_tuptable; read_only runs it in the
 * caller's snapshot (as m365_spi_run_read_only). Returns false, running
 * nothing, when that shard is not on this node. Row level security applies
 * as on the table (every shard carries its policies).
 */
extern bool m365_store_placement_run_on_shard(const char *table, int64 account_id, const char *sql,
											  const struct M365SpiArgs *a, long limit, bool read_only);

/*
 * Run a read-only SELECT routed by Citus to one node (a plan kept in *slot,
 * as m365_spi_run_saved) without opening a remote transaction for it when
 * this transaction has none on any node yet (citus.select_opens_transaction_block
 * off for this statement only): one round trip instead of BEGIN, the
 * statement and COMMIT. The node then runs it outside this transaction, so
 * it sees nothing SET LOCAL here (pass what it needs as arguments) and only
 * committed rows; a transaction that already has a remote transaction (it
 * wrote through Citus, or read under REPEATABLE READ or SERIALIZABLE, where
 * this keeps the remote block) runs it in that block, seeing its own writes.
 * The caller is connected to SPI and on a Citus node.
 */
extern uint64 m365_store_placement_run_routed_read(struct _SPI_plan **slot, const char *sql,
												   const struct M365SpiArgs *a, long limit);

/*
 * Row level security without a subquery (Citus refuses those in policies):
 * does the acting FlowAgent user own account_id? Reads the accounts row
 * under its own policy: on a Citus node from the account's co-located shard,
 * which is always on the node evaluating the policy; else from the table.
 */
extern bool m365_store_placement_acting_owns(int64 account_id);

/*
 * Wake, at commit, the sync worker that serves account_id: this server's,
 * and on a Citus cluster the one of the node holding the account's shards
 * (a call routed there inside the caller's distributed transaction, which
 * registers that node's own at-commit wake).
 */
extern void m365_store_placement_wake_owner(int64 account_id);

/*
 * The round lock on a Citus cluster (scheduler.c). A round holds its
 * account's accounts shard in Citus's own placement-metadata lock, in
 * ShareLock as every write through Citus does for its transaction, here for
 * the round's length (session) or the caller's transaction: a shard move or
 * rebalance (which takes it in ExclusiveLock on every node before it
 * switches the placement) waits until the round is over, and a round does
 * not start while a move waits or runs. Then the account's round lock
 * itself, on the node holding the shard.
 */

/* The shard of m365sync.accounts holding an account, and its place in Citus's lock space. */
typedef struct M365Shard
{
	int64		shard_id;		/* 0: not distributed */
	uint32		colocation_id;
	uint32		shard_index;	/* its rank among the table's shards, by hash range */
} M365Shard;

extern void m365_store_placement_shard_of(int64 account_id, M365Shard *out);

/* Hold the shard's placement metadata in ShareLock, without waiting; false: a move holds or wants it. */
extern bool m365_store_placement_hold_shard(const M365Shard *shard, bool session);

/* Let go of a session hold of m365_store_placement_hold_shard. */
extern void m365_store_placement_release_shard(const M365Shard *shard);

/* Does this node hold the shard's placement (read afresh, not from the transaction's snapshot)? */
extern bool m365_store_placement_shard_here(int64 shard_id);

/*
 * The account's round lock (advisory (lock_class, key2)) taken on the node
 * that holds its shard, for the caller's transaction, through a statement
 * routed there: sync() on the coordinator contends with that node's worker.
 * false: held there already.
 */
extern bool m365_store_placement_lock_on_owner(int64 account_id, int32 lock_class, int32 key2);

#endif

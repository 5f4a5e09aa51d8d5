/*
 * extension_guard.c — every transaction of the sync worker first holds the
 * extension object, so that DROP EXTENSION and ALTER EXTENSION UPDATE never
 * interleave with a round.
 *
 * DROP EXTENSION takes an AccessExclusiveLock on the extension object before
 * it touches any member table (get_object_address); ALTER EXTENSION UPDATE
 * takes none in PostgreSQL 15, so the utility hook takes the same lock for
 * it. The worker takes an AccessShareLock on the object before anything
 * else in each transaction. Whoever comes second waits for the other's
 * transaction instead of meeting it halfway through the member tables in
 * another order (the deadlock of CREATE; DROP; CREATE EXTENSION with the
 * worker racing). After each wait the worker looks again: if the extension
 * is gone, was created anew (another oid) or updated (another version),
 * the round is cut with a recognisable ERROR and starts over from the top,
 * where the worker finds out what is there now.
 *
 * Only the worker calls this; sync() runs in its caller's transaction.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "storage/lmgr.h"
#include "storage/lockdefs.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "extension_guard.h"

#define EXT_VERSION_MAX 64

static Oid	round_oid = InvalidOid;
static char round_version[EXT_VERSION_MAX];
static bool round_cut = false;

/* m365sync's row in pg_extension, read afresh (not from a catalog snapshot taken before a lock wait). */
static bool
lookup_extension(Oid *oid, char *version)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	InvalidateCatalogSnapshot();
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("m365sync"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		*oid = ((Form_pg_extension) GETSTRUCT(tup))->oid;
		if (isnull)
			version[0] = '\0';
		else
			text_to_cstring_buffer(DatumGetTextPP(d), version, EXT_VERSION_MAX);
		found = true;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

bool
m365_extension_round_begin(void)
{
	Oid			oid;
	char		version[EXT_VERSION_MAX];

	round_cut = false;
	round_oid = InvalidOid;
	if (!lookup_extension(&oid, version))
		return false;
	LockDatabaseObject(ExtensionRelationId, oid, 0, AccessShareLock);
	/* A DROP or an update may have committed while we waited for the lock. */
	if (!lookup_extension(&round_oid, round_version))
	{
		round_oid = InvalidOid;
		return false;
	}
	if (round_oid != oid)
		LockDatabaseObject(ExtensionRelationId, round_oid, 0, AccessShareLock);
	return true;
}

void
m365_worker_start_xact(void)
{
	Oid			oid;
	char		version[EXT_VERSION_MAX];

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (!OidIsValid(round_oid))
		return;
	LockDatabaseObject(ExtensionRelationId, round_oid, 0, AccessShareLock);
	if (!lookup_extension(&oid, version) || oid != round_oid ||
		strcmp(version, round_version) != 0)
	{
		round_cut = true;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension m365sync was dropped, created or updated during a worker round"),
				 errdetail("The round starts over.")));
	}
}

bool
m365_extension_round_cut(void)
{
	return round_cut;
}

bool
m365_schema_is_0_2(void)
{
	static LocalTransactionId cached_lxid = InvalidLocalTransactionId;
	static bool cached = false;
	Oid			oid;
	char		version[EXT_VERSION_MAX];

	if (cached_lxid == MyProc->lxid && cached_lxid != InvalidLocalTransactionId)
		return cached;
	cached = lookup_extension(&oid, version) && strcmp(version, "0.1.0") != 0;
	cached_lxid = MyProc->lxid;
	return cached;
}

/*
 * utility_hook.c — the DBA commands that must not meet the sync worker
 * halfway (installed only when the library is preloaded, chaining any
 * earlier ProcessUtility hook).
 *
 * - DROP DATABASE, ALTER DATABASE ... RENAME or SET TABLESPACE, and CREATE
 *   DATABASE ... TEMPLATE of the served database: PostgreSQL refuses them
 *   while another session is connected there. The database is held for the
 *   command's transaction (launcher.c), which stops the worker first; no
 *   FORCE needed.
 * - ALTER EXTENSION m365sync UPDATE: takes the AccessExclusiveLock on the
 *   extension object that DROP EXTENSION takes and PostgreSQL 15 does not
 *   take for an update, so the update waits for the worker's transaction
 *   and the worker's next one waits for the update (extension_guard.c).
 * - CREATE / ALTER EXTENSION m365sync and CREATE DATABASE wake the worker
 *   or the launcher at commit, so syncing starts without waiting for a
 *   poll.
 *
 * Nothing here changes what the command does.
 */
#include "postgres.h"

#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "nodes/parsenodes.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"

#include "launcher.h"
#include "utility_hook.h"
#include "settings.h"
#include "wake.h"

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* Hold the database if the worker serves it (or is meant to). */
static void
hold_if_served(const char *dbname)
{
	Oid			dboid;

	if (dbname == NULL)
		return;
	dboid = get_database_oid(dbname, true);
	if (!OidIsValid(dboid))
		return;
	if (strcmp(dbname, m365_database) == 0 || dboid == m365_shared_active_database())
		m365_hold_database(dboid, dbname);
}

static const char *
option_value(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *d = lfirst(lc);

		if (strcmp(d->defname, name) == 0 && d->arg != NULL)
			return defGetString(d);
	}
	return NULL;
}

static void
m365_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					 ProcessUtilityContext context, ParamListInfo params,
					 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
			hold_if_served(((DropdbStmt *) parsetree)->dbname);
			break;
		case T_RenameStmt:
			if (((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
			{
				hold_if_served(((RenameStmt *) parsetree)->subname);
				m365_wake_launcher_at_commit();	/* a database may now have the served name */
			}
			break;
		case T_AlterDatabaseStmt:
			if (option_value(((AlterDatabaseStmt *) parsetree)->options, "tablespace") != NULL)
				hold_if_served(((AlterDatabaseStmt *) parsetree)->dbname);
			break;
		case T_CreatedbStmt:
			hold_if_served(option_value(((CreatedbStmt *) parsetree)->options, "template"));
			m365_wake_launcher_at_commit();
			break;
		case T_AlterExtensionStmt:
			if (strcmp(((AlterExtensionStmt *) parsetree)->extname, "m365sync") == 0)
			{
				Oid			extoid = get_extension_oid("m365sync", true);

				if (OidIsValid(extoid))
					LockDatabaseObject(ExtensionRelationId, extoid, 0, AccessExclusiveLock);
				m365_wake_worker_at_commit();
			}
			break;
		case T_CreateExtensionStmt:
			if (strcmp(((CreateExtensionStmt *) parsetree)->extname, "m365sync") == 0)
				m365_wake_worker_at_commit();
			break;
		default:
			break;
	}

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

void
m365_install_utility_hook(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = m365_process_utility;
}

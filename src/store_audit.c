/*
 * store_audit.c — SPI for m365sync.audit_log (see store_audit.h and
 * src/sql/07_audit.sql): rows are added by the acts and removed only by the
 * pruning of expired ones. Role names, FlowAgent user names, account ids and
 * act names only, never content.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "catalog/namespace.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "spi_util.h"
#include "store_audit.h"

/*
 * Between installing the 0.2.0 library and ALTER EXTENSION UPDATE the
 * schema is still 0.1.0's, which has no audit trail: nothing to write to,
 * and nothing to prune (the worker keeps syncing meanwhile).
 */
static bool
audit_log_exists(void)
{
	Oid			nsp = get_namespace_oid("m365sync", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("audit_log", nsp));
}

void
m365_audit_record(const char *act, const char *flowagent_user, int64 account_id)
{
	M365SpiArgs a = {0};

	if (!audit_log_exists())
		return;
	m365_spi_arg_text(&a, GetUserNameFromId(GetOuterUserId(), false));
	m365_spi_arg_text(&a, flowagent_user);
	m365_spi_arg(&a, INT8OID, Int64GetDatum(account_id), account_id == 0);
	m365_spi_arg_text(&a, act);
	m365_spi_exec("INSERT INTO m365sync.audit_log (db_role, flowagent_user, account_id, act)"
				  " VALUES ($1, $2, $3, $4)",
				  &a, SPI_OK_INSERT, "recording the act in the audit trail");
}

void
m365_store_audit_prune(int retention_s)
{
	M365SpiArgs a = {0};

	if (!audit_log_exists())
		return;
	m365_spi_arg(&a, INT4OID, Int32GetDatum(retention_s), false);
	m365_spi_exec("DELETE FROM m365sync.audit_log"
				  " WHERE at < pg_catalog.now() - pg_catalog.make_interval(secs => $1)",
				  &a, SPI_OK_DELETE, "pruning the audit trail");
}

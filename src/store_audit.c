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
#include "utils/builtins.h"

#include "extension_guard.h"
#include "spi_util.h"
#include "store_audit.h"

void
m365_audit_record(const char *act, const char *flowagent_user, int64 account_id)
{
	M365SpiArgs a = {0};

	if (!m365_schema_is_0_2())
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

	if (!m365_schema_is_0_2())
		return;
	m365_spi_arg(&a, INT4OID, Int32GetDatum(retention_s), false);
	m365_spi_exec("DELETE FROM m365sync.audit_log"
				  " WHERE at < pg_catalog.now() - pg_catalog.make_interval(secs => $1)",
				  &a, SPI_OK_DELETE, "pruning the audit trail");
}

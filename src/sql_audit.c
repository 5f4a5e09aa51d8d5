/*
 * sql_audit.c — the SQL face of the audit trail: the trigger that keeps
 * m365sync.audit_log append-only, and m365sync._audit() for acts written in
 * SQL (export_user, distribute). Rows are written by store_audit.c.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "store_audit.h"

PG_FUNCTION_INFO_V1(m365sync_audit_log_append_only);

/*
 * BEFORE UPDATE OR DELETE (row) and BEFORE TRUNCATE (statement) on
 * audit_log: UPDATE and TRUNCATE are refused; DELETE passes only for a row
 * older than m365sync.audit_retention, which is what pruning deletes. The
 * setting is sighup, so no session can shorten it for itself.
 */
Datum
m365sync_audit_log_append_only(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TimestampTz cutoff;
	Datum		at;
	bool		isnull;
	int			attnum;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "m365sync._audit_log_append_only() is a trigger");
	if (TRIGGER_FIRED_BY_DELETE(td->tg_event) && TRIGGER_FIRED_FOR_ROW(td->tg_event))
	{
		attnum = SPI_fnumber(td->tg_relation->rd_att, "at");
		if (attnum <= 0)
			elog(ERROR, "m365sync.audit_log has no column \"at\"");
		at = heap_getattr(td->tg_trigtuple, attnum, td->tg_relation->rd_att, &isnull);
		cutoff = GetCurrentTransactionStartTimestamp() -
			(TimestampTz) m365_audit_retention_s * USECS_PER_SEC;
		if (!isnull && DatumGetTimestampTz(at) < cutoff)
			return PointerGetDatum(td->tg_trigtuple);
	}
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("m365sync.audit_log is append-only"),
			 errdetail("Rows are never changed; they are deleted only when older than m365sync.audit_retention.")));
	pg_unreachable();
}

PG_FUNCTION_INFO_V1(m365sync_audit);

/* SQL: m365sync._audit(act text, flowagent_user text, account_id bigint) → void */
Datum
m365sync_audit(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("act must not be null")));
	m365_audit_record(text_to_cstring(PG_GETARG_TEXT_PP(0)),
					  PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)),
					  PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2));
	PG_RETURN_VOID();
}

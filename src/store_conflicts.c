/*
 * store_conflicts.c — the SQL of conflicts: writing the outcome conflicts.c
 * decided, listing the losing versions and the user's resolution (see
 * store_conflicts.h).
 *
 * Decides nothing between two versions (conflicts.c does, by the policy it
 * is given) and records the loser; never sends anything (the push sends what the outbox
 * says) and never logs content. The losing version is encrypted with the
 * conflict's own id as row id (keyring.h).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "lib/stringinfo.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "event_json.h"
#include "event_patch.h"
#include "keyring.h"
#include "store_conflicts.h"
#include "store_events.h"
#include "store_outbox.h"
#include "store_push.h"
#include "spi_util.h"

typedef struct LocalRow
{
	Jsonb	   *content;
	bool		deleted;
	char	   *graph_id;
	char	   *change_key;
	char	   *event_type;
	int64		calendar_id;
	TimestampTz local_modified_at;
	bool		has_local_modified;
} LocalRow;

static bool
lock_row(int64 account_id, int64 event_id, LocalRow *r)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(account_id), Int64GetDatum(event_id)};
	HeapTuple	t;
	TupleDesc	d;
	bool		isnull;
	Datum		v;

	m365_spi_check(SPI_execute_with_args("SELECT content, deleted, graph_id, change_key, event_type, calendar_id,"
								" local_modified_at FROM m365sync.events"
								" WHERE account_id = $1 AND event_id = $2 FOR UPDATE",
								2, types, values, NULL, false, 1), SPI_OK_SELECT, "locking an event");
	if (SPI_processed == 0)
		return false;
	t = SPI_tuptable->vals[0];
	d = SPI_tuptable->tupdesc;
	r->content = m365_store_events_open(account_id, event_id,
										 DatumGetByteaPP(SPI_getbinval(t, d, 1, &isnull)));
	r->deleted = DatumGetBool(SPI_getbinval(t, d, 2, &isnull));
	r->graph_id = SPI_getvalue(t, d, 3);
	r->change_key = SPI_getvalue(t, d, 4);
	r->event_type = SPI_getvalue(t, d, 5);
	r->calendar_id = DatumGetInt64(SPI_getbinval(t, d, 6, &isnull));
	v = SPI_getbinval(t, d, 7, &isnull);
	r->has_local_modified = !isnull;
	r->local_modified_at = isnull ? 0 : DatumGetTimestampTz(v);
	return true;
}

static Jsonb *
jsonb_of(const char *text)
{
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
}

/* content || {"@removed": {"reason": "deleted"}} */
static Jsonb *
as_deleted(Jsonb *content, const char *graph_id)
{
	Jsonb	   *mark = jsonb_of("{\"@removed\": {\"reason\": \"deleted\"}}");

	if (content == NULL)
	{
		StringInfoData buf;

		initStringInfo(&buf);
		appendStringInfoString(&buf, "{\"id\": ");
		if (graph_id)
			escape_json(&buf, graph_id);
		else
			appendStringInfoString(&buf, "null");
		appendStringInfoChar(&buf, '}');
		content = jsonb_of(buf.data);
	}
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(content),
											  JsonbPGetDatum(mark)));
}

static void
record(int64 account_id, int64 event_id, const char *policy, const char *kept, Jsonb *lost)
{
	Oid			types[6] = {INT8OID, INT8OID, INT8OID, TEXTOID, TEXTOID, BYTEAOID};
	Datum		values[6];
	bool		isnull;
	int64		conflict_id;

	m365_spi_check(SPI_execute("SELECT pg_catalog.nextval('m365sync.conflicts_conflict_id_seq')", false, 1),
		  SPI_OK_SELECT, "numbering a conflict");
	conflict_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	values[0] = Int64GetDatum(account_id);
	values[1] = Int64GetDatum(conflict_id);
	values[2] = Int64GetDatum(event_id);
	values[3] = CStringGetTextDatum(policy);
	values[4] = CStringGetTextDatum(kept);
	values[5] = PointerGetDatum(m365_encrypt("conflicts", "lost", account_id, conflict_id,
											 VARDATA(lost), VARSIZE(lost) - VARHDRSZ));
	m365_spi_check(SPI_execute_with_args("INSERT INTO m365sync.conflicts (account_id, conflict_id, event_id,"
								" policy, kept, lost) VALUES ($1, $2, $3, $4, $5, $6)",
								6, types, values, NULL, false, 0), SPI_OK_INSERT, "recording a conflict");
}

bool
m365_store_conflicts_lock_event(int64 account_id, int64 event_id, M365ConflictLocal *local)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(account_id), Int64GetDatum(event_id)};
	bool		isnull;
	Datum		v;
	bool		found;

	SPI_connect();
	m365_spi_check(SPI_execute_with_args("SELECT local_modified_at FROM m365sync.events"
								" WHERE account_id = $1 AND event_id = $2 FOR UPDATE",
								2, types, values, NULL, false, 1), SPI_OK_SELECT, "locking an event");
	found = SPI_processed > 0;
	if (found)
	{
		v = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		local->has_local_modified = !isnull;
		local->local_modified_at = isnull ? 0 : DatumGetTimestampTz(v);
	}
	SPI_finish();
	return found;
}

void
m365_store_conflicts_settle_changed(int64 account_id, int64 event_id, const char *policy, bool remote,
									const M365EventColumns *c, Jsonb *data)
{
	LocalRow	r;

	SPI_connect();
	if (!lock_row(account_id, event_id, &r))
		elog(ERROR, "m365sync: event %lld vanished while settling a conflict", (long long) event_id);
	if (remote)
	{
		record(account_id, event_id, policy, "remote", r.deleted ? as_deleted(r.content, r.graph_id) : r.content);
		m365_store_outbox_withdraw(account_id, event_id, "conflictLost");
		m365_store_events_replace_row(account_id, event_id, c, data);
	}
	else
	{
		Oid			types[4] = {INT8OID, INT8OID, TEXTOID, TIMESTAMPTZOID};
		Datum		values[4];
		char		nulls[5] = "    ";

		record(account_id, event_id, policy, "local", data);
		values[0] = Int64GetDatum(account_id);
		values[1] = Int64GetDatum(event_id);
		values[2] = c->change_key ? CStringGetTextDatum(c->change_key) : (Datum) 0;
		nulls[2] = c->change_key ? ' ' : 'n';
		values[3] = TimestampTzGetDatum(c->remote_modified_at);
		nulls[3] = c->has_remote_modified ? ' ' : 'n';
		m365_spi_check(SPI_execute_with_args("UPDATE m365sync.events SET change_key = $3, remote_modified_at = $4,"
									" sync_state = 'conflict' WHERE account_id = $1 AND event_id = $2",
									4, types, values, nulls, false, 0), SPI_OK_UPDATE, "keeping a local change");
		m365_store_outbox_push_whole(account_id, event_id, r.deleted, c->change_key);
	}
	SPI_finish();
}

void
m365_store_conflicts_settle_deleted(int64 account_id, int64 event_id, const char *policy, bool remote)
{
	LocalRow	r;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(account_id), Int64GetDatum(event_id)};

	SPI_connect();
	if (!lock_row(account_id, event_id, &r))
		elog(ERROR, "m365sync: event %lld vanished while settling a conflict", (long long) event_id);
	m365_store_outbox_withdraw(account_id, event_id, remote ? "conflictLost" : "recreated");
	if (remote)
	{
		/* kept as a tombstone while the local version is listed */
		record(account_id, event_id, policy, "remote", r.content);
		m365_spi_check(SPI_execute_with_args("UPDATE m365sync.events SET deleted = true, graph_id = NULL,"
									" change_key = NULL, sync_state = 'conflict'"
									" WHERE account_id = $1 AND event_id = $2",
									2, types, values, NULL, false, 0), SPI_OK_UPDATE, "accepting a remote delete");
	}
	else
	{
		record(account_id, event_id, policy, "local", as_deleted(NULL, r.graph_id));
		m365_spi_check(SPI_execute_with_args("UPDATE m365sync.events SET graph_id = NULL, change_key = NULL,"
									" sync_state = 'conflict' WHERE account_id = $1 AND event_id = $2",
									2, types, values, NULL, false, 0), SPI_OK_UPDATE, "re-creating an event");
		m365_store_outbox_insert_whole(account_id, event_id, "create", false, NULL);
	}
	SPI_finish();
}

uint64
m365_store_conflicts_list(int64 account_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(account_id)};

	m365_spi_check(SPI_execute_with_args("SELECT event_id, detected_at, policy, kept, lost, conflict_id"
								" FROM m365sync.conflicts WHERE account_id = $1 AND resolved_at IS NULL"
								" ORDER BY detected_at, conflict_id",
								1, types, values, NULL, true, 0), SPI_OK_SELECT, "listing conflicts");
	return SPI_processed;
}

/* Columns of a stored version, through event_json; event_type stays the row's. */
static void
columns_of(Jsonb *content, const char *event_type, M365EventColumns *cols, cJSON **tree)
{
	char	   *text = JsonbToCString(NULL, &content->root, VARSIZE(content));
	M365Event	ev;
	M365EventError err;

	*tree = cJSON_Parse(text);
	if (*tree == NULL)
		ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED), errmsg("a stored event version is not JSON")));
	if (m365_event_parse(*tree, M365_EV_FROM_GRAPH, &ev, &err) != M365_EV_OK)
		m365_event_report(&err);
	m365_event_columns(&ev, cols);
	cols->event_type = event_type;
}

/* Restore a listed version as the local one, to be pushed like any change. */
static void
restore(int64 account_id, int64 event_id, LocalRow *r, Jsonb *lost)
{
	bool		is_deletion = getKeyJsonValueFromContainer(&lost->root, "@removed",
														   strlen("@removed"), NULL) != NULL;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(account_id), Int64GetDatum(event_id)};

	if (is_deletion)
	{
		M365StoredEvent ev = {0};

		if (r->deleted)
			return;				/* already gone here */
		ev.event_id = event_id;
		ev.calendar_id = r->calendar_id;
		ev.graph_id = r->graph_id;
		ev.change_key = r->change_key;
		ev.event_type = r->event_type;
		ev.data = r->content;
		(void) m365_store_events_delete(account_id, &ev);
		return;
	}
	else
	{
		M365EventColumns cols;
		cJSON	   *volatile tree = NULL;

		PG_TRY();
		{
			columns_of(lost, r->event_type, &cols, (cJSON **) &tree);
			m365_store_events_update_local(account_id, event_id, &cols,
										  m365_store_events_seal(account_id, event_id, lost));
		}
		PG_FINALLY();
		{
			cJSON_Delete(tree);
		}
		PG_END_TRY();
		if (r->deleted || r->graph_id == NULL)
		{
			/* gone at Microsoft (or never there): made again */
			bool		pending_create;

			pending_create = m365_store_outbox_has_pending_create(account_id, event_id);
			m365_spi_check(SPI_execute_with_args("UPDATE m365sync.events SET deleted = false"
										" WHERE account_id = $1 AND event_id = $2",
										2, types, values, NULL, false, 0), SPI_OK_UPDATE, "reviving an event");
			if (!pending_create)
			{
				m365_store_outbox_withdraw(account_id, event_id, "recreated");
				m365_store_outbox_insert_whole(account_id, event_id, "create", false, NULL);
			}
		}
		else
			m365_store_outbox_push_whole(account_id, event_id, false, r->change_key);
	}
}

bool
m365_store_conflicts_resolve(int64 account_id, int64 event_id, const char *keep)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(account_id), Int64GetDatum(event_id)};
	LocalRow	r;
	int64		conflict_id;
	char	   *kept;
	Jsonb	   *lost;
	bool		isnull;
	size_t		len;
	char	   *plain;

	SPI_connect();
	if (!lock_row(account_id, event_id, &r))
	{
		SPI_finish();
		return false;
	}
	m365_spi_check(SPI_execute_with_args("SELECT conflict_id, kept, lost FROM m365sync.conflicts"
								" WHERE account_id = $1 AND event_id = $2 AND resolved_at IS NULL"
								" ORDER BY conflict_id DESC LIMIT 1 FOR UPDATE",
								2, types, values, NULL, false, 1), SPI_OK_SELECT, "reading a conflict");
	if (SPI_processed == 0)
	{
		SPI_finish();
		return false;
	}
	conflict_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	kept = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	plain = m365_decrypt("conflicts", "lost", account_id, conflict_id,
						 DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull)),
						 &len);
	lost = palloc(VARHDRSZ + len);
	SET_VARSIZE(lost, VARHDRSZ + len);
	memcpy(VARDATA(lost), plain, len);

	m365_spi_check(SPI_execute_with_args("UPDATE m365sync.conflicts SET resolved_at = pg_catalog.now()"
								" WHERE account_id = $1 AND event_id = $2 AND resolved_at IS NULL",
								2, types, values, NULL, false, 0), SPI_OK_UPDATE, "resolving a conflict");
	if (strcmp(keep, "kept") != 0 && strcmp(keep, kept) != 0)
		restore(account_id, event_id, &r, lost);
	else if (r.deleted && r.graph_id == NULL)
	{
		/* the deletion stands: the tombstone goes (unless something is still queued for it) */
		m365_spi_check(SPI_execute_with_args("DELETE FROM m365sync.events e WHERE e.account_id = $1 AND e.event_id = $2"
									" AND NOT EXISTS (SELECT 1 FROM m365sync.outbox o WHERE o.account_id = $1"
									"  AND o.event_id = $2 AND o.state = 'pending')",
									2, types, values, NULL, false, 0), SPI_OK_DELETE, "removing a tombstone");
	}
	else
		m365_spi_check(SPI_execute_with_args("UPDATE m365sync.events SET sync_state = CASE"
									" WHEN EXISTS (SELECT 1 FROM m365sync.outbox o WHERE o.account_id = $1"
									"  AND o.event_id = $2 AND o.state = 'pending') THEN 'pending'"
									" WHEN sync_state = 'conflict' THEN 'synced' ELSE sync_state END"
									" WHERE account_id = $1 AND event_id = $2",
									2, types, values, NULL, false, 0), SPI_OK_UPDATE, "settling an event");
	SPI_finish();
	return true;
}

/* purge.c's erasure of a user's rows (see purge.c for the order). */
void
m365_store_conflicts_delete_accounts(const int64 *account_ids, int n)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8_array(&a, account_ids, n);
	m365_spi_exec("DELETE FROM m365sync.conflicts WHERE account_id = ANY ($1)",
				  &a, SPI_OK_DELETE, "erasing rows of the user");
}

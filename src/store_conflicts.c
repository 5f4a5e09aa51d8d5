/*
 * store_conflicts.c — the SQL of conflicts: writing the outcome conflicts.c
 * decided, listing the losing versions and the user's resolution (see
 * store_conflicts.h). It runs each outcome in one SPI connection; the
 * statements on the event row itself are store_events.c's, the outbox
 * entries store_outbox.c's.
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
	M365SpiArgs a = {0};
	int64		conflict_id;

	m365_spi_run("SELECT pg_catalog.nextval('m365sync.conflicts_conflict_id_seq')",
				 NULL, SPI_OK_SELECT, "numbering a conflict");
	conflict_id = m365_spi_get_int8(1);
	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, conflict_id);
	m365_spi_arg_int8(&a, event_id);
	m365_spi_arg_text(&a, policy);
	m365_spi_arg_text(&a, kept);
	m365_spi_arg_bytea(&a, m365_encrypt("conflicts", "lost", account_id, conflict_id,
										 VARDATA(lost), VARSIZE(lost) - VARHDRSZ));
	m365_spi_run("INSERT INTO m365sync.conflicts (account_id, conflict_id, event_id,"
				 " policy, kept, lost) VALUES ($1, $2, $3, $4, $5, $6)",
				 &a, SPI_OK_INSERT, "recording a conflict");
}

bool
m365_store_conflicts_lock_event(int64 account_id, int64 event_id, M365ConflictLocal *local)
{
	bool		found;

	found = m365_store_events_lock_modified(account_id, event_id, &local->has_local_modified,
											 &local->local_modified_at);
	return found;
}

void
m365_store_conflicts_settle_changed(int64 account_id, int64 event_id, const char *policy, bool remote,
									const M365EventColumns *c, Jsonb *data)
{
	M365EventAnyRow r;

	SPI_connect();
	if (!m365_store_events_lock_any(account_id, event_id, &r))
		elog(ERROR, "m365sync: event %lld vanished while settling a conflict", (long long) event_id);
	if (remote)
	{
		record(account_id, event_id, policy, "remote", r.deleted ? as_deleted(r.content, r.graph_id) : r.content);
		m365_store_outbox_withdraw(account_id, event_id, "conflictLost");
		m365_store_events_replace_row(account_id, event_id, c, data);
	}
	else
	{
		record(account_id, event_id, policy, "local", data);
		m365_store_events_keep_local(account_id, event_id, c);
		m365_store_outbox_push_whole(account_id, event_id, r.deleted, c->change_key);
	}
	SPI_finish();
}

void
m365_store_conflicts_settle_deleted(int64 account_id, int64 event_id, const char *policy, bool remote)
{
	M365EventAnyRow r;

	SPI_connect();
	if (!m365_store_events_lock_any(account_id, event_id, &r))
		elog(ERROR, "m365sync: event %lld vanished while settling a conflict", (long long) event_id);
	m365_store_outbox_withdraw(account_id, event_id, remote ? "conflictLost" : "recreated");
	if (remote)
	{
		/* kept as a tombstone while the local version is listed */
		record(account_id, event_id, policy, "remote", r.content);
		m365_store_events_tombstone(account_id, event_id);
	}
	else
	{
		record(account_id, event_id, policy, "local", as_deleted(NULL, r.graph_id));
		m365_store_events_unlink(account_id, event_id);
		m365_store_outbox_insert_whole(account_id, event_id, "create", false, NULL);
	}
	SPI_finish();
}

uint64
m365_store_conflicts_list(int64 account_id)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	return m365_spi_run("SELECT event_id, detected_at, policy, kept, lost, conflict_id"
						" FROM m365sync.conflicts WHERE account_id = $1 AND resolved_at IS NULL"
						" ORDER BY detected_at, conflict_id",
						&a, SPI_OK_SELECT, "listing conflicts");
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
	m365_event_columns(&ev, true, cols);	/* a version as Graph rendered it in UTC */
	cols->event_type = event_type;
}

/* Restore a listed version as the local one, to be pushed like any change. */
static void
restore(int64 account_id, int64 event_id, M365EventAnyRow *r, Jsonb *lost)
{
	bool		is_deletion = getKeyJsonValueFromContainer(&lost->root, "@removed",
														   strlen("@removed"), NULL) != NULL;

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
			m365_store_events_revive(account_id, event_id);
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
	M365SpiArgs a = {0};
	M365EventAnyRow r;
	int64		conflict_id;
	char	   *kept;
	Jsonb	   *lost;
	size_t		len;
	char	   *plain;

	SPI_connect();
	if (!m365_store_events_lock_any(account_id, event_id, &r))
	{
		SPI_finish();
		return false;
	}
	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, event_id);
	if (m365_spi_run("SELECT conflict_id, kept, lost FROM m365sync.conflicts"
					 " WHERE account_id = $1 AND event_id = $2 AND resolved_at IS NULL"
					 " ORDER BY conflict_id DESC LIMIT 1 FOR UPDATE",
					 &a, SPI_OK_SELECT, "reading a conflict") == 0)
	{
		SPI_finish();
		return false;
	}
	conflict_id = m365_spi_get_int8(1);
	kept = m365_spi_get_text(2, CurrentMemoryContext);
	plain = m365_decrypt("conflicts", "lost", account_id, conflict_id,
						 m365_spi_get_bytea(3, CurrentMemoryContext), &len);
	lost = palloc(VARHDRSZ + len);
	SET_VARSIZE(lost, VARHDRSZ + len);
	memcpy(VARDATA(lost), plain, len);

	m365_spi_run("UPDATE m365sync.conflicts SET resolved_at = pg_catalog.now()"
				 " WHERE account_id = $1 AND event_id = $2 AND resolved_at IS NULL",
				 &a, SPI_OK_UPDATE, "resolving a conflict");
	if (strcmp(keep, "kept") != 0 && strcmp(keep, kept) != 0)
		restore(account_id, event_id, &r, lost);
	else if (r.deleted && r.graph_id == NULL)
	{
		/* the deletion stands: the tombstone goes (unless something is still queued for it) */
		m365_store_events_drop_tombstone(account_id, event_id);
	}
	else
		m365_store_events_settle_state(account_id, event_id);
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

/*
 * store_outbox.c — SPI for m365sync.outbox, the queue of local changes for
 * the push (see store_outbox.h): queueing, collapsing, widening and
 * withdrawing entries; the push's marks (counting a send, done, failed,
 * retry later). The push's joined read of entries and events, and its
 * answers spanning both tables, are store_push.c's.
 *
 * Outbox collapse: an event has at most one pending outbox row. A later
 * change locks that row (FOR UPDATE) and folds into it; the caller holds
 * the event's row lock first (store_events.c), so the order is always the
 * events row, then its outbox row. Every queued entry wakes the worker at
 * commit (store_placement.c: this node's and the owning node's). Never logs content.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "event_json.h"
#include "extension_guard.h"
#include "event_patch.h"
#include "keyring.h"
#include "spi_util.h"
#include "store_outbox.h"
#include "store_placement.h"

/* The event's pending outbox row, locked: its id and op; false when none. */
static bool
lock_pending(int64 account_id, int64 event_id, int64 *outbox_id, char **op)
{
	static SPIPlanPtr p;
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, event_id);
	if (m365_spi_run_saved(&p, "SELECT o.outbox_id, o.op FROM m365sync.outbox o"
						   " WHERE o.account_id = $1 AND o.event_id = $2 AND o.state = 'pending'"
						   " ORDER BY o.outbox_id LIMIT 1 FOR UPDATE",
						   &a, SPI_OK_SELECT, 0, "locking a pending push") == 0)
		return false;
	*outbox_id = m365_spi_get_int8(1);
	*op = m365_spi_get_text(2, CurrentMemoryContext);
	return true;
}

void
m365_store_outbox_insert(int64 account_id, int64 event_id, const char *op,
			  const char **changed, int nchanged, const char *base_change_key)
{
	static SPIPlanPtr p;
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, event_id);
	m365_spi_arg_text(&a, op);
	if (changed != NULL)
		m365_spi_arg_text_array(&a, changed, nchanged);
	else
		m365_spi_arg(&a, TEXTARRAYOID, (Datum) 0, true);
	m365_spi_arg_text(&a, base_change_key);
	m365_spi_run_saved(&p, "INSERT INTO m365sync.outbox (account_id, event_id, op, changed_fields,"
					   " base_change_key) VALUES ($1, $2, $3, $4, $5)",
					   &a, SPI_OK_INSERT, 0, "queueing a push");
	m365_store_placement_wake_owner(account_id);
}

void
m365_store_outbox_queue_upsert(int64 account_id, int64 event_id, bool new_event, bool never_pushed,
						const char **changed, int nchanged, const char *base_change_key)
{
	static SPIPlanPtr p_merge;
	int64		outbox_id;
	char	   *op;

	if (new_event)
	{
		m365_store_outbox_insert(account_id, event_id, "create", NULL, 0, NULL);
		return;
	}
	if (lock_pending(account_id, event_id, &outbox_id, &op))
	{
		M365SpiArgs a = {0};

		/* a pending create sends the whole event anyway */
		if (strcmp(op, "update") != 0)
			return;
		m365_spi_arg_int8(&a, account_id);
		m365_spi_arg_int8(&a, outbox_id);
		m365_spi_arg_text_array(&a, changed, nchanged);
		m365_spi_run_saved(&p_merge, "UPDATE m365sync.outbox SET changed_fields = ARRAY("
						   "SELECT DISTINCT f FROM pg_catalog.unnest(pg_catalog.array_cat(changed_fields, $3)) f"
						   " ORDER BY f) WHERE account_id = $1 AND outbox_id = $2",
						   &a, SPI_OK_UPDATE, 0, "merging a pending push");
		m365_store_placement_wake_owner(account_id);
		return;
	}
	if (never_pushed)
		m365_store_outbox_insert(account_id, event_id, "create", NULL, 0, NULL);
	else
		m365_store_outbox_insert(account_id, event_id, "update", changed, nchanged, base_change_key);
}

void
m365_store_outbox_queue_delete(int64 account_id, int64 event_id, const char *change_key)
{
	static SPIPlanPtr p_to_delete;
	int64		outbox_id;
	char	   *op;

	if (lock_pending(account_id, event_id, &outbox_id, &op))
	{
		M365SpiArgs a = {0};

		m365_spi_arg_int8(&a, account_id);
		m365_spi_arg_int8(&a, outbox_id);
		/* a pending update becomes the delete; its If-Match stays the synced changeKey */
		m365_spi_run_saved(&p_to_delete, "UPDATE m365sync.outbox SET op = 'delete', changed_fields = NULL"
						   " WHERE account_id = $1 AND outbox_id = $2",
						   &a, SPI_OK_UPDATE, 0, "turning a push into a delete");
		m365_store_placement_wake_owner(account_id);
	}
	else
		m365_store_outbox_insert(account_id, event_id, "delete", NULL, 0, change_key);
}

bool
m365_store_outbox_has_pending_create(int64 account_id, int64 event_id)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, event_id);
	return m365_spi_run("SELECT 1 FROM m365sync.outbox WHERE account_id = $1 AND event_id = $2"
						" AND state = 'pending' AND op = 'create' LIMIT 1",
						&a, SPI_OK_SELECT, "finding a create") > 0;
}

/* Withdraw the event's pending (and superseded failed) entries. */
void
m365_store_outbox_withdraw(int64 account_id, int64 event_id, const char *why)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, event_id);
	m365_spi_arg_text(&a, why);
	m365_spi_run("UPDATE m365sync.outbox SET state = 'done', done_at = pg_catalog.now(),"
				 " last_error = $3, next_attempt_at = NULL"
				 " WHERE account_id = $1 AND event_id = $2 AND state IN ('pending', 'failed')",
				 &a, SPI_OK_UPDATE, "withdrawing a push");
}

void
m365_store_outbox_insert_whole(int64 account_id, int64 event_id, const char *op, bool all_fields, const char *base)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, event_id);
	m365_spi_arg_text(&a, op);
	m365_spi_arg(&a, BOOLOID, BoolGetDatum(all_fields), false);
	m365_spi_arg_text(&a, base);
	m365_spi_run("INSERT INTO m365sync.outbox (account_id, event_id, op, changed_fields,"
				 " base_change_key) VALUES ($1, $2, $3,"
				 " CASE WHEN $4 THEN '{" M365_ALL_FIELDS "}'::text[] END, $5)",
				 &a, SPI_OK_INSERT, "queueing a push");
	m365_store_placement_wake_owner(account_id);
}

/*
 * The local version, whole, is to be pushed over base: the pending entry
 * (update or delete) is widened to all fields, or a new update queued.
 */
void
m365_store_outbox_push_whole(int64 account_id, int64 event_id, bool deleted, const char *base)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, event_id);
	m365_spi_arg_text(&a, base);
	m365_spi_arg(&a, BOOLOID, BoolGetDatum(deleted), false);
	if (m365_spi_run("UPDATE m365sync.outbox SET base_change_key = $3, next_attempt_at = NULL,"
					 " op = CASE WHEN op = 'create' THEN op WHEN $4 THEN 'delete' ELSE 'update' END,"
					 " changed_fields = CASE WHEN op = 'create' OR $4 THEN NULL"
					 "   ELSE '{" M365_ALL_FIELDS "}'::text[] END"
					 " WHERE account_id = $1 AND event_id = $2 AND state = 'pending'",
					 &a, SPI_OK_UPDATE, "widening a push") == 0)
		m365_store_outbox_insert_whole(account_id, event_id, deleted ? "delete" : "update", !deleted, base);
	else
		m365_store_placement_wake_owner(account_id);
}

/* purge.c's erasure of a user's rows (see purge.c for the order). */
void
m365_store_outbox_delete_accounts(const int64 *account_ids, int n)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8_array(&a, account_ids, n);
	m365_spi_exec("DELETE FROM m365sync.outbox WHERE account_id = ANY ($1)",
				  &a, SPI_OK_DELETE, "erasing rows of the user");
}

static bool
is_time(const char *f)
{
	return strcmp(f, M365_F_START) == 0 || strcmp(f, M365_F_END) == 0 || strcmp(f, M365_F_IS_ALL_DAY) == 0;
}

static void
append_value(StringInfo buf, const cJSON *ev, const char *field)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(ev, field);
	char	   *text = (v == NULL || cJSON_IsNull(v)) ? NULL : cJSON_PrintUnformatted(v);

	appendStringInfoString(buf, text ? text : "null");
	appendStringInfoChar(buf, '\n');
	if (text)
		cJSON_free(text);
}

char *
m365_store_outbox_base_hash(int64 account_id, const cJSON *ev, const char *field)
{
	StringInfoData buf;
	const char *name = is_time(field) ? M365_F_START : field;

	initStringInfo(&buf);
	if (is_time(field))
	{
		append_value(&buf, ev, M365_F_START);
		append_value(&buf, ev, M365_F_END);
		append_value(&buf, ev, M365_F_IS_ALL_DAY);
	}
	else
		append_value(&buf, ev, field);
	return psprintf("%s=%s", name, m365_keyed_hash(account_id, "outbox.base_hashes", buf.data, buf.len));
}

void
m365_store_outbox_note_bases(int64 account_id, int64 event_id, const cJSON *old,
							 const char *const *fields, int nfields)
{
	M365SpiArgs a = {0};
	const char **hashes = palloc(sizeof(char *) * Max(nfields, 1));
	int			n = 0;

	if (!m365_schema_is_0_2())
		return;					/* 0.1.0's outbox has no base_hashes until ALTER EXTENSION UPDATE */
	for (int i = 0; i < nfields; i++)
	{
		if (fields[i] == NULL || strcmp(fields[i], M365_ALL_FIELDS) == 0)
			return;
		hashes[n++] = m365_store_outbox_base_hash(account_id, old, fields[i]);
	}
	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, event_id);
	m365_spi_arg_text_array(&a, hashes, n);
	/* the first base of each field stays: later ones are our own edits */
	m365_spi_exec("UPDATE m365sync.outbox o SET base_hashes = coalesce(o.base_hashes, '{}') || ARRAY("
				  " SELECT DISTINCT h FROM pg_catalog.unnest($3::text[]) h"
				  "  WHERE pg_catalog.split_part(h, '=', 1) <> ALL (SELECT pg_catalog.split_part(x, '=', 1)"
				  "   FROM pg_catalog.unnest(coalesce(o.base_hashes, '{}')) x))"
				  " WHERE o.account_id = $1 AND o.event_id = $2 AND o.state = 'pending' AND o.op = 'update'",
				  &a, SPI_OK_UPDATE, "noting the base of a push");
}

/* One text column of the event's rows for sql ($1 account, $2 event), palloc'd into *out. */
static int
event_texts(int64 account_id, int64 event_id, const char *sql, const char *what, char ***out)
{
	M365SpiArgs a = {0};
	MemoryContext caller = CurrentMemoryContext;
	int			n;

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, event_id);
	SPI_connect();
	n = (int) m365_spi_run(sql, &a, SPI_OK_SELECT, what);
	*out = MemoryContextAlloc(caller, sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
		(*out)[i] = m365_spi_row_text(i, 1, caller);
	SPI_finish();
	return n;
}

int
m365_store_outbox_pending_bases(int64 account_id, int64 event_id, char ***hashes)
{
	if (!m365_schema_is_0_2())
	{
		*hashes = palloc(sizeof(char *));
		return 0;
	}
	return event_texts(account_id, event_id,
					   "SELECT h FROM m365sync.outbox o, pg_catalog.unnest(o.base_hashes) WITH ORDINALITY AS u(h, k)"
					   " WHERE o.account_id = $1 AND o.event_id = $2 AND o.op = 'update'"
					   " AND o.state IN ('pending', 'failed') ORDER BY o.outbox_id, u.k",
					   "reading the base of pending changes", hashes);
}

int
m365_store_outbox_pending_fields(int64 account_id, int64 event_id, char ***fields)
{
	return event_texts(account_id, event_id,
					   "SELECT DISTINCT f FROM m365sync.outbox o,"
					   " pg_catalog.unnest(coalesce(o.changed_fields, '{" M365_ALL_FIELDS "}')) f"
					   " WHERE o.account_id = $1 AND o.event_id = $2 AND o.op = 'update'"
					   " AND o.state IN ('pending', 'failed')",
					   "reading the fields of pending changes", fields);
}

/* --- the push's marks (push.c and store_push.c) --- */

/* Connects to SPI itself. */
void
m365_store_outbox_due_among(const int64 *account_ids, int n, bool *due)
{
	M365SpiArgs a = {0};
	uint64		rows;

	memset(due, 0, sizeof(bool) * n);
	if (n == 0)
		return;
	m365_spi_arg_int8_array(&a, account_ids, n);
	SPI_connect();
	rows = m365_spi_run("SELECT DISTINCT o.account_id FROM m365sync.outbox o"
						" WHERE o.account_id = ANY ($1) AND o.state = 'pending'"
						" AND coalesce(o.next_attempt_at, '-infinity') <= pg_catalog.now()",
						&a, SPI_OK_SELECT, "finding accounts with changes to push");
	for (uint64 r = 0; r < rows; r++)
	{
		int64		id = m365_spi_row_int8(r, 1);

		for (int i = 0; i < n; i++)
			if (account_ids[i] == id)
				due[i] = true;
	}
	SPI_finish();
}

List *
m365_store_outbox_mark_sending(int64 account_id, int limit)
{
	M365SpiArgs a = {0};
	MemoryContext caller = CurrentMemoryContext;
	List	   *out = NIL;
	uint64		n;

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg(&a, INT4OID, Int32GetDatum(limit), false);
	/* now() as $3: Citus refuses non-immutable functions inside coalesce in an UPDATE */
	m365_spi_arg(&a, TIMESTAMPTZOID, TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()), false);
	SPI_connect();
	n = m365_spi_run("WITH due AS (SELECT o.outbox_id FROM m365sync.outbox o"
					 "  WHERE o.account_id = $1 AND o.state = 'pending'"
					 "  AND coalesce(o.next_attempt_at, '-infinity') <= pg_catalog.now()"
					 "  ORDER BY o.outbox_id LIMIT $2 FOR UPDATE SKIP LOCKED)"
					 " UPDATE m365sync.outbox o SET attempts = o.attempts + 1,"
					 "  sent_at = coalesce(o.sent_at, $3)"
					 " FROM due WHERE o.account_id = $1 AND o.outbox_id = due.outbox_id"
					 " RETURNING o.outbox_id",
					 &a, SPI_OK_UPDATE_RETURNING, "counting a push");
	for (uint64 i = 0; i < n; i++)
	{
		int64	   *id = MemoryContextAlloc(caller, sizeof(int64));
		MemoryContext spi = MemoryContextSwitchTo(caller);

		*id = m365_spi_row_int8(i, 1);
		out = lappend(out, id);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return out;
}

/* The entry, and earlier failed ones of the event it supersedes, are done. */
void
m365_store_outbox_mark_done(int64 account_id, int64 outbox_id, int64 event_id)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, event_id);
	m365_spi_arg_int8(&a, outbox_id);
	m365_spi_run("UPDATE m365sync.outbox SET state = 'done', done_at = pg_catalog.now(),"
				 " last_error = CASE WHEN outbox_id = $3 THEN NULL ELSE last_error END,"
				 " next_attempt_at = NULL"
				 " WHERE account_id = $1 AND event_id = $2"
				 " AND (outbox_id = $3 OR (state = 'failed' AND outbox_id < $3))",
				 &a, SPI_OK_UPDATE, "marking a push done");
}

/* A create already made at Microsoft is sent again as a full update. */
void
m365_store_outbox_requeue_update(int64 account_id, int64 outbox_id, const char *base_change_key)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, outbox_id);
	m365_spi_arg_text(&a, base_change_key);
	m365_spi_run("UPDATE m365sync.outbox SET op = 'update', changed_fields = '{" M365_ALL_FIELDS "}',"
				 " base_change_key = $3, next_attempt_at = NULL"
				 " WHERE account_id = $1 AND outbox_id = $2",
				 &a, SPI_OK_UPDATE, "re-queueing a create");
}

void
m365_store_outbox_set_failed(int64 account_id, int64 outbox_id, const char *code)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, outbox_id);
	m365_spi_arg_text(&a, code);
	m365_spi_run("UPDATE m365sync.outbox SET state = 'failed', last_error = $3,"
				 " next_attempt_at = NULL WHERE account_id = $1 AND outbox_id = $2",
				 &a, SPI_OK_UPDATE, "failing a push");
}

/* A transient failure: try again after delay_s. Connects to SPI itself. */
void
m365_store_outbox_retry_later(int64 account_id, int64 outbox_id, double delay_s, const char *code)
{
	M365SpiArgs a = {0};

	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_int8(&a, outbox_id);
	m365_spi_arg_text(&a, code);
	m365_spi_arg(&a, FLOAT8OID, Float8GetDatum(delay_s), false);
	/* clock_timestamp() as $5: Citus refuses volatile functions in an UPDATE */
	m365_spi_arg(&a, TIMESTAMPTZOID, TimestampTzGetDatum(GetCurrentTimestamp()), false);
	m365_spi_exec("UPDATE m365sync.outbox SET last_error = $3,"
				  " next_attempt_at = $5 + pg_catalog.make_interval(secs => $4)"
				  " WHERE account_id = $1 AND outbox_id = $2",
				  &a, SPI_OK_UPDATE, "delaying a push");
}

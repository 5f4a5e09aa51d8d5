/*
 * store_conflicts.h — the SQL of conflicts between a local change and a
 * remote one: the outcome conflicts.c decided, the listing and the user's
 * own resolution (store_conflicts.c).
 *
 * A conflict is met in three places: the pull sees a remote change of an
 * event with a local change pending; a PATCH or DELETE answers 412 (the
 * remote version then read again); a PATCH answers 404 (deleted remotely).
 * The policy (conflicts.c) picks the version kept at once, on both sides; the other one
 * is stored encrypted in m365sync.conflicts and listed until the user
 * resolves it, and the event's sync_state is 'conflict' meanwhile. Nothing
 * is ever dropped without a conflicts row. A deletion as the losing version
 * is recorded as {"id", "@removed": {"reason": "deleted"}} (Graph's delta
 * form), with the last content when it was local.
 *
 * Every function connects to SPI itself (callers may be connected already)
 * and runs in the caller's transaction; it locks the event row first.
 */
#ifndef M365SYNC_STORE_CONFLICTS_H
#define M365SYNC_STORE_CONFLICTS_H

#include "postgres.h"

#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "event_row.h"

/* What the policy needs of the local version, read under the event's row lock. */
typedef struct M365ConflictLocal
{
	bool		has_local_modified;
	TimestampTz local_modified_at;
} M365ConflictLocal;

/*
 * For "only the changeKey moved" (conflicts.c): lock the event row and read
 * its content and the fields its pending changes touch (*content NULL for
 * a row without content); false when there is no row.
 */
extern bool m365_store_conflicts_lock_known(int64 account_id, int64 event_id, Jsonb **content,
											char ***fields, int *nfields);

/* It was only the changeKey: the row takes it, the pending change stays as it is. */
extern void m365_store_conflicts_refresh_etag(int64 account_id, int64 event_id, const M365EventColumns *c);

/* Lock the event row (FOR UPDATE) and read it; false when there is none. */
extern bool m365_store_conflicts_lock_event(int64 account_id, int64 event_id, M365ConflictLocal *local);

/*
 * The remote version (cols, data) met the event's pending local change and
 * conflicts.c decided: remote (the row takes it, the pending change is
 * withdrawn, the local version is listed) or local (listed the remote one,
 * the local one pushed whole over the new changeKey). policy names the
 * policy that decided, for the listing.
 */
extern void m365_store_conflicts_settle_changed(int64 account_id, int64 event_id, const char *policy,
												bool remote, const M365EventColumns *cols, Jsonb *data);

/* The event was deleted remotely while a local change was pending, and conflicts.c decided. */
extern void m365_store_conflicts_settle_deleted(int64 account_id, int64 event_id, const char *policy,
												bool remote);

/* Unresolved conflicts of the account into SPI_tuptable: event_id, detected_at, policy, kept, lost, conflict_id. */
extern uint64 m365_store_conflicts_list(int64 account_id);

/* The user's choice: keep is "local", "remote" or "kept"; false when the event has no open conflict. */
extern bool m365_store_conflicts_resolve(int64 account_id, int64 event_id, const char *keep);

/* purge.c: the rows of these accounts (connects itself). */
extern void m365_store_conflicts_delete_accounts(const int64 *account_ids, int n);

#endif							/* M365SYNC_STORE_CONFLICTS_H */

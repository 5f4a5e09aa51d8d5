/*
 * store_conflicts.h — conflicts between a local change and a remote one,
 * settled by m365sync.conflict_policy, and the user's own resolution
 * (store_conflicts.c).
 *
 * A conflict is met in three places: the pull sees a remote change of an
 * event with a local change pending; a PATCH or DELETE answers 412 (the
 * remote version then read again); a PATCH answers 404 (deleted remotely).
 * The policy picks the version kept at once, on both sides; the other one
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

#include "event_row.h"

/*
 * The remote version (cols, data) met the event's pending local change.
 * Returns true when the remote version won (the row now holds it and the
 * pending change is withdrawn), false when the local one did (it will be
 * pushed whole, over the new changeKey).
 */
extern bool m365_conflict_remote_changed(int64 account_id, int64 event_id,
										 const M365EventColumns *cols, Jsonb *data);

/*
 * The event was deleted remotely while a local change was pending. A
 * deletion has no time stamp: latest_wins counts it as made when seen, so
 * it wins like under remote_wins; local_wins creates the event again.
 */
extern bool m365_conflict_remote_deleted(int64 account_id, int64 event_id);

/* Unresolved conflicts of the account into SPI_tuptable: event_id, detected_at, policy, kept, lost, conflict_id. */
extern uint64 m365_conflict_list(int64 account_id);

/* The user's choice: keep is "local", "remote" or "kept"; false when the event has no open conflict. */
extern bool m365_conflict_resolve(int64 account_id, int64 event_id, const char *keep);

#endif							/* M365SYNC_STORE_CONFLICTS_H */

/*
 * conflicts.h — who wins when a local change meets a remote one
 * (conflicts.c). The pull and the push call these the same way, with the
 * policy they were given (m365sync.conflict_policy).
 */
#ifndef M365SYNC_CONFLICTS_H
#define M365SYNC_CONFLICTS_H

#include "postgres.h"

#include "utils/jsonb.h"

#include "event_row.h"
#include "settings.h"

/*
 * The remote version (cols, data) met the event's pending local change.
 * Returns true when the remote version won (the row now holds it and the
 * pending change is withdrawn), false when the local one did (it will be
 * pushed whole, over the new changeKey). The loser is listed.
 */
extern bool m365_conflicts_remote_changed(M365ConflictPolicy policy, int64 account_id, int64 event_id,
										  const M365EventColumns *cols, Jsonb *data);

/*
 * The remote version (cols, data) met the event's pending local change, or
 * answered its write with 412: when its writable fields are those last
 * known here (the fields the pending change touches by the keyed hashes of
 * their last-known values, outbox.base_hashes; the others by the row's
 * content), only the changeKey moved, as Exchange may do by itself after a create (GRAPH.md
 * §11). Then the row takes the new changeKey, the pending change stays and
 * goes with it, nothing is listed, and the answer is true. False: a real
 * change, for m365_conflicts_remote_changed.
 */
extern bool m365_conflicts_only_etag_moved(int64 account_id, int64 event_id,
										   const M365EventColumns *cols, Jsonb *data);

/*
 * The event was deleted remotely while a local change was pending. A
 * deletion has no time stamp: latest_wins counts it as made when seen, so
 * it wins like under remote_wins; local_wins creates the event again.
 */
extern bool m365_conflicts_remote_deleted(M365ConflictPolicy policy, int64 account_id, int64 event_id);

#endif							/* M365SYNC_CONFLICTS_H */

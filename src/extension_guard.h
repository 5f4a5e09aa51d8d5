/*
 * extension_guard.h — the sync worker's transactions hold the extension
 * (extension_guard.c).
 */
#ifndef M365SYNC_EXTENSION_GUARD_H
#define M365SYNC_EXTENSION_GUARD_H

/*
 * In a transaction of the worker, at the start of a round: is m365sync
 * installed? If so, takes a share lock on the extension object (which DROP
 * EXTENSION, and the utility hook for ALTER EXTENSION UPDATE, lock
 * exclusively) and remembers which extension (oid and version) the round
 * works on.
 */
extern bool m365_extension_round_begin(void);

/*
 * Start a transaction of the worker: the same share lock first, before any
 * table is touched, then a check that the extension is still the round's.
 * If it was dropped, re-created or updated meanwhile, the round is cut
 * short with an ERROR that m365_extension_round_cut() recognises (the
 * worker drops it quietly and starts over).
 */
extern void m365_worker_start_xact(void);

/* Was the ERROR in flight the cut of a round by DROP/ALTER EXTENSION? */
extern bool m365_extension_round_cut(void);

/*
 * Has the installed schema the objects 0.2.0 added (not still 0.1.0's,
 * between installing the new library and ALTER EXTENSION UPDATE)? Read
 * once per transaction. Code using 0.2.0's columns and tables asks this
 * first; what only they allow (per-calendar subscriptions, calendar list
 * refreshes, event ids kept across a move) waits for the update, the rest
 * runs as before.
 */
extern bool m365_schema_is_0_2(void);

#endif							/* M365SYNC_EXTENSION_GUARD_H */

/*
 * xact_util.h — transaction steps of a worker round (xact_util.c).
 */
#ifndef M365SYNC_XACT_UTIL_H
#define M365SYNC_XACT_UTIL_H

#include "utils/palloc.h"

/*
 * Commit the current transaction and start the next one (which first holds
 * the extension object: extension_guard.h), staying in the caller's memory
 * context (which must not be a transaction context: the
 * worker keeps its round state in the round context across commits).
 */
extern void m365_commit_and_continue(void);

/*
 * In a PG_CATCH of one account's step: report the error, roll its
 * transaction back and start the next one, back in `keep` (the round's
 * memory), so the other accounts go on. A round cut by DROP or ALTER
 * EXTENSION is not one account's error: it is re-thrown.
 */
extern void m365_report_and_continue(MemoryContext keep);

#endif							/* M365SYNC_XACT_UTIL_H */

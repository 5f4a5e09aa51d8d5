/*
 * xact_util.c — the worker's transaction steps: commit and go on, or report
 * one account's error and go on, staying in the round's memory.
 *
 * Shared by the flows (pull, push, subscriptions) and the scheduler, below
 * all of them; each new transaction first holds the extension object
 * (extension_guard.c). Knows no table and no flow.
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "extension_guard.h"
#include "xact_util.h"

void
m365_commit_and_continue(void)
{
	MemoryContext keep = CurrentMemoryContext;

	PopActiveSnapshot();
	CommitTransactionCommand();
	m365_worker_start_xact();
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(keep);
}

void
m365_report_and_continue(MemoryContext keep)
{
	/* DROP/ALTER EXTENSION cut the round: not one account's failure, the whole round goes */
	if (m365_extension_round_cut())
		PG_RE_THROW();
	MemoryContextSwitchTo(keep);
	EmitErrorReport();
	FlushErrorState();
	AbortCurrentTransaction();
	m365_worker_start_xact();
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(keep);
}

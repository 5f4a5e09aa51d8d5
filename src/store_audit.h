/*
 * store_audit.h — the audit trail, m365sync.audit_log (store_audit.c): one
 * row per privileged act, never content. Every function connects to SPI
 * itself and runs in the caller's transaction.
 */
#ifndef M365SYNC_STORE_AUDIT_H
#define M365SYNC_STORE_AUDIT_H

#include "postgres.h"

/*
 * Record a privileged act (one of audit_log's acts: configure, consent,
 * connect, disconnect, add_mailbox, export, purge, rewrap_keys,
 * resolve_conflict, distribute) for a FlowAgent user (NULL: none) and an
 * account (0: none). The database role recorded is the caller's, as it was
 * before any SECURITY DEFINER function (GetOuterUserId). Call it when the act
 * has succeeded, in its transaction: a rollback takes the row away with the
 * act. In a function owned by m365sync_definer the row must name the acting
 * user (row level security). On 0.1.0's schema (the new library before
 * ALTER EXTENSION UPDATE) there is no audit trail: nothing is written, and
 * pruning does nothing.
 */
extern void m365_audit_record(const char *act, const char *flowagent_user, int64 account_id);

/* Delete rows older than retention_s seconds (the only delete the trigger lets through). */
extern void m365_store_audit_prune(int retention_s);

#endif							/* M365SYNC_STORE_AUDIT_H */

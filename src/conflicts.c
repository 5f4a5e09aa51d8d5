/*
 * conflicts.c — decides who wins when a local change meets a remote one,
 * by the policy the caller passes (see conflicts.h).
 *
 * No SQL here: the event row is locked and read, and the outcome written,
 * by store_conflicts.c. Nothing is ever dropped: the losing version is
 * always listed there.
 */
#include "postgres.h"

#include "utils/jsonb.h"

#include "conflicts.h"
#include "event_patch.h"
#include "store_conflicts.h"

static cJSON *
tree_of(Jsonb *jb)
{
	char	   *text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	cJSON	   *tree = cJSON_Parse(text);

	pfree(text);
	return tree;
}

bool
m365_conflicts_only_etag_moved(int64 account_id, int64 event_id, const M365EventColumns *c, Jsonb *data)
{
	Jsonb	   *known;
	char	  **fields = NULL;
	int			n;
	cJSON	   *a;
	cJSON	   *b;
	bool		same;

	if (!m365_store_conflicts_lock_known(account_id, event_id, &known, &fields, &n) || known == NULL)
		return false;
	/*
	 * A pending update: the remote values of the fields it changes, as last
	 * known, are not kept, so a remote edit of those very fields could not
	 * be told from a changeKey that moved by itself. Only a row whose
	 * content is all last-known remote (a pending delete) is compared.
	 */
	if (n > 0)
		return false;
	a = tree_of(known);
	b = tree_of(data);
	same = a != NULL && b != NULL && m365_event_same_writable(a, b, (const char *const *) fields, n);
	cJSON_Delete(a);
	cJSON_Delete(b);
	if (same)
		m365_store_conflicts_refresh_etag(account_id, event_id, c);
	return same;
}

static bool
remote_wins(M365ConflictPolicy policy, bool remote_deleted, bool has_remote_modified,
			TimestampTz remote_modified, const M365ConflictLocal *local)
{
	switch (policy)
	{
		case M365_POLICY_REMOTE_WINS:
			return true;
		case M365_POLICY_LOCAL_WINS:
			return false;
		default:
			if (remote_deleted || !local->has_local_modified)
				return true;
			/* a tie goes to Microsoft: what everyone else already sees */
			return !has_remote_modified || remote_modified >= local->local_modified_at;
	}
}

static void
lock_event(int64 account_id, int64 event_id, M365ConflictLocal *local)
{
	if (!m365_store_conflicts_lock_event(account_id, event_id, local))
		elog(ERROR, "m365sync: event %lld vanished while settling a conflict", (long long) event_id);
}

bool
m365_conflicts_remote_changed(M365ConflictPolicy policy, int64 account_id, int64 event_id,
							  const M365EventColumns *c, Jsonb *data)
{
	M365ConflictLocal local;
	bool		remote;

	lock_event(account_id, event_id, &local);
	remote = remote_wins(policy, false, c->has_remote_modified, c->remote_modified_at, &local);
	m365_store_conflicts_settle_changed(account_id, event_id, m365_conflict_policy_name(policy),
										remote, c, data);
	return remote;
}

bool
m365_conflicts_remote_deleted(M365ConflictPolicy policy, int64 account_id, int64 event_id)
{
	M365ConflictLocal local;
	bool		remote;

	lock_event(account_id, event_id, &local);
	remote = remote_wins(policy, true, false, 0, &local);
	m365_store_conflicts_settle_deleted(account_id, event_id, m365_conflict_policy_name(policy), remote);
	return remote;
}

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
#include "store_outbox.h"

static cJSON *
tree_of(Jsonb *jb)
{
	char	   *text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	cJSON	   *tree = cJSON_Parse(text);

	pfree(text);
	return tree;
}

/*
 * Every field a pending update changes has its last-known remote value
 * kept as a keyed hash (store_outbox.h); the remote version must hash the
 * same. A field without one (a whole-event update, "*") is never unchanged.
 */
static bool
bases_unchanged(int64 account_id, int64 event_id, const cJSON *remote, char **fields, int n)
{
	char	  **bases;
	int			nb = m365_store_outbox_pending_bases(account_id, event_id, &bases);

	for (int i = 0; i < n; i++)
	{
		char	   *want = m365_store_outbox_base_hash(account_id, remote, fields[i]);
		size_t		klen = strchr(want, '=') - want + 1;
		bool		found = false;

		if (strcmp(fields[i], M365_ALL_FIELDS) == 0)
			return false;
		/* the earliest base of the field is the last-known remote value */
		for (int k = 0; k < nb && !found; k++)
			if (strncmp(bases[k], want, klen) == 0)
			{
				if (strcmp(bases[k], want) != 0)
					return false;
				found = true;
			}
		if (!found)
			return false;
	}
	return true;
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
	a = tree_of(known);
	b = tree_of(data);
	/* the row may keep the caller's zone names: times compare as instants */
	if (!m365_event_times_as_instants(a) || !m365_event_times_as_instants(b))
	{
		cJSON_Delete(a);
		cJSON_Delete(b);
		return false;
	}
	/* the fields changed here: their remote values must be the last known ones */
	same = a != NULL && b != NULL && m365_event_same_writable(a, b, (const char *const *) fields, n) &&
		bases_unchanged(account_id, event_id, b, fields, n);
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

/*
 * sql_notify.c — m365sync.handle_notification(body, validation_token), the
 * function FlowAgent's webhook handler calls for every request Graph sends
 * to m365sync.notification_url or m365sync.lifecycle_url.
 *
 * Thin and fast (no HTTP, a handful of index probes): answer the validation
 * handshake; otherwise read the body, check every item's clientState
 * against its subscription's in constant time, then act on the items that
 * pass: mark their accounts due, flag lifecycle events for the worker and
 * wake it at commit. One POST can carry items of several subscriptions,
 * and a non-2xx answer makes Graph retry all of it for hours and then drop
 * it (GRAPH.md §11), so an item that fails is ignored and logged by its
 * subscription id alone; only a body in which no item passes is refused
 * with 42501, before anything is written. A notification never carries
 * event content into the database: the worker's next delta round fetches
 * the change. Replays cost no round: a change already pulled (same event id
 * and changeKey) marks nothing, a pending mark takes no second one, and a
 * mark is due only 1 s after the account's last round began
 * (store_subscriptions.h). No message echoes the body, a clientState or a
 * token.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "crypto.h"
#include "notify_util.h"
#include "store_events_pull.h"
#include "store_subscriptions.h"
#include "store_placement.h"
#include "wake.h"

/* Graph's notification bodies are small; anything this large is not one. */
#define MAX_BODY_BYTES			(1024 * 1024)
#define MAX_VALIDATION_TOKEN	1024

typedef struct Item
{
	char		subscription_id[M365_SUBSCRIPTION_ID_MAX + 1];
	uint8		state_hash[32]; /* SHA-256 of the clientState given */
	bool		has_state;
	M365NotificationKind kind;
	char	   *resource_id;	/* a change's event and version, when named */
	char	   *change_key;
	bool		deleted;
	int64		account_id;		/* once verified */
} Item;

/* Copy the parsed items into palloc'd memory, keeping only a hash of each clientState. */
static Item *
take_items(M365Notification *n)
{
	Item	   *items = palloc0(sizeof(Item) * n->count);
	int			i;
	bool		ok = true;

	for (i = 0; i < n->count; i++)
	{
		M365NotificationItem *it = &n->items[i];

		strlcpy(items[i].subscription_id, it->subscription_id, sizeof(items[i].subscription_id));
		items[i].kind = it->kind;
		items[i].resource_id = it->resource_id ? pstrdup(it->resource_id) : NULL;
		items[i].change_key = it->change_key ? pstrdup(it->change_key) : NULL;
		items[i].deleted = it->deleted;
		if (it->client_state != NULL)
		{
			items[i].has_state = true;
			ok &= m365_sha256((const uint8 *) it->client_state, strlen(it->client_state),
							  items[i].state_hash) == M365_CRYPTO_OK;
			m365_secure_zero(it->client_state, strlen(it->client_state));
		}
	}
	m365_notification_free(n);
	if (!ok)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not hash a clientState")));
	return items;
}

/* Which account's subscription this item is from, or 0 when none matches. */
static int64
verify(const Item *item)
{
	int64	   *accounts;
	char	  **states;
	int			n = m365_store_subscriptions_lookup(item->subscription_id, &accounts, &states);
	int64		found = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		uint8		h[32];

		/* Hashes of equal length, compared in constant time. */
		if (m365_sha256((const uint8 *) states[i], strlen(states[i]), h) == M365_CRYPTO_OK &&
			item->has_state && m365_secure_equal(h, item->state_hash, sizeof(h)) && found == 0)
			found = accounts[i];
		m365_secure_zero(states[i], strlen(states[i]));
		m365_secure_zero(h, sizeof(h));
	}
	return found;
}

PG_FUNCTION_INFO_V1(m365sync_handle_notification);

Datum
m365sync_handle_notification(PG_FUNCTION_ARGS)
{
	text	   *body;
	M365Notification parsed;
	Item	   *items;
	int64	   *due;
	int			ndue = 0;
	int			nvalid = 0;
	int			count;
	int			i,
				j;

	/* The handshake: Graph checks that the endpoint echoes its token. */
	if (!PG_ARGISNULL(1))
	{
		text	   *token = PG_GETARG_TEXT_PP(1);
		size_t		len = VARSIZE_ANY_EXHDR(token);

		if (len == 0 || len > MAX_VALIDATION_TOKEN)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("validation_token must be 1 to %d bytes", MAX_VALIDATION_TOKEN)));
		PG_RETURN_TEXT_P(PG_GETARG_TEXT_P_COPY(1));
	}
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("body must not be null"),
				 errhint("Pass the request body, or the validationToken query parameter as validation_token.")));
	body = PG_GETARG_TEXT_PP(0);
	if (VARSIZE_ANY_EXHDR(body) > MAX_BODY_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("body is larger than %d bytes", MAX_BODY_BYTES)));
	if (m365_parse_notification(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), &parsed) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("body is not a Graph change notification"),
				 errdetail("Expected {\"value\":[{\"subscriptionId\":..., \"clientState\":...}, ...]}.")));
	count = parsed.count;
	items = take_items(&parsed);

	/* Every item first: nothing is written unless one passes. */
	for (i = 0; i < count; i++)
	{
		/* A batch repeats subscriptions: verify each (id, clientState) once. */
		for (j = 0; j < i; j++)
			if (strcmp(items[j].subscription_id, items[i].subscription_id) == 0 &&
				items[j].has_state == items[i].has_state &&
				memcmp(items[j].state_hash, items[i].state_hash, 32) == 0)
				break;
		items[i].account_id = j < i ? items[j].account_id : verify(&items[i]);
		if (items[i].account_id != 0)
			nvalid++;
	}
	if (nvalid == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("notification rejected: no subscription of this installation matches"),
				 errdetail("No item names a known subscription with its clientState; nothing was done."),
				 errhint("Answer the request with HTTP 403.")));

	due = palloc(sizeof(int64) * count);
	for (i = 0; i < count; i++)
	{
		if (items[i].account_id == 0)
		{
			/* once per subscription id */
			for (j = 0; j < i; j++)
				if (items[j].account_id == 0 &&
					strcmp(items[j].subscription_id, items[i].subscription_id) == 0)
					break;
			if (j < i)
				continue;
			/* The id passed the parser's charset check; the clientState is never shown. */
			ereport(LOG,
					(errmsg("m365sync: ignored a notification item for subscription %s",
							items[i].subscription_id),
					 errdetail("The subscription is unknown or the clientState does not match; "
							   "the other items of the request were accepted.")));
			continue;
		}
		switch (items[i].kind)
		{
			case M365_NOTE_REAUTHORIZE:
				m365_store_subscriptions_flag(items[i].account_id, items[i].subscription_id, false);
				break;
			case M365_NOTE_REMOVED:
				m365_store_subscriptions_flag(items[i].account_id, items[i].subscription_id, true);
				due[ndue++] = items[i].account_id;
				break;
			case M365_NOTE_CHANGE:
				/* a change already pulled (a replay, or Graph sending it again): nothing to do */
				if (items[i].resource_id != NULL &&
					m365_store_events_pull_is_current(items[i].account_id, items[i].resource_id,
													  items[i].change_key, items[i].deleted))
					break;
				due[ndue++] = items[i].account_id;
				break;
			case M365_NOTE_MISSED:
				due[ndue++] = items[i].account_id;
				break;
		}
	}
	m365_store_wakeups_mark(due, ndue);
	/* each account's worker, on Citus on the account's node; a flagged subscription: the one that keeps them */
	for (i = 0; i < ndue; i++)
		m365_store_placement_wake_owner(due[i]);
	if (ndue < count)
		m365_wake_chores_at_commit();
	PG_RETURN_TEXT_P(cstring_to_text("accepted"));
}

/*
 * notify_util.h — pure-C pieces of Graph change notifications (notify_util.c,
 * GRAPH.md §8): the reader of a notification body FlowAgent hands to
 * m365sync.handle_notification, and the writer and reader of subscription
 * requests and answers.
 *
 * No postgres.h: unit tests and fuzz targets call these directly. Strings
 * are malloc'd; each struct has its free function. Nothing here logs, and
 * nothing here keeps a notification's resource or resourceData: a
 * notification never carries event content into the database.
 */
#ifndef M365SYNC_NOTIFY_UTIL_H
#define M365SYNC_NOTIFY_UTIL_H

#include <stdbool.h>
#include <stddef.h>

/* Graph's subscription ids are GUIDs; anything longer is not one of ours. */
#define M365_SUBSCRIPTION_ID_MAX	64
/* Items per notification body (Graph batches far fewer). */
#define M365_NOTIFICATION_MAX_ITEMS	1000

typedef enum M365NotificationKind
{
	M365_NOTE_CHANGE,			/* created / updated / deleted: pull now */
	M365_NOTE_REAUTHORIZE,		/* lifecycle reauthorizationRequired: renew */
	M365_NOTE_REMOVED,			/* lifecycle subscriptionRemoved: recreate, pull */
	M365_NOTE_MISSED			/* lifecycle missed (or unknown): pull */
} M365NotificationKind;

/* Longest resourceData id or etag kept (Graph's ids are ~150 characters). */
#define M365_NOTIFICATION_ID_MAX	512

typedef struct M365NotificationItem
{
	char		subscription_id[M365_SUBSCRIPTION_ID_MAX + 1];
	char	   *client_state;	/* malloc'd; NULL when the item has none */
	M365NotificationKind kind;
	/* a change's event, when Graph named it (malloc'd, else NULL) */
	char	   *resource_id;	/* resourceData.id */
	char	   *change_key;		/* resourceData.@odata.etag, without W/"…" */
	bool		deleted;		/* changeType "deleted" */
} M365NotificationItem;

typedef struct M365Notification
{
	M365NotificationItem *items;
	int			count;
} M365Notification;

/*
 * {"value":[{"subscriptionId":..., "clientState":..., "lifecycleEvent"?...}]}.
 * 0 on success; -1 when the body is not such a notification (not JSON, no
 * non-empty value array, an item without a well-formed subscriptionId, too
 * many items). Nothing is half-read: on -1 *out is empty.
 */
extern int	m365_parse_notification(const char *body, size_t len, M365Notification *out);
extern void m365_notification_free(M365Notification *n);

/* Is s a plausible subscription id (1..64 of [A-Za-z0-9-])? */
extern bool m365_subscription_id_is_valid(const char *s);

/*
 * POST /subscriptions body for resource (e.g. "users/{id}/events"), changes
 * created,updated,deleted. lifecycle_url may be NULL or "". expiration is an
 * ISO 8601 UTC instant. malloc'd; NULL when out of memory.
 */
extern char *m365_subscription_create_body(const char *resource, const char *notification_url,
										   const char *lifecycle_url, const char *expiration,
										   const char *client_state);

/* PATCH /subscriptions/{id} body: {"expirationDateTime": expiration}. */
extern char *m365_subscription_renew_body(const char *expiration);

/*
 * A subscription answer: its id and expirationDateTime (malloc'd). -1 when
 * either is missing or the id is not well formed.
 */
extern int	m365_parse_subscription(const char *body, size_t len, char **id, char **expiration);

#endif							/* M365SYNC_NOTIFY_UTIL_H */

/*
 * notify_util.c — pure-C readers and writers of Graph change notifications
 * and subscriptions (see notify_util.h).
 *
 * Bytes in, structs out, through cJSON only; no postgres.h, no network, no
 * logging. Of a notification only what routes it is kept — the
 * subscription id, the clientState to check, the lifecycle event, and of a
 * change the event's id and changeKey (resourceData.id, @odata.etag), so a
 * replay of a change already pulled marks nothing — never anything else.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "notify_util.h"

bool
m365_subscription_id_is_valid(const char *s)
{
	size_t		n;

	if (s == NULL)
		return false;
	for (n = 0; s[n] != '\0'; n++)
	{
		char		c = s[n];

		if (n >= M365_SUBSCRIPTION_ID_MAX)
			return false;
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
			  (c >= 'A' && c <= 'Z') || c == '-'))
			return false;
	}
	return n > 0;
}

/* A short string member of obj, copied (malloc'd); NULL when absent, not a string or too long. */
static char *
short_string(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	if (!cJSON_IsString(v) || v->valuestring == NULL || v->valuestring[0] == '\0' ||
		strlen(v->valuestring) > M365_NOTIFICATION_ID_MAX)
		return NULL;
	return strdup(v->valuestring);
}

/*
 * Which event a change notification names, and its version: resourceData's
 * id and @odata.etag (W/"<changeKey>" → changeKey). Both stay NULL when
 * Graph sent none: the item then simply marks the account due.
 */
static bool
read_resource(const cJSON *item, M365NotificationItem *it)
{
	const cJSON *rd = cJSON_GetObjectItemCaseSensitive(item, "resourceData");
	const cJSON *ct = cJSON_GetObjectItemCaseSensitive(item, "changeType");
	char	   *etag;
	size_t		n;

	it->deleted = cJSON_IsString(ct) && ct->valuestring && strcmp(ct->valuestring, "deleted") == 0;
	if (!cJSON_IsObject(rd))
		return true;
	it->resource_id = short_string(rd, "id");
	etag = short_string(rd, "@odata.etag");
	if (etag == NULL)
		return true;
	n = strlen(etag);
	if (n >= 4 && strncmp(etag, "W/\"", 3) == 0 && etag[n - 1] == '"')
	{
		memmove(etag, etag + 3, n - 4);
		etag[n - 4] = '\0';
	}
	it->change_key = etag[0] ? etag : NULL;
	if (it->change_key == NULL)
		free(etag);
	return true;
}

static M365NotificationKind
kind_of(const cJSON *item, bool *ok)
{
	const cJSON *ev = cJSON_GetObjectItemCaseSensitive(item, "lifecycleEvent");

	*ok = true;
	if (ev == NULL || cJSON_IsNull(ev))
		return M365_NOTE_CHANGE;
	if (!cJSON_IsString(ev) || ev->valuestring == NULL)
	{
		*ok = false;
		return M365_NOTE_CHANGE;
	}
	if (strcmp(ev->valuestring, "reauthorizationRequired") == 0)
		return M365_NOTE_REAUTHORIZE;
	if (strcmp(ev->valuestring, "subscriptionRemoved") == 0)
		return M365_NOTE_REMOVED;
	/* "missed", and any event Graph adds later: a pull is always safe. */
	return M365_NOTE_MISSED;
}

void
m365_notification_free(M365Notification *n)
{
	int			i;

	if (n == NULL)
		return;
	for (i = 0; i < n->count; i++)
	{
		free(n->items[i].client_state);
		free(n->items[i].resource_id);
		free(n->items[i].change_key);
	}
	free(n->items);
	n->items = NULL;
	n->count = 0;
}

int
m365_parse_notification(const char *body, size_t len, M365Notification *out)
{
	cJSON	   *root;
	const cJSON *value,
			   *item;
	int			n,
				i = 0;

	memset(out, 0, sizeof(*out));
	if (body == NULL)
		return -1;
	root = cJSON_ParseWithLength(body, len);
	if (root == NULL)
		return -1;
	value = cJSON_GetObjectItemCaseSensitive(root, "value");
	n = cJSON_IsArray(value) ? cJSON_GetArraySize(value) : 0;
	if (!cJSON_IsObject(root) || n <= 0 || n > M365_NOTIFICATION_MAX_ITEMS)
	{
		cJSON_Delete(root);
		return -1;
	}
	out->items = calloc(n, sizeof(M365NotificationItem));
	if (out->items == NULL)
	{
		cJSON_Delete(root);
		return -1;
	}
	cJSON_ArrayForEach(item, value)
	{
		const cJSON *sid = cJSON_GetObjectItemCaseSensitive(item, "subscriptionId");
		const cJSON *cs = cJSON_GetObjectItemCaseSensitive(item, "clientState");
		M365NotificationItem *it = &out->items[i];
		bool		ok;

		out->count = ++i;
		if (!cJSON_IsObject(item) || !cJSON_IsString(sid) ||
			!m365_subscription_id_is_valid(sid->valuestring))
			goto bad;
		strcpy(it->subscription_id, sid->valuestring);
		it->kind = kind_of(item, &ok);
		if (!ok)
			goto bad;
		if (it->kind == M365_NOTE_CHANGE)
			(void) read_resource(item, it);
		if (cs != NULL && !cJSON_IsNull(cs))
		{
			if (!cJSON_IsString(cs) || cs->valuestring == NULL)
				goto bad;
			it->client_state = strdup(cs->valuestring);
			if (it->client_state == NULL)
				goto bad;
		}
	}
	cJSON_Delete(root);
	return 0;

bad:
	cJSON_Delete(root);
	m365_notification_free(out);
	return -1;
}

static char *
print_and_free(cJSON *o)
{
	char	   *s = o ? cJSON_PrintUnformatted(o) : NULL;

	cJSON_Delete(o);
	return s;
}

char *
m365_subscription_create_body(const char *resource, const char *notification_url,
							  const char *lifecycle_url, const char *expiration,
							  const char *client_state)
{
	cJSON	   *o = cJSON_CreateObject();

	if (o == NULL ||
		!cJSON_AddStringToObject(o, "changeType", "created,updated,deleted") ||
		!cJSON_AddStringToObject(o, "notificationUrl", notification_url) ||
		(lifecycle_url && lifecycle_url[0] &&
		 !cJSON_AddStringToObject(o, "lifecycleNotificationUrl", lifecycle_url)) ||
		!cJSON_AddStringToObject(o, "resource", resource) ||
		!cJSON_AddStringToObject(o, "expirationDateTime", expiration) ||
		!cJSON_AddStringToObject(o, "clientState", client_state))
	{
		cJSON_Delete(o);
		return NULL;
	}
	return print_and_free(o);
}

char *
m365_subscription_renew_body(const char *expiration)
{
	cJSON	   *o = cJSON_CreateObject();

	if (o == NULL || !cJSON_AddStringToObject(o, "expirationDateTime", expiration))
	{
		cJSON_Delete(o);
		return NULL;
	}
	return print_and_free(o);
}

int
m365_parse_subscription(const char *body, size_t len, char **id, char **expiration)
{
	cJSON	   *root;
	const cJSON *i,
			   *e;
	int			rc = -1;

	*id = NULL;
	*expiration = NULL;
	if (body == NULL)
		return -1;
	root = cJSON_ParseWithLength(body, len);
	if (root == NULL)
		return -1;
	i = cJSON_GetObjectItemCaseSensitive(root, "id");
	e = cJSON_GetObjectItemCaseSensitive(root, "expirationDateTime");
	if (cJSON_IsString(i) && m365_subscription_id_is_valid(i->valuestring) &&
		cJSON_IsString(e) && e->valuestring != NULL && strlen(e->valuestring) < 64)
	{
		*id = strdup(i->valuestring);
		*expiration = strdup(e->valuestring);
		if (*id && *expiration)
			rc = 0;
		else
		{
			free(*id);
			free(*expiration);
			*id = *expiration = NULL;
		}
	}
	cJSON_Delete(root);
	return rc;
}

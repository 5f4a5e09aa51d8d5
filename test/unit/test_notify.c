/*
 * test_notify.c — the pure-C pieces of change notifications (notify_util.c):
 * the notification reader (what is kept, what makes a body malformed), the
 * subscription request bodies and the subscription answer reader.
 */
#include <stdlib.h>
#include <string.h>

#include "notify_util.h"
#include "tap.h"

#define S(lit) (lit), strlen(lit)

static void
test_notifications(void)
{
	M365Notification n;
	static const char *const malformed[] = {
		"", "null", "[]", "{}", "{\"value\":[]}", "{\"value\":{}}", "{\"value\":[1]}",
		"{\"value\":[{}]}", "{\"value\":[{\"subscriptionId\":\"\"}]}",
		"{\"value\":[{\"subscriptionId\":\"a/b\"}]}",
		"{\"value\":[{\"subscriptionId\":\"abc\",\"clientState\":7}]}",
		"{\"value\":[{\"subscriptionId\":\"abc\",\"lifecycleEvent\":true}]}",
		"{\"value\":[{\"subscriptionId\":\"abc\"},{\"subscriptionId\":\"a b\"}]}",
		"{\"value\":[{\"subscriptionId\":\"abc\"}]",
		NULL
	};
	const char *body =
		"{\"value\":[{\"subscriptionId\":\"0a1b-2c\",\"clientState\":\"cs1\",\"changeType\":\"updated\","
		"\"resource\":\"Users/u/Events/e\",\"resourceData\":{\"id\":\"e\",\"subject\":\"secret\"}},"
		"{\"subscriptionId\":\"0a1b-2c\",\"clientState\":\"cs1\",\"lifecycleEvent\":\"reauthorizationRequired\"},"
		"{\"subscriptionId\":\"0a1b-2c\",\"clientState\":\"cs1\",\"lifecycleEvent\":\"subscriptionRemoved\"},"
		"{\"subscriptionId\":\"0a1b-2c\",\"lifecycleEvent\":\"missed\"},"
		"{\"subscriptionId\":\"0a1b-2c\",\"clientState\":null,\"lifecycleEvent\":\"somethingNew\"}]}";
	char		big[80];
	int			i;

	ok(m365_parse_notification(S(body), &n) == 0 && n.count == 5, "a batch of five items is read");
	ok(strcmp(n.items[0].subscription_id, "0a1b-2c") == 0 && n.items[0].kind == M365_NOTE_CHANGE &&
	   strcmp(n.items[0].client_state, "cs1") == 0, "a change notification: id, change, clientState");
	ok(strcmp(n.items[0].resource_id, "e") == 0 && n.items[0].change_key == NULL && !n.items[0].deleted,
	   "a change names its event's id; no etag, no changeKey");
	ok(n.items[1].resource_id == NULL && n.items[1].change_key == NULL, "a lifecycle event names no event");
	ok(n.items[1].kind == M365_NOTE_REAUTHORIZE, "reauthorizationRequired");
	ok(n.items[2].kind == M365_NOTE_REMOVED, "subscriptionRemoved");
	ok(n.items[3].kind == M365_NOTE_MISSED && n.items[3].client_state == NULL, "missed, without clientState");
	ok(n.items[4].kind == M365_NOTE_MISSED && n.items[4].client_state == NULL,
	   "an unknown lifecycle event means a pull; a null clientState is none");
	m365_notification_free(&n);
	ok(n.items == NULL && n.count == 0, "freed");

	{
		const char *etags =
			"{\"value\":[{\"subscriptionId\":\"s\",\"changeType\":\"deleted\","
			"\"resourceData\":{\"id\":\"AAMk=\",\"@odata.etag\":\"W/\\\"DwAAAB\\\"\"}},"
			"{\"subscriptionId\":\"s\",\"resourceData\":{\"id\":7,\"@odata.etag\":\"plain\"}},"
			"{\"subscriptionId\":\"s\",\"resourceData\":\"not an object\"}]}";

		ok(m365_parse_notification(S(etags), &n) == 0 && n.count == 3, "three changes are read");
		ok(strcmp(n.items[0].resource_id, "AAMk=") == 0 && strcmp(n.items[0].change_key, "DwAAAB") == 0 &&
		   n.items[0].deleted, "a deletion: the id, and the changeKey out of W/\"...\"");
		ok(n.items[1].resource_id == NULL && strcmp(n.items[1].change_key, "plain") == 0 && !n.items[1].deleted,
		   "an id that is not a string is none; an etag without W/ is kept as is");
		ok(n.items[2].resource_id == NULL && n.items[2].change_key == NULL,
		   "resourceData that is not an object names nothing (and is no error)");
		m365_notification_free(&n);
	}

	for (i = 0; malformed[i]; i++)
	{
		int			rc = m365_parse_notification(S(malformed[i]), &n);

		ok(rc == -1 && n.items == NULL && n.count == 0, "malformed %d (%s) is refused whole", i, malformed[i]);
	}
	ok(m365_parse_notification(NULL, 0, &n) == -1, "NULL body refused");

	memset(big, 'a', 64);
	big[64] = '\0';
	ok(m365_subscription_id_is_valid(big), "a 64-character id is valid");
	big[64] = 'a';
	big[65] = '\0';
	ok(!m365_subscription_id_is_valid(big), "a 65-character id is not");
}

static void
test_subscription_bodies(void)
{
	char	   *b = m365_subscription_create_body("users/u-1/events", "https://fa.example/hook?x=\"1\"",
												  "https://fa.example/life", "2026-01-01T00:00:00.0000000Z", "cs");
	char	   *id,
			   *exp;

	ok(b && strstr(b, "\"changeType\":\"created,updated,deleted\"") &&
	   strstr(b, "\"notificationUrl\":\"https://fa.example/hook?x=\\\"1\\\"\"") &&
	   strstr(b, "\"lifecycleNotificationUrl\":\"https://fa.example/life\"") &&
	   strstr(b, "\"resource\":\"users/u-1/events\"") && strstr(b, "\"clientState\":\"cs\""),
	   "create body: JSON-escaped fields: %s", b ? b : "(null)");
	free(b);
	b = m365_subscription_create_body("users/u/events", "https://h/n", "", "2026-01-01T00:00:00Z", "cs");
	ok(b && !strstr(b, "lifecycleNotificationUrl"), "no lifecycle URL when the setting is empty");
	free(b);
	b = m365_subscription_renew_body("2026-01-01T00:00:00Z");
	ok(b && strcmp(b, "{\"expirationDateTime\":\"2026-01-01T00:00:00Z\"}") == 0, "renew body: %s", b ? b : "(null)");
	free(b);

	ok(m365_parse_subscription(S("{\"id\":\"7f-1\",\"expirationDateTime\":\"2026-01-01T00:00:00.0000000+00:00\"}"),
							   &id, &exp) == 0 &&
	   strcmp(id, "7f-1") == 0 && strcmp(exp, "2026-01-01T00:00:00.0000000+00:00") == 0, "subscription answer read");
	free(id);
	free(exp);
	ok(m365_parse_subscription(S("{\"id\":\"7f 1\",\"expirationDateTime\":\"x\"}"), &id, &exp) == -1 && !id && !exp,
	   "an id that is not an id is refused");
	ok(m365_parse_subscription(S("{\"id\":\"7f\"}"), &id, &exp) == -1, "no expiry: refused");
	ok(m365_parse_subscription(S("nope"), &id, &exp) == -1, "not JSON: refused");
}

int
main(void)
{
	test_notifications();
	test_subscription_bodies();
	return done_testing();
}

/*
 * fuzz_notify.c — libFuzzer target of the change-notification readers
 * (src/notify_util.c) as handle_notification and subscriptions.c call them:
 * a notification body and a subscription answer, on the same bytes.
 *
 * Promises checked: a read notification has 1..1000 items, each with a
 * well-formed subscription id and a known kind; a refused one leaves nothing
 * allocated; a subscription answer has a well-formed id and an expiry.
 */
#include "notify_util.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	M365Notification n;
	char	   *id,
			   *exp;
	int			i;

	if (m365_parse_notification((const char *) data, size, &n) == 0)
	{
		FUZZ_CHECK(n.count >= 1 && n.count <= M365_NOTIFICATION_MAX_ITEMS);
		for (i = 0; i < n.count; i++)
		{
			FUZZ_CHECK(m365_subscription_id_is_valid(n.items[i].subscription_id));
			FUZZ_CHECK(n.items[i].kind >= M365_NOTE_CHANGE && n.items[i].kind <= M365_NOTE_MISSED);
		}
		m365_notification_free(&n);
	}
	else
		FUZZ_CHECK(n.items == NULL && n.count == 0);

	if (m365_parse_subscription((const char *) data, size, &id, &exp) == 0)
	{
		FUZZ_CHECK(m365_subscription_id_is_valid(id) && exp != NULL);
		free(id);
		free(exp);
	}
	else
		FUZZ_CHECK(id == NULL && exp == NULL);
	return 0;
}

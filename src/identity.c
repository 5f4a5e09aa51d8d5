/*
 * identity.c — who the current transaction acts for.
 *
 * Every user function (m365sync_app) acts for exactly one FlowAgent user:
 * the value of m365sync.flowagent_user. Unset or empty is an error, never
 * "everybody".
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "m365sync.h"

/* Longest FlowAgent user id we accept; ids are opaque keys, not text blobs. */
#define MAX_FLOWAGENT_USER_LEN 255

const char *
m365_acting_user(void)
{
	const char *user = m365_flowagent_user;

	if (user == NULL || user[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("no FlowAgent user is set for this transaction"),
				 errdetail("m365sync user functions act for the user named by m365sync.flowagent_user."),
				 errhint("Run SET LOCAL m365sync.flowagent_user = '<FlowAgent user id>' first, "
						 "or SELECT set_config('m365sync.flowagent_user', $1, true) from a driver.")));
	if (strlen(user) > MAX_FLOWAGENT_USER_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("m365sync.flowagent_user is longer than %d bytes", MAX_FLOWAGENT_USER_LEN)));
	return user;
}

PG_FUNCTION_INFO_V1(m365sync_acting_user);

/* SQL: m365sync.acting_user() → text, for SQL-language user functions. */
Datum
m365sync_acting_user(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(m365_acting_user()));
}

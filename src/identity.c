/*
 * identity.c — who the current transaction acts for.
 *
 * Every user function (m365sync_app) acts for exactly one FlowAgent user:
 * the value of m365sync.flowagent_user. Unset or empty is an error, never
 * "everybody".
 *
 * The value counts only in the transaction that assigned it (SPEC §3). A
 * pooler in transaction mode hands one server session to many clients in
 * turn, so a value left over from an earlier transaction (a session-level
 * SET, a SET LOCAL that was a no-op in autocommit, ALTER ROLE ... SET, a
 * postgresql.conf entry) may belong to somebody else's request.
 *
 * How "assigned in this transaction" is known: the setting's check hook runs
 * for every new value (SET, SET LOCAL, set_config, a function's SET clause)
 * and only then, never when PostgreSQL restores an older value at commit,
 * abort or ROLLBACK TO SAVEPOINT. The check hook stamps the value's GUC
 * "extra" with the local transaction id of the transaction that set it;
 * PostgreSQL keeps that extra with the value through every save and restore,
 * so a restored older value keeps its older stamp. The assign hook only
 * remembers the stamp of the value now in effect. Local transaction ids are
 * per backend and never reused within it, and read-only transactions have one
 * too (an xid would not do: most reads never get one).
 *
 * The setting itself (m365sync.flowagent_user) is defined here too, from
 * m365_define_settings, so its variable and its hooks live together.
 */
#include "postgres.h"

#include <stdlib.h>

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"

#include "identity.h"
#include "spi_util.h"

char	   *m365_flowagent_user = NULL;

/* Longest FlowAgent user id we accept; ids are opaque keys, not text blobs. */
#define MAX_FLOWAGENT_USER_LEN 255

#define FLOWAGENT_USER_GUC "m365sync.flowagent_user"

/* The GUC extra of a value of m365sync.flowagent_user. */
typedef struct ActingUserStamp
{
	LocalTransactionId lxid;	/* transaction that set it; invalid = none */
} ActingUserStamp;

/* Stamp of the value in effect (set by the assign hook). */
static ActingUserStamp *current_stamp = NULL;

/* True while _PG_init turns a placeholder into the real setting. */
static bool defining_setting = false;

bool
m365_flowagent_user_check(char **newval, void **extra, GucSource source)
{
	ActingUserStamp *stamp = malloc(sizeof(ActingUserStamp));

	if (stamp == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return false;
	}
	/*
	 * Outside a transaction (postgresql.conf at start or reload) there is no
	 * transaction the value could count for. While the library is being
	 * loaded, PostgreSQL re-applies values set before it was loaded, some
	 * from earlier transactions: m365_flowagent_user_defined() sorts that out.
	 */
	if (defining_setting || MyProc == NULL || !IsTransactionState())
		stamp->lxid = InvalidLocalTransactionId;
	else
		stamp->lxid = MyProc->lxid;
	*extra = stamp;
	return true;
}

void
m365_flowagent_user_assign(const char *newval, void *extra)
{
	current_stamp = extra;
}

/*
 * Called by _PG_init around DefineCustomStringVariable. When the library is
 * loaded after a SET of the setting (no shared_preload_libraries), the value
 * lived in a placeholder until now. The placeholder's own stack says whether
 * it was changed in the current transaction: only then does the value now in
 * effect count (a SET, SET LOCAL or set_config of this transaction, not a
 * RESET to a configured default). Every other re-applied value stays
 * unstamped, so it is refused — the safe side.
 */
bool
m365_flowagent_user_placeholder_is_fresh(void)
{
	struct config_generic **vars = get_guc_variables();
	int			n = GetNumConfigOptions();
	int			i;

	for (i = 0; i < n; i++)
	{
		struct config_generic *g = vars[i];

		if (strcmp(g->name, FLOWAGENT_USER_GUC) == 0)
			return (g->flags & GUC_CUSTOM_PLACEHOLDER) != 0 &&
				g->stack != NULL && g->source == PGC_S_SESSION;
	}
	return false;
}

void
m365_flowagent_user_defining(bool defining, bool placeholder_fresh)
{
	defining_setting = defining;
	if (!defining && placeholder_fresh && current_stamp != NULL &&
		MyProc != NULL && IsTransactionState())
		current_stamp->lxid = MyProc->lxid;
}

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
	if (current_stamp == NULL || !LocalTransactionIdIsValid(current_stamp->lxid) ||
		MyProc == NULL || current_stamp->lxid != MyProc->lxid)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("m365sync.flowagent_user was not set in this transaction"),
				 errdetail("The value was set in an earlier transaction or at session level; "
						   "it counts only in the transaction that set it, so that a pooled "
						   "connection never acts for the previous client's user."),
				 errhint("Inside the transaction, run SET LOCAL m365sync.flowagent_user = '<FlowAgent user id>' "
						 "or SELECT set_config('m365sync.flowagent_user', $1, true); "
						 "in autocommit, open a transaction with BEGIN first.")));
	if (strlen(user) > MAX_FLOWAGENT_USER_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("m365sync.flowagent_user is longer than %d bytes", MAX_FLOWAGENT_USER_LEN)));
	return user;
}

/*
 * The acting user, for a user function that may read or write shards on
 * other nodes: where Citus is installed, said once more as a SET LOCAL of
 * our own. Citus carries a setting to the nodes only as the text of a SET
 * LOCAL statement (citus.propagate_set_commands = local, which distribute()
 * sets), and the shards' row level security there reads it; a driver that
 * named the user with set_config() and a bind parameter would otherwise act
 * for nobody on the nodes. Once per transaction and value. Not for a
 * function acting for a named user at its own nest level (m365_act_for): a
 * SET LOCAL would outlive that level.
 */
const char *
m365_acting_user_on_every_node(void)
{
	static LocalTransactionId said_lxid = InvalidLocalTransactionId;
	static char said[MAX_FLOWAGENT_USER_LEN + 1];
	const char *user = m365_acting_user();

	if (said_lxid == MyProc->lxid && strcmp(said, user) == 0)
		return user;
	strlcpy(said, user, sizeof(said));	/* the SET below frees the value user points to */
	said_lxid = InvalidLocalTransactionId;
	if (OidIsValid(get_extension_oid("citus", true)))
		m365_spi_exec(psprintf("SET LOCAL " FLOWAGENT_USER_GUC " = %s", quote_literal_cstr(said)),
					  NULL, SPI_OK_UTILITY, "passing the acting user to the Citus nodes");
	said_lxid = MyProc->lxid;
	return m365_flowagent_user;
}

/*
 * Act for user until m365_act_for_done(level): the setting takes that value
 * at a new GUC nest level (stamped with this transaction, as any SET), and
 * m365_act_for_done restores the value before it; an error in between
 * restores it with the (sub)transaction's abort. For a function whose
 * caller names the user (m365sync._events_window, which a Citus coordinator
 * calls on the node outside a remote transaction, where the coordinator's
 * SET LOCAL does not reach).
 */
int
m365_act_for(const char *user)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option(FLOWAGENT_USER_GUC, user, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}

void
m365_act_for_done(int level)
{
	AtEOXact_GUC(true, level);
}

PG_FUNCTION_INFO_V1(m365sync_acting_user);

/* SQL: m365sync.acting_user() → text, for SQL-language user functions. */
Datum
m365sync_acting_user(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(m365_acting_user_on_every_node()));
}

/* Defines m365sync.flowagent_user (from m365_define_settings). */
void
m365_identity_define_setting(void)
{
	bool		placeholder_fresh;

	/* The hooks stamp each value with its transaction (identity.c). */
	placeholder_fresh = m365_flowagent_user_placeholder_is_fresh();
	m365_flowagent_user_defining(true, placeholder_fresh);
	DefineCustomStringVariable("m365sync.flowagent_user",
							   "The FlowAgent user the current transaction acts for.",
							   "Set it in each transaction with SET LOCAL m365sync.flowagent_user = '<id>'; "
							   "a value from an earlier transaction is refused.",
							   &m365_flowagent_user, "",
							   PGC_USERSET, 0,
							   m365_flowagent_user_check, m365_flowagent_user_assign, NULL);
	m365_flowagent_user_defining(false, placeholder_fresh);
}

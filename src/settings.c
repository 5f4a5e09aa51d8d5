/*
 * settings.c — every setting of SPEC §2: the variables the modules read, the
 * names of the conflict policies, and their definition at load time.
 *
 * Only definitions and their checks live here; what a setting means is
 * decided by the module that reads it. Sits at the bottom of the layers:
 * everything may read a setting, nothing here calls up.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"

#include "http_util.h"
#include "identity.h"
#include "settings.h"

char	   *m365_database = NULL;
char	   *m365_key_file = NULL;
char	   *m365_graph_url = NULL;
char	   *m365_login_url = NULL;
char	   *m365_ca_file = NULL;
int			m365_sync_interval_s = 300;
int			m365_max_connections = 8;
int			m365_max_workers = 1;
int			m365_http_timeout_ms = 30000;
int			m365_window_past_s = 30 * 86400;
int			m365_window_future_s = 365 * 86400;
int			m365_conflict_policy = M365_POLICY_LATEST_WINS;
int			m365_push_batch_size = 20;
char	   *m365_notification_url = NULL;
char	   *m365_lifecycle_url = NULL;
int			m365_audit_retention_s = 365 * 86400;

static const struct config_enum_entry conflict_policy_options[] = {
	{"latest_wins", M365_POLICY_LATEST_WINS, false},
	{"remote_wins", M365_POLICY_REMOTE_WINS, false},
	{"local_wins", M365_POLICY_LOCAL_WINS, false},
	{NULL, 0, false}
};

const char *
m365_conflict_policy_name(int policy)
{
	const struct config_enum_entry *e;

	for (e = conflict_policy_options; e->name; e++)
		if (e->val == policy)
			return e->name;
	return "latest_wins";
}

/* Graph sends notifications only to https endpoints: refuse anything else early. */
static bool
check_webhook_url(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0' || m365_url_is_https(*newval))
		return true;
	GUC_check_errdetail("The URL must start with https:// (Microsoft Graph delivers notifications only over HTTPS).");
	return false;
}

/*
 * calendarView answers 400 for a range over 1825 days (GRAPH.md §11), and
 * the window is window_past + window_future wide: refuse a value that makes
 * the sum larger, checked against the other setting's current value (so
 * with both changed in one reload the file's order matters, and the
 * refusal says which one to lower).
 */
static bool
check_window(int newval, int other, const char *name, const char *other_name)
{
	int64		sum = (int64) newval + other;

	if (sum <= (int64) M365_WINDOW_MAX_DAYS * 86400)
		return true;
	GUC_check_errmsg("%s = %.1f days would make the sync window %.1f days wide, more than %d",
					 name, (double) newval / 86400.0, (double) sum / 86400.0, M365_WINDOW_MAX_DAYS);
	GUC_check_errdetail("window_past + window_future must stay within %d days: Microsoft Graph answers a "
						"calendarView over a longer range with 400 ErrorInvalidRequest. %s is %.1f days now.",
						M365_WINDOW_MAX_DAYS, other_name, (double) other / 86400.0);
	GUC_check_errhint("Lower this setting or %s first.", other_name);
	return false;
}

static bool
check_window_past(int *newval, void **extra, GucSource source)
{
	return check_window(*newval, m365_window_future_s, "m365sync.window_past", "m365sync.window_future");
}

static bool
check_window_future(int *newval, void **extra, GucSource source)
{
	return check_window(*newval, m365_window_past_s, "m365sync.window_future", "m365sync.window_past");
}

void
m365_define_settings(void)
{
	/*
	 * PostgreSQL accepts a postmaster setting only while preloading. Without
	 * preload there is no worker for it to configure, but postgresql.conf
	 * may still name the database (pg_cron deployments, a preload taken
	 * out): then it is defined as a configuration-file setting, since
	 * reserving the prefix below would otherwise warn about an unknown
	 * setting in every session that loads the library.
	 */
	DefineCustomStringVariable("m365sync.database",
							   "Database the m365sync worker serves.",
							   "The worker waits quietly until the extension is installed there. "
							   "Without shared_preload_libraries there is no worker and it has no effect.",
							   &m365_database, "postgres",
							   process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SIGHUP,
							   0, NULL, NULL, NULL);

	DefineCustomStringVariable("m365sync.key_file",
							   "Master key file for m365sync's envelope encryption.",
							   "Lines of the form <key id>:<64 hex chars>; the first is current. "
							   "Must lie outside the data directory and be readable by the owner only.",
							   &m365_key_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);

	DefineCustomStringVariable("m365sync.graph_url",
							   "Base URL of Microsoft Graph.",
							   "Change for national clouds or a simulator.",
							   &m365_graph_url, "https://graph.microsoft.com/v1.0",
							   PGC_SUSET, 0, NULL, NULL, NULL);

	DefineCustomStringVariable("m365sync.login_url",
							   "Base URL of the Microsoft identity platform.",
							   NULL,
							   &m365_login_url, "https://login.microsoftonline.com",
							   PGC_SUSET, 0, NULL, NULL, NULL);

	DefineCustomStringVariable("m365sync.ca_file",
							   "Extra CA bundle trusted for HTTPS, in addition to the system store.",
							   "TLS peer and host verification are always on.",
							   &m365_ca_file, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);

	DefineCustomIntVariable("m365sync.sync_interval",
							"How often each account is polled when no change notification arrives.",
							NULL,
							&m365_sync_interval_s, 300, 1, 7 * 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);

	DefineCustomIntVariable("m365sync.max_connections",
							"Concurrent HTTP requests of each sync worker over its accounts.",
							"Never more than 4 per mailbox, whatever this says.",
							&m365_max_connections, 8, 1, 1024,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("m365sync.max_workers",
							"Sync workers the launcher runs, each syncing its own share of the accounts.",
							"An account belongs to worker account_id modulo this number. Each worker "
							"takes a slot of max_worker_processes.",
							&m365_max_workers, 1, 1, 64,
							process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SIGHUP,
							0, NULL, NULL, NULL);

	DefineCustomIntVariable("m365sync.http_timeout",
							"Timeout of one HTTP request to Microsoft.",
							NULL,
							&m365_http_timeout_ms, 30000, 100, 600000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("m365sync.window_past",
							"How far into the past events are synchronised.",
							"window_past + window_future: at most 1825 days (Graph's calendarView limit).",
							&m365_window_past_s, 30 * 86400, 0, 3650 * 86400,
							PGC_SIGHUP, GUC_UNIT_S, check_window_past, NULL, NULL);

	DefineCustomIntVariable("m365sync.window_future",
							"How far into the future events are synchronised.",
							"window_past + window_future: at most 1825 days (Graph's calendarView limit).",
							&m365_window_future_s, 365 * 86400, 86400, 3650 * 86400,
							PGC_SIGHUP, GUC_UNIT_S, check_window_future, NULL, NULL);

	DefineCustomIntVariable("m365sync.audit_retention",
							"How long rows of the audit trail (m365sync.audit_trail) are kept.",
							"Older rows are pruned by the worker and by m365sync.sync(); no younger row can be deleted.",
							&m365_audit_retention_s, 365 * 86400, 86400, 3650 * 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);

	DefineCustomEnumVariable("m365sync.conflict_policy",
							 "How a conflict between a local and a remote change is settled.",
							 "The losing version is always kept and listed by m365sync.conflicts().",
							 &m365_conflict_policy, M365_POLICY_LATEST_WINS,
							 conflict_policy_options,
							 PGC_SUSET, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("m365sync.push_batch_size",
							"Local changes sent per Graph $batch request.",
							"1 sends one request per change (for comparison in benchmarks).",
							&m365_push_batch_size, 20, 1, 20,
							PGC_SUSET, GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);

	DefineCustomStringVariable("m365sync.notification_url",
							   "HTTPS endpoint FlowAgent serves for Graph change notifications.",
							   "Empty means polling only.",
							   &m365_notification_url, "",
							   PGC_SIGHUP, 0, check_webhook_url, NULL, NULL);

	DefineCustomStringVariable("m365sync.lifecycle_url",
							   "HTTPS endpoint FlowAgent serves for Graph lifecycle notifications.",
							   "Empty means none are requested.",
							   &m365_lifecycle_url, "",
							   PGC_SIGHUP, 0, check_webhook_url, NULL, NULL);

	/* The acting user's setting belongs to identity.c. */
	m365_identity_define_setting();

	MarkGUCPrefixReserved("m365sync");
}

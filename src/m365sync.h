/*
 * m365sync.h — settings and shared declarations of the extension.
 *
 * Every GUC of SPEC §2 is defined in m365sync.c and read through these
 * variables; modules include this header instead of declaring their own.
 * Nothing here includes curl, OpenSSL or cJSON.
 */
#ifndef M365SYNC_H
#define M365SYNC_H

#include "postgres.h"
#include "utils/guc.h"

#define M365SYNC_VERSION "0.1.0"

/* Conflict policies (m365sync.conflict_policy) */
typedef enum M365ConflictPolicy
{
	M365_POLICY_LATEST_WINS,
	M365_POLICY_REMOTE_WINS,
	M365_POLICY_LOCAL_WINS
} M365ConflictPolicy;

extern char *m365_database;
extern char *m365_key_file;
extern char *m365_graph_url;
extern char *m365_login_url;
extern char *m365_ca_file;
extern int	m365_sync_interval_s;	/* seconds */
extern int	m365_max_connections;
extern int	m365_http_timeout_ms;	/* milliseconds */
extern int	m365_window_past_s;		/* seconds */
extern int	m365_window_future_s;	/* seconds */
extern int	m365_conflict_policy;	/* M365ConflictPolicy */
extern int	m365_push_batch_size;	/* writes per $batch (developer setting) */
extern char *m365_notification_url;
extern char *m365_lifecycle_url;
extern char *m365_flowagent_user;

/* Per mailbox, whatever max_connections says (Graph's own limit). */
#define M365_MAX_REQUESTS_PER_MAILBOX 4

extern const char *m365_conflict_policy_name(int policy);

/* worker.c: the sync worker, started by the launcher (launcher.c) */
extern PGDLLEXPORT void m365_worker_main(Datum arg);

/* utility_hook.c: DBA commands that must not meet the worker (preload only) */
extern void m365_install_utility_hook(void);

/* identity.c: the FlowAgent user the current transaction acts for */
extern const char *m365_acting_user(void);
extern bool m365_flowagent_user_check(char **newval, void **extra, GucSource source);
extern void m365_flowagent_user_assign(const char *newval, void *extra);
extern bool m365_flowagent_user_placeholder_is_fresh(void);
extern void m365_flowagent_user_defining(bool defining, bool placeholder_fresh);

#endif							/* M365SYNC_H */

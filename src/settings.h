/*
 * settings.h — the settings of SPEC §2 (settings.c).
 *
 * Every GUC of SPEC §2 is defined in settings.c and read through these
 * variables; modules include this header instead of declaring their own.
 * Nothing here includes curl, OpenSSL or cJSON.
 */
#ifndef M365SYNC_SETTINGS_H
#define M365SYNC_SETTINGS_H

#include "postgres.h"
#include "utils/guc.h"

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
extern int	m365_max_workers;		/* sync workers (postmaster setting) */
extern int	m365_http_timeout_ms;	/* milliseconds */
extern int	m365_window_past_s;		/* seconds */
extern int	m365_window_future_s;	/* seconds */
/* Longest calendarView range Graph accepts (GRAPH.md §11): window_past + window_future stay within it. */
#define M365_WINDOW_MAX_DAYS 1825
extern int	m365_conflict_policy;	/* M365ConflictPolicy */
extern int	m365_push_batch_size;	/* writes per $batch (developer setting) */
extern char *m365_notification_url;
extern char *m365_lifecycle_url;
extern int	m365_audit_retention_s;	/* seconds */

/* Per mailbox, whatever max_connections says (Graph's own limit). */
#define M365_MAX_REQUESTS_PER_MAILBOX 4

extern const char *m365_conflict_policy_name(int policy);

/* Defines every setting; called once, from _PG_init. */
extern void m365_define_settings(void);

#endif							/* M365SYNC_SETTINGS_H */

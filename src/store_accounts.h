/*
 * store_accounts.h — SPI reads and writes of the installation and account
 * tables the connect capability owns: app_config, tenants, oauth_states,
 * accounts (identity, tokens, status) (store_accounts.c), and the accounts'
 * schedule: which are due, when each syncs next (store_accounts_schedule.c).
 *
 * Secrets go in and out in clear here and are encrypted or decrypted inside
 * (keyring.h); nothing above this layer sees a ciphertext, nothing below it
 * sees SQL. Every function runs in the caller's transaction and under the
 * caller's RLS: user functions see only their own user's rows.
 */
#ifndef M365SYNC_STORE_ACCOUNTS_H
#define M365SYNC_STORE_ACCOUNTS_H

#include "postgres.h"

#include "nodes/pg_list.h"

#include "graph_util.h"
#include "store_sync_log.h"

typedef struct M365AppConfig
{
	char	   *client_id;
	char	   *client_secret;	/* decrypted, only when asked for */
	char	   *redirect_uri;
} M365AppConfig;

typedef struct M365OAuthState
{
	int64		state_id;
	char	   *flowagent_user;	/* NULL for admin consent */
	char	   *tenant;			/* NULL for user connect */
	bool		expired;
	bool		used;
} M365OAuthState;

typedef struct M365Tenant
{
	int64		tenant_id;
	char	   *tenant;
	char	   *consent_status;
} M365Tenant;

typedef struct M365Account
{
	int64		account_id;
	char	   *flowagent_user;
	int64		tenant_id;		/* 0 when none */
	char	   *mode;			/* delegated | application */
	char	   *ms_user_id;
	char	   *status;
	bool		token_fresh;	/* access token valid for a while yet */
} M365Account;

/* app_config: ERROR 55000 with a hint to configure() when missing. */
extern void m365_store_app_config_get(M365AppConfig *cfg, bool with_secret);
extern void m365_store_app_config_put(const char *client_id, const char *client_secret,
								 const char *redirect_uri);

/* oauth_states: only SHA-256(state) is stored; the verifier is encrypted. */
extern int64 m365_store_oauth_states_insert(const uint8 hash[32], const char *kind, const char *flowagent_user,
								const char *tenant, const char *code_verifier, int ttl_s);
extern bool m365_store_oauth_states_find(const uint8 hash[32], const char *kind, bool for_update,
							 M365OAuthState *out);
extern char *m365_store_oauth_states_verifier(int64 state_id);
extern void m365_store_oauth_states_mark_used(int64 state_id);
extern void m365_store_oauth_states_delete_expired(void);

/* tenants */
extern int64 m365_store_tenants_ensure(const char *tenant);
extern bool m365_store_tenants_get(const char *tenant, M365Tenant *out);
extern char *m365_store_tenants_name(int64 tenant_id);
extern void m365_store_tenants_set_consent(int64 tenant_id, const char *status,
									 const char *tenant_guid, const char *error);

/* Serialise account creation per FlowAgent user (advisory xact lock). */
extern void m365_store_accounts_lock_user(const char *flowagent_user);

/* accounts; the *_lock functions take the row lock FOR UPDATE */
extern bool m365_store_accounts_lock(int64 account_id, M365Account *out);
extern bool m365_store_accounts_of_user_lock(const char *flowagent_user, M365Account *out);
extern int64 m365_store_accounts_create(const char *flowagent_user, const char *mode, int64 tenant_id);
/*
 * Is the Microsoft 365 user ms_user_id (Graph's immutable user id) already
 * connected by a FlowAgent user other than flowagent_user? Takes the
 * transaction's lock on that id first (as set_identity does), so two
 * transactions cannot both find it free. Sees every account only when the
 * caller is not under row level security (add_mailbox).
 */
extern bool m365_store_accounts_ms_user_taken(const char *ms_user_id, const char *flowagent_user);
extern void m365_store_accounts_set_identity(int64 account_id, const char *ms_user_id, const char *mailbox);
extern void m365_store_accounts_save_tokens(int64 account_id, const char *access_token,
									  const char *refresh_token, long expires_in);
/*
 * The account's access token (decrypted) if it is fresh (valid 5 more
 * minutes) and the account may sync, without locking the row; else NULL.
 */
extern char *m365_store_accounts_fresh_access_token(int64 account_id);
extern char *m365_store_accounts_access_token(int64 account_id);
extern char *m365_store_accounts_refresh_token(int64 account_id);
extern void m365_store_accounts_connected(int64 account_id);
extern void m365_store_accounts_set_status(int64 account_id, const char *status, const char *last_error);
extern void m365_store_tenants_accounts_set_status(int64 tenant_id, const char *from_status,
											 const char *to_status);

/* The account of the acting FlowAgent user; 0 when they have none (caller connected to SPI). */
extern int64 m365_store_accounts_of_acting_user(void);

/* purge.c: the rows of these accounts (connects itself). */
extern void m365_store_accounts_delete_accounts(const int64 *account_ids, int n);

extern int	m365_store_accounts_ids_of_user_lock(const char *flowagent_user, int64 **ids);
extern void m365_store_oauth_states_delete_user(const char *flowagent_user);

/* accounts.subscription_error / subscription_retry_at: a failure, or clear them (code NULL). */
extern void m365_store_accounts_subscription_error(int64 account_id, const char *code, int delay_s);

/* --- the schedule (store_accounts_schedule.c) --- */

/* A failure outside a round (a token refresh): failures + 1, a backoff of delay_s (< 0: 30 s doubling, at most an hour). */
extern void m365_store_accounts_backoff(int64 account_id, const char *last_error, double delay_s);

/* An account the scheduler may sync. */
typedef struct M365DueAccount
{
	int64		account_id;
	char	   *ms_user_id;
	bool		calendars_due;	/* its calendar list is to be read this round */
} M365DueAccount;

/*
 * A sync worker's share of the accounts: worker `index` of `count` takes
 * those with account_id modulo count = index (the rule of wake.c's
 * m365_wake_account_worker, so a wake reaches the worker that syncs the
 * account). Shares are disjoint and cover every account.
 */
typedef struct M365WorkerShare
{
	int			index;
	int			count;
} M365WorkerShare;

/*
 * Accounts to sync (a List of M365DueAccount in the caller's context): the
 * one named (account_id > 0, if it can be synced at all) or up to limit due
 * ones, those a change notification marked first; only those of share, a
 * sync worker's (NULL, m365sync.sync(): every account). A worker's share
 * is also, on a Citus node, only the accounts whose shards the node holds.
 */
extern List *m365_store_accounts_due(int64 account_id, int limit, const M365WorkerShare *share);

/* The (account_id, ms_user_id) rows of the last SPI result as M365DueAccounts in cxt. */
extern List *m365_store_accounts_of_result(MemoryContext cxt);

/*
 * After a round: on success the next sync in interval_s and the failures
 * forgotten; on failure a backoff (Retry-After when given, else 30 s
 * doubling per failure up to the interval, with jitter).
 */
extern void m365_store_accounts_schedule(int64 account_id, const M365RoundStats *st, int interval_s);

/* The schedule after successful rounds of n accounts (a wave), in one statement. */
extern void m365_store_accounts_schedule_ok_many(const int64 *account_ids, int n, int interval_s);

/* How often an account's calendar list is read again (GRAPH.md §11: ids change, calendars go). */
#define M365_CALENDAR_LIST_INTERVAL_S	86400

/*
 * accounts.calendars_listed_at says when the calendar list is due to be read
 * again (never read, a day old, or made stale): m365_store_accounts_due's
 * calendars_due, always false under 0.1.0's schema.
 */
/* The list was read now. */
extern void m365_store_accounts_calendars_listed(int64 account_id);
/* A calendar answered 404: read the list at once. */
extern void m365_store_accounts_calendars_stale(int64 account_id);

#endif							/* M365SYNC_STORE_ACCOUNTS_H */

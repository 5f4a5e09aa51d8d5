/*
 * push_send.h — private to push.c and push_send.c: a write on its way and
 * the state of one account's push, shared by the flow (push.c: waves and
 * answers) and the sending (push_send.c: requests, single or $batch).
 */
#ifndef M365SYNC_PUSH_SEND_H
#define M365SYNC_PUSH_SEND_H

#include "postgres.h"

#include "graph.h"
#include "http.h"
#include "store_push.h"
#include "store_sync_log.h"

/* One write on its way, and what came back. */
typedef struct Write
{
	M365PushEntry *e;
	M365HttpMethod method;
	const char *method_name;
	char	   *path;			/* relative to graph_url */
	char	   *if_match;
	char	   *body;			/* JSON text or NULL */
	/* the answer */
	M365HttpResult transport;
	long		status;
	char	   *answer;			/* body text, "" when none */
	bool		has_retry_after;
	double		retry_after_s;
} Write;

typedef struct PushState
{
	int64		account_id;
	const char *ms_user_id;
	M365TokenSource ts;
	int64		ts_account;
	char	   *rejected;		/* a token Graph refused with 401 */
	bool		saw_401;		/* in this wave */
	bool		no_token;		/* the account has no usable token */
	char	   *last_token;		/* the token this wave used */
	int			auth_retries;
	bool		transient;
	bool		has_retry_after;
	double		retry_after_s;
	char		transient_code[64];
	const char *account_state;	/* graph_util.h: the account's state, round over */
	char		state_code[64];
	int			probe;			/* this wave's read after a 403: 0 not yet, 1 readable,
								 * 2 denied too, 3 failed otherwise */
	M365RoundStats *st;
} PushState;

/*
 * Fill w for its entry (method, path, If-Match, body); false when there is
 * nothing to send, which the caller settles at once.
 */
extern bool m365_push_prepare_write(PushState *ps, Write *w);

/* Send n writes as single requests; their answers into ws[]. */
extern void m365_push_send_single(PushState *ps, Write *ws, int n);

/*
 * Send n writes in $batch requests of per_batch; their answers into ws[].
 * A batch Graph refused as a whole is sent again one by one.
 */
extern void m365_push_send_batched(PushState *ps, Write *ws, int n, int per_batch);

#endif							/* M365SYNC_PUSH_SEND_H */

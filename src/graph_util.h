/*
 * graph_util.h — pure-C readers of Microsoft Graph responses (graph_util.c):
 * the error body, a user, a page of calendars. The pull and push helpers add
 * their page readers here or next to it.
 *
 * No postgres.h: unit tests and fuzz targets call these directly. Strings
 * are malloc'd; each struct has its free function. Nothing here logs.
 */
#ifndef M365SYNC_GRAPH_UTIL_H
#define M365SYNC_GRAPH_UTIL_H

#include <stdbool.h>
#include <stddef.h>

/* {"error":{"code":"...","message":"..."}}: only the code is kept. */
extern int	m365_graph_parse_error(const char *body, size_t len, char *code, size_t codelen);

/*
 * An answer that is a state of the whole account, not a verdict on one
 * request (GRAPH.md §11): "mailbox_disabled" for MailboxNotEnabledForRESTAPI
 * (a lapsed licence or an inactive mailbox; seen as 404 or 401),
 * "access_denied" for 403 ErrorAccessDenied (an ApplicationAccessPolicy, a
 * permission taken away); NULL otherwise. Only 404 ErrorItemNotFound means
 * an item is gone.
 */
extern const char *m365_graph_account_state(long status, const char *code);

/* 404 ErrorItemNotFound: the item is gone (and nothing else is). */
extern bool m365_graph_item_gone(long status, const char *code);

typedef struct M365GraphUser
{
	char	   *id;				/* Graph user id (GUID) */
	char	   *upn;			/* userPrincipalName: an address, encrypt it */
	char	   *mail;			/* may be NULL */
} M365GraphUser;

extern int	m365_graph_parse_user(const char *body, size_t len, M365GraphUser *out);
extern void m365_graph_user_free(M365GraphUser *u);

typedef struct M365GraphCalendar
{
	char	   *id;
	char	   *name;
	bool		is_default;
	bool		can_edit;
} M365GraphCalendar;

typedef struct M365GraphCalendarPage
{
	M365GraphCalendar *items;
	int			count;
	char	   *next_link;		/* @odata.nextLink, or NULL on the last page */
} M365GraphCalendarPage;

/* 0 on success; -1 when the body is not a page (no "value" array). */
extern int	m365_graph_parse_calendars(const char *body, size_t len, M365GraphCalendarPage *out);
extern void m365_graph_calendar_page_free(M365GraphCalendarPage *p);


/*
 * $batch (GRAPH.md §5). One request of a batch: method ("POST", "PATCH",
 * "DELETE", "GET"), URL relative to the Graph version root ("/users/..."),
 * an If-Match value or NULL, and a JSON body (text) or NULL.
 */
typedef struct M365BatchRequest
{
	const char *method;
	const char *url;
	const char *if_match;
	const char *body;
} M365BatchRequest;

#define M365_BATCH_MAX 20

/*
 * The $batch body for n (1..M365_BATCH_MAX) requests, ids "0".."n-1", each
 * asking for immutable ids and UTC times. malloc'd; NULL when out of memory
 * or a body is not JSON.
 */
extern char *m365_graph_batch_body(const M365BatchRequest *reqs, int n);

/* One inner answer: body re-serialised as text (malloc'd, NULL when none). */
typedef struct M365BatchAnswer
{
	bool		present;		/* the batch answered this id */
	int			status;
	char	   *retry_after;	/* Retry-After header, malloc'd or NULL */
	char	   *body;
} M365BatchAnswer;

/*
 * Read a $batch answer into out[0..n-1] by id (answers come in any order).
 * 0 on success; -1 when the body is not a batch answer. Ids outside 0..n-1
 * are ignored; a missing id leaves present false.
 */
extern int	m365_graph_parse_batch(const char *body, size_t len, M365BatchAnswer *out, int n);
extern void m365_graph_batch_answers_free(M365BatchAnswer *out, int n);

/* "id" and "changeKey" of an event answer (malloc'd); -1 when absent. */
extern int	m365_graph_parse_event_ids(const char *body, size_t len, char **id, char **change_key);

/*
 * A page of an events listing: the id of the item whose transactionId is
 * txid (malloc'd into *found, or NULL), and the nextLink (malloc'd or NULL).
 * -1 when the body is not a page.
 */
extern int	m365_graph_find_transaction(const char *body, size_t len, const char *txid,
										char **found, char **next_link);

#endif							/* M365SYNC_GRAPH_UTIL_H */

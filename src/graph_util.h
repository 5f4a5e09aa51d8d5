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

#endif							/* M365SYNC_GRAPH_UTIL_H */

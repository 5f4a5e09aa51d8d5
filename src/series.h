/*
 * series.h — series masters for the pull (series.c).
 *
 * A delta page that holds occurrences or exceptions is parked while the
 * masters of their series are fetched (GRAPH.md §11: occurrences arrive as
 * stubs whose content is their master's, and a cancelled occurrence gets no
 * @removed). For each series the page touches, one $batch asks for the
 * master (GET /users/{id}/events/{masterId}) and, with a window, its
 * instances there; ten series to a batch, one batch in flight per mailbox.
 * The pull then applies masters and page in one transaction with the
 * cursor, so a crash leaves either both or neither: a later round fetches
 * the master again.
 */
#ifndef M365SYNC_SERIES_H
#define M365SYNC_SERIES_H

#include "postgres.h"

#include <cjson/cJSON.h>

#include "datatype/timestamp.h"

#include "delta_page.h"
#include "graph.h"
#include "http.h"

typedef struct M365Series M365Series;

/* The calendar's window: instants, and as the query strings the delta uses. */
typedef struct M365SeriesWindow
{
	TimestampTz start;
	TimestampTz end;
	const char *start_iso;
	const char *end_iso;
} M365SeriesWindow;

/*
 * The series a page touches, or NULL when none (the page then stays the
 * caller's); window NULL when the calendar has none (no reconciling). Otherwise the page is the series state's until
 * m365_series_free. Lives in the current memory context.
 */
extern M365Series *m365_series_plan(const M365DeltaPage *page, const char *ms_user_id,
									const M365SeriesWindow *window);

/* Set up the next $batch in req; false when every batch has its answer. */
extern bool m365_series_next_request(M365Series *s, M365HttpRequest *req);

/* More batches to send before the page can be applied. */
extern bool m365_series_waiting(const M365Series *s);

/* The Graph ids of the masters (n of them), in the series state's memory. */
extern const char *const *m365_series_master_ids(const M365Series *s, int *n);

/*
 * Take the answer to the batch set up last. false (res filled) when the
 * round must stop here: the batch or a master failed other than 404.
 */
extern bool m365_series_take_answer(M365Series *s, const M365HttpRequest *req, M365GraphResult *res);

extern M365DeltaPage *m365_series_page(M365Series *s);

/* The fetched masters (Graph JSON), for the caller to apply before the page. */
extern int	m365_series_master_count(const M365Series *s);
extern const cJSON *m365_series_master(const M365Series *s, int i);

/*
 * The event to apply for a page item: the item itself, or a stub filled
 * from its master (owned by s until the next call). NULL when its master is
 * gone (404): the item is skipped.
 */
extern const cJSON *m365_series_event_of(M365Series *s, const cJSON *item);

/*
 * After the page: masters Graph answered 404 for are removed, and each
 * series' occurrences in the window reconciled with its instances. Inside
 * the caller's SPI connection. Returns how many events went.
 */
extern int	m365_series_finish(M365Series *s, int64 account_id);

/* Frees the parked page and everything of the series state. Safe on NULL. */
extern void m365_series_free(M365Series *s);

#endif							/* M365SYNC_SERIES_H */

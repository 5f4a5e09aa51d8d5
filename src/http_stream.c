/*
 * http_stream.c — m365_http_perform_stream (see http.h): a stream of
 * requests kept in flight over one curl multi handle, each answer handed to
 * the caller as soon as it arrives while the next requests are already on
 * the wire. A transfer's set-up, answer and release are http.c's
 * (http_transfer.h); this file only decides when to start one and when to
 * hand one over.
 *
 * Memory as in http.c: the transfers are malloc'd and released in
 * PG_FINALLY on every path; each answer lives in its slot's memory context
 * until done() has returned.
 */
#include "postgres.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "utils/memutils.h"

#include "http.h"
#include "http_transfer.h"

/* The stream's state (stream_transfers). */
typedef struct Stream
{
	CURLM	   *multi;
	M365HttpTransfer *slots;
	bool	   *answered;
	MemoryContext *slot_cxt;
	int			nslots;
	int			max_parallel;
	int			active;
	bool		exhausted;		/* next() had nothing: ask again only after an answer */
	M365HttpNext next;
	void	   *arg;
	int			handing;		/* the slot whose answer done() has (its memory in use), or -1 */
} Stream;

/* The stream whose done() is running, for m365_http_stream_send_now. */
static Stream *current_stream = NULL;

/*
 * Start requests while capacity and free slots last, then let libcurl send
 * what it can and collect what has arrived (never waiting).
 */
static void
stream_pump(Stream *s)
{
	CURLMsg    *msg;
	int			still,
				queued,
				i;

	for (i = 0; i < s->nslots && s->active < s->max_parallel && !s->exhausted; i++)
	{
		M365HttpRequest *req;

		if (s->slots[i].req != NULL || s->answered[i] || i == s->handing)
			continue;
		if ((req = s->next(s->arg)) == NULL)
		{
			s->exhausted = true;
			break;
		}
		memset(&s->slots[i], 0, sizeof(M365HttpTransfer));
		memset(&req->response, 0, sizeof(M365HttpResponse));
		s->slots[i].req = req;
		if (m365_http_start_transfer(s->multi, &s->slots[i], s->slot_cxt[i]))
			s->active++;
		else
			s->answered[i] = true;	/* failed before sending: answered below */
	}
	if (s->active > 0 && curl_multi_perform(s->multi, &still) != CURLM_OK)
		elog(ERROR, "curl_multi_perform failed");
	while (s->active > 0 && (msg = curl_multi_info_read(s->multi, &queued)) != NULL)
	{
		M365HttpTransfer *t;
		int			slot;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
		slot = t - s->slots;
		m365_http_transfer_answered(t, msg->data.result, s->slot_cxt[slot]);
		s->answered[slot] = true;
		s->active--;
	}
}

/*
 * Keep up to max_parallel transfers in flight: ask next() for a request
 * whenever capacity is free, hand each answer to done(). Before each
 * answer is handed over, the capacity freed so far is refilled and the new
 * requests are sent, so the network stays busy while done() works
 * (applying a page is database work); with many connections, once an
 * eighth of them is free (each libcurl pass visits every transfer).
 * Answers that arrived wait in their
 * slots meanwhile, hence twice as many slots as transfers; each slot's
 * answer lives in its memory context, reset after done().
 */
static void
stream_transfers(CURLM *multi, M365HttpTransfer *slots, bool *answered, MemoryContext *slot_cxt,
				 int nslots, int max_parallel, M365HttpNext next, M365HttpDone done, void *arg)
{
	Stream		s = {multi, slots, answered, slot_cxt, nslots, max_parallel, 0, false, next, arg, -1};

	current_stream = &s;			/* m365_http_perform_stream puts back the outer one */
	for (;;)
	{
		bool		any = false;
		int			i;

		stream_pump(&s);
		for (i = 0; i < nslots; i++)
		{
			M365HttpRequest *req;

			if (!answered[i])
				continue;
			/* refill and send before this answer's work, once enough capacity is free */
			if (any && !s.exhausted && max_parallel - s.active >= Max(1, max_parallel / 8))
				stream_pump(&s);
			any = true;
			req = slots[i].req;
			slots[i].req = NULL;
			answered[i] = false;
			s.handing = i;
			done(req, arg);
			s.handing = -1;
			MemoryContextReset(slot_cxt[i]);
			s.exhausted = false;	/* done() may have made more work */
		}
		if (any)
			continue;
		if (s.active == 0)
			break;
		curl_multi_poll(multi, NULL, 0, M365_HTTP_POLL_MS, NULL);
		/* Safe here: PG_FINALLY in our caller releases every handle. */
		CHECK_FOR_INTERRUPTS();
	}
}

void
m365_http_stream_send_now(void)
{
	Stream	   *s = current_stream;

	if (s == NULL || s->handing < 0)
		return;
	s->exhausted = false;
	stream_pump(s);
}

void
m365_http_perform_stream(M365HttpNext next, M365HttpDone done, void *arg, int max_parallel)
{
	int			parallel = Max(max_parallel, 1);
	int			nslots = 2 * parallel;
	CURLM	   *multi = m365_http_multi_for(parallel);
	M365HttpTransfer *volatile slots;
	bool	   *answered;
	MemoryContext *slot_cxt;
	MemoryContext stream_cxt;
	Stream	   *outer = current_stream;
	int			i;

	stream_cxt = AllocSetContextCreate(CurrentMemoryContext, "m365sync http stream",
									   ALLOCSET_SMALL_SIZES);
	slot_cxt = MemoryContextAlloc(stream_cxt, sizeof(MemoryContext) * nslots);
	answered = MemoryContextAllocZero(stream_cxt, sizeof(bool) * nslots);
	for (i = 0; i < nslots; i++)
		slot_cxt[i] = AllocSetContextCreate(stream_cxt, "m365sync http answer",
											ALLOCSET_DEFAULT_SIZES);
	slots = calloc(nslots, sizeof(M365HttpTransfer));
	if (slots == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));

	m365_http_stream_depth++;
	PG_TRY();
	{
		stream_transfers(multi, slots, answered, slot_cxt, nslots, parallel, next, done, arg);
	}
	PG_FINALLY();
	{
		m365_http_stream_depth--;
		current_stream = outer;
		for (i = 0; i < nslots; i++)
			m365_http_release_transfer(&slots[i]);
		free(slots);
	}
	PG_END_TRY();
	MemoryContextDelete(stream_cxt);
}

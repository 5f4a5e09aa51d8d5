/*
 * events.c — what a FlowAgent write means (upsert_event, delete_event): the
 * merge rules of SPEC §4 and Graph's own, above the store.
 *
 * A create takes the caller's object (minus calendarId); an update merges
 * the caller's fields into the stored Graph object and names the fields it
 * changed; the whole result is read again as Graph would read it, the
 * calendar must be writable, and a recurrence may not be set on an
 * occurrence. Only when every check has passed does it write, through
 * store_events.c: the event row and its outbox entry in the caller's
 * transaction. No SQL here; messages name fields and ids, never content.
 */
#include "postgres.h"

#include "utils/jsonb.h"

#include "event_json.h"
#include "event_patch.h"
#include "event_row.h"
#include "events.h"
#include "jsonb_cjson.h"
#include "store_calendars.h"
#include "store_events.h"
#include "store_outbox.h"

/* Graph events have about 50 top-level fields; more is not an event */
#define MAX_CHANGED_FIELDS 256

/* The calendar to write to (0 = the default), checked; returns its id. */
static int64
check_calendar_writable(int64 account_id, int64 calendar_id, bool named)
{
	int64		found;
	bool		can_edit;

	if (!m365_store_calendars_find(account_id, calendar_id, &found, &can_edit))
	{
		if (named)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event field calendarId names no calendar of this user")));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("this user has no default calendar"),
				 errhint("Name one in the event's calendarId (see m365sync.calendars()).")));
	}
	if (!can_edit)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("calendar %lld is read-only", (long long) found)));
	return found;
}

/* The merged event as jsonb; its text came from a jsonb argument, so it is valid. */
static Jsonb *
cjson_to_jsonb(const cJSON *obj)
{
	Jsonb	   *jb = m365_cjson_to_jsonb(obj);

	if (jb == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("event holds text that is not valid UTF-8")));
	return jb;
}

static cJSON *
jsonb_to_cjson(Jsonb *jb)
{
	char	   *text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	cJSON	   *obj = cJSON_Parse(text);

	pfree(text);
	if (obj == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("event is not valid JSON")));
	return obj;
}

/*
 * The online meeting fields (GRAPH.md §11): isOnlineMeeting a boolean that,
 * once true, Graph cannot turn back to false; onlineMeetingProvider one of
 * Graph's values. stored is the event before the change, or NULL.
 */
static void
check_online_meeting(const cJSON *input, const cJSON *stored)
{
	static const char *const providers[] = {"teamsForBusiness", "skypeForBusiness",
	"skypeForConsumer", "unknown", NULL};
	const cJSON *on = cJSON_GetObjectItemCaseSensitive(input, "isOnlineMeeting");
	const cJSON *prov = cJSON_GetObjectItemCaseSensitive(input, "onlineMeetingProvider");

	if (on != NULL && !cJSON_IsBool(on))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event field isOnlineMeeting must be true or false")));
	if (prov != NULL)
	{
		bool		known = false;

		for (const char *const *p = providers; cJSON_IsString(prov) && *p; p++)
			known = known || strcmp(*p, prov->valuestring) == 0;
		if (!known)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event field onlineMeetingProvider has an unknown value"),
					 errhint("Use teamsForBusiness, skypeForBusiness, skypeForConsumer or unknown.")));
	}
	if (cJSON_IsFalse(on) && stored != NULL &&
		cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(stored, "isOnlineMeeting")))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event field isOnlineMeeting cannot be turned off"),
				 errdetail("Microsoft Graph cannot remove the online meeting of an event."),
				 errhint("Delete the event and create it again without an online meeting.")));
}

/* The stored type after a local change (Graph's own rules). */
static const char *
type_after_change(const char *stored, const M365Event *ev, bool is_create)
{
	if (is_create || strcmp(stored, "singleInstance") == 0 || strcmp(stored, "seriesMaster") == 0)
		return ev->recurrence ? "seriesMaster" : "singleInstance";
	if (strcmp(stored, "occurrence") == 0)
		return "exception";
	return stored;
}

/*
 * Keep in changed[] only the names Graph accepts in a PATCH (event_patch.c's
 * list, the only ones a push ever sends), in order; returns how many. The
 * outbox stores these names in clear (outbox.changed_fields), so a name the
 * caller made up never reaches a plain column: other fields stay in the
 * encrypted content (Graph's future properties are kept, as SPEC asks) but
 * are neither listed nor sent.
 */
static int
writable_only(const char **changed, int n)
{
	int			k = 0;

	for (int i = 0; i < n; i++)
		if (m365_event_field_writable(changed[i]))
			changed[k++] = changed[i];
	return k;
}

/* Does the caller's object set the event's times? */
static bool
times_from_caller(const cJSON *input)
{
	return cJSON_GetObjectItemCaseSensitive(input, M365_F_START) != NULL ||
		cJSON_GetObjectItemCaseSensitive(input, M365_F_END) != NULL;
}

int64
m365_events_upsert(int64 account_id, Jsonb *input_jb, const M365StoredEvent *stored)
{
	bool		is_create = stored == NULL;
	volatile int64 event_id = is_create ? 0 : stored->event_id;
	int64		calendar_id = 0;
	cJSON	   *volatile input = NULL;
	cJSON	   *volatile doc = NULL;

	input = jsonb_to_cjson(input_jb);
	PG_TRY();
	{
		M365Event	ev;
		M365EventError err;
		M365EventColumns cols;
		const char *changed[MAX_CHANGED_FIELDS];
		int			nchanged = 0;
		int			nwritable = 0;
		bool		has_cal;
		Jsonb	   *data;

		if (cJSON_GetArraySize(input) > MAX_CHANGED_FIELDS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event has more than %d fields", MAX_CHANGED_FIELDS)));
		m365_event_strip_readonly(input);
		if (is_create)
		{
			if (m365_event_parse(input, M365_EV_FROM_CALLER, &ev, &err) != M365_EV_OK)
				m365_event_report(&err);
			has_cal = ev.has_calendar_id;
			calendar_id = has_cal ? ev.calendar_id : 0;
			check_online_meeting(input, NULL);
			doc = cJSON_Duplicate(input, true);
			if (doc == NULL)
				elog(ERROR, "out of memory");
			cJSON_DeleteItemFromObjectCaseSensitive(doc, M365_F_CALENDAR_ID);
		}
		else
		{
			if (m365_event_parse(input, M365_EV_FROM_CALLER_PATCH, &ev, &err) != M365_EV_OK)
				m365_event_report(&err);
			if (ev.has_calendar_id && ev.calendar_id != stored->calendar_id)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("event field calendarId cannot change"),
						 errhint("Delete the event and create it in the other calendar.")));
			has_cal = true;
			calendar_id = stored->calendar_id;
			doc = jsonb_to_cjson(stored->data);
			check_online_meeting(input, doc);
			nchanged = m365_event_merge(doc, input, changed, MAX_CHANGED_FIELDS);
			if (nchanged < 0)
				elog(ERROR, "out of memory");
			nwritable = writable_only(changed, nchanged);
		}
		calendar_id = check_calendar_writable(account_id, calendar_id, has_cal);

		/* the whole event as it will be stored: Graph's rules, and its times */
		if (m365_event_parse(doc, M365_EV_FROM_GRAPH, &ev, &err) != M365_EV_OK)
			m365_event_report(&err);
		if (ev.recurrence && !is_create &&
			(strcmp(stored->event_type, "occurrence") == 0 ||
			 strcmp(stored->event_type, "exception") == 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event field recurrence cannot be set on an occurrence")));
		/* the stored copy's times are Graph's, rendered in UTC; times the caller sends are checked strictly */
		m365_event_columns(&ev, !is_create && !times_from_caller(input), &cols);
		cols.event_type = type_after_change(is_create ? NULL : stored->event_type, &ev, is_create);

		/* all checked: now write */
		if (is_create || nchanged > 0)
		{
			data = cjson_to_jsonb(doc);
			if (is_create)
			{
				event_id = m365_store_events_next_id();
				m365_store_events_insert(account_id, event_id, calendar_id, &cols, false, 0,
										m365_store_events_seal(account_id, event_id, data),
										"pending", 0);
				m365_store_outbox_queue_upsert(account_id, event_id, true, true, NULL, 0, NULL);
			}
			else
			{
				m365_store_events_update_local(account_id, event_id, &cols,
											  m365_store_events_seal(account_id, event_id, data));
				m365_store_outbox_queue_upsert(account_id, event_id, false, stored->graph_id == NULL,
										changed, nwritable, stored->change_key);
			}
		}
	}
	PG_FINALLY();
	{
		cJSON_Delete(input);
		cJSON_Delete(doc);
	}
	PG_END_TRY();
	return event_id;
}


void
m365_events_delete(int64 account_id, const M365StoredEvent *ev)
{
	check_calendar_writable(account_id, ev->calendar_id, true);
	(void) m365_store_events_delete(account_id, ev);
}

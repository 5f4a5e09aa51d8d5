/*
 * event_json.c — read and check Microsoft Graph event objects (cJSON).
 *
 * Shared by upsert_event (a caller's JSON), the pull (Graph's JSON) and the
 * push. Pure C: no backend headers, no palloc, no ereport, so unit tests and
 * the fuzz target run it as is. It reports the path of the offending field,
 * never the field's value (values are event content). Unknown fields are not
 * an error: they stay in the object, which is stored whole.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "event_json.h"

static M365EventStatus
fail(M365EventError *err, M365EventStatus status, const char *fmt, const char *a, int i)
{
	if (err)
	{
		err->status = status;
		snprintf(err->field, sizeof(err->field), fmt, a ? a : "", i);
	}
	return status;
}

/* a caller's input is checked harder than Graph's own output */
#define STRICT(mode)			((mode) != M365_EV_FROM_GRAPH)

#define FAIL(st, path)			fail(err, (st), "%s", (path), 0)
#define FAILF(st, fmt, a, i)	fail(err, (st), (fmt), (a), (i))

/* ---------------------------------------------------------------- dates */

static bool
is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
days_in_month(int y, int m)
{
	static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	return (m == 2 && is_leap(y)) ? 29 : d[m - 1];
}

int64_t
m365_days_from_civil(int y, int m, int d)
{
	/* Howard Hinnant's days_from_civil */
	int64_t		era;
	int64_t		yoe,
				doy,
				doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* n digits at p into *out; false unless all are digits */
static bool
digits(const char *p, int n, int *out)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
	{
		if (!isdigit((unsigned char) p[i]))
			return false;
		v = v * 10 + (p[i] - '0');
	}
	*out = v;
	return true;
}

static M365EventStatus
parse_date_part(const char *s, M365DateTime *out)
{
	memset(out, 0, sizeof(*out));
	if (!digits(s, 4, &out->year) || s[4] != '-' ||
		!digits(s + 5, 2, &out->month) || s[7] != '-' ||
		!digits(s + 8, 2, &out->day))
		return M365_EV_BAD_DATETIME;
	if (out->year < 1 || out->month < 1 || out->month > 12 ||
		out->day < 1 || out->day > days_in_month(out->year, out->month))
		return M365_EV_DATETIME_RANGE;
	return M365_EV_OK;
}

M365EventStatus
m365_parse_date(const char *s, M365DateTime *out)
{
	M365EventStatus st;

	if (s == NULL)
		return M365_EV_BAD_DATETIME;
	st = parse_date_part(s, out);
	if (st == M365_EV_OK && s[10] != '\0')
		return M365_EV_BAD_DATETIME;
	return st;
}

M365EventStatus
m365_parse_datetime(const char *s, M365DateTime *out)
{
	M365EventStatus st;
	const char *p;

	if (s == NULL)
		return M365_EV_BAD_DATETIME;
	/* the date part may be out of range while the rest is unreadable: format first */
	st = parse_date_part(s, out);
	if (st == M365_EV_BAD_DATETIME)
		return st;
	if ((s[10] != 'T' && s[10] != 't') ||
		!digits(s + 11, 2, &out->hour) || s[13] != ':' ||
		!digits(s + 14, 2, &out->minute))
		return M365_EV_BAD_DATETIME;
	p = s + 16;
	if (*p == ':')
	{
		if (!digits(p + 1, 2, &out->second))
			return M365_EV_BAD_DATETIME;
		p += 3;
		if (*p == '.')
		{
			int			n = 0,
						usec = 0;

			p++;
			while (isdigit((unsigned char) *p))
			{
				if (n < 6)
					usec = usec * 10 + (*p - '0');
				n++;
				p++;
			}
			if (n == 0 || n > 7)
				return M365_EV_BAD_DATETIME;
			for (; n < 6; n++)
				usec *= 10;
			out->usec = usec;
		}
	}
	if (*p == 'Z' || *p == 'z')
	{
		out->has_offset = true;
		out->offset_sec = 0;
		p++;
	}
	else if (*p == '+' || *p == '-')
	{
		int			oh,
					om;

		if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om))
			return M365_EV_BAD_DATETIME;
		if (oh > 14 || om > 59)
			return M365_EV_DATETIME_RANGE;
		out->has_offset = true;
		out->offset_sec = (oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
		p += 6;
	}
	if (*p != '\0')
		return M365_EV_BAD_DATETIME;
	if (st != M365_EV_OK)
		return st;
	if (out->hour > 23 || out->minute > 59 || out->second > 59)
		return M365_EV_DATETIME_RANGE;
	return M365_EV_OK;
}

/* ---------------------------------------------------------- small checks */

size_t
m365_utf8_chars(const char *s)
{
	size_t		n = 0;

	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
		if ((*p & 0xC0) != 0x80)
			n++;
	return n;
}

static bool
in_list(const char *v, const char *const *list)
{
	for (; *list; list++)
		if (strcasecmp(v, *list) == 0)
			return true;
	return false;
}

static const char *const show_as_values[] =
{"free", "tentative", "busy", "oof", "workingElsewhere", "unknown", NULL};
static const char *const sensitivity_values[] =
{"normal", "personal", "private", "confidential", NULL};
static const char *const importance_values[] = {"low", "normal", "high", NULL};
static const char *const body_type_values[] = {"text", "html", NULL};
static const char *const day_values[] =
{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", NULL};
static const char *const pattern_values[] =
{"daily", "weekly", "absoluteMonthly", "relativeMonthly", "absoluteYearly",
"relativeYearly", NULL};
static const char *const range_values[] = {"endDate", "noEnd", "numbered", NULL};
static const char *const index_values[] =
{"first", "second", "third", "fourth", "last", NULL};
static const char *const attendee_type_values[] =
{"required", "optional", "resource", NULL};

/*
 * The members of the event being parsed, by name: m365_event_parse looks up
 * some thirty fields of an object of about as many members, and a linear
 * search for each cost more than the rest of the parse. An open-addressing
 * table of the top object's members, built once per parse and cleared
 * after it; any other object is searched as cJSON does. The first member
 * of a name wins, as in cJSON_GetObjectItemCaseSensitive.
 */
#define INDEX_SLOTS 256			/* a power of two; objects of more than half go unindexed */

static struct
{
	const cJSON *obj;			/* the object indexed, or NULL */
	const cJSON *slot[INDEX_SLOTS];
} ix;

static unsigned
name_hash(const char *s)
{
	unsigned	h = 2166136261u;	/* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char) *s) * 16777619u;
	return h;
}

static void
index_members(const cJSON *obj)
{
	const cJSON *c;
	int			n = 0;

	ix.obj = NULL;
	for (c = obj->child; c != NULL; c = c->next)
		if (++n > INDEX_SLOTS / 2)
			return;
	memset(ix.slot, 0, sizeof(ix.slot));
	for (c = obj->child; c != NULL; c = c->next)
	{
		unsigned	h;

		if (c->string == NULL)
			continue;
		for (h = name_hash(c->string) & (INDEX_SLOTS - 1); ix.slot[h] != NULL; h = (h + 1) & (INDEX_SLOTS - 1))
			if (strcmp(ix.slot[h]->string, c->string) == 0)
				break;
		if (ix.slot[h] == NULL)
			ix.slot[h] = c;
	}
	ix.obj = obj;
}

static const cJSON *
member(const cJSON *obj, const char *key)
{
	unsigned	h;

	if (obj == NULL || obj != ix.obj)
		return cJSON_GetObjectItemCaseSensitive(obj, key);
	for (h = name_hash(key) & (INDEX_SLOTS - 1); ix.slot[h] != NULL; h = (h + 1) & (INDEX_SLOTS - 1))
		if (strcmp(ix.slot[h]->string, key) == 0)
			return ix.slot[h];
	return NULL;
}

/*
 * Optional string member: absent or JSON null → *out NULL; another type is
 * BAD_VALUE. In caller mode a value outside `allowed` is BAD_VALUE too.
 */
static M365EventStatus
opt_string(const cJSON *obj, const char *key, const char *path,
		   const char *const *allowed, M365EventMode mode,
		   const char **out, M365EventError *err)
{
	const cJSON *it = member(obj, key);

	*out = NULL;
	if (it == NULL || cJSON_IsNull(it))
		return M365_EV_OK;
	if (!cJSON_IsString(it) || it->valuestring == NULL)
		return FAIL(M365_EV_BAD_VALUE, path);
	if (allowed && STRICT(mode) && !in_list(it->valuestring, allowed))
		return FAIL(M365_EV_BAD_VALUE, path);
	*out = it->valuestring;
	return M365_EV_OK;
}

static M365EventStatus
opt_bool(const cJSON *obj, const char *key, bool *out, M365EventError *err)
{
	const cJSON *it = member(obj, key);

	*out = false;
	if (it == NULL || cJSON_IsNull(it))
		return M365_EV_OK;
	if (!cJSON_IsBool(it))
		return FAIL(M365_EV_BAD_VALUE, key);
	*out = cJSON_IsTrue(it);
	return M365_EV_OK;
}

/* An integer-valued JSON number within [lo, hi] */
static bool
int_in(const cJSON *it, double lo, double hi, int64_t *out)
{
	double		v;

	if (!cJSON_IsNumber(it))
		return false;
	v = it->valuedouble;
	if (v != v || v < lo || v > hi || v != (double) (int64_t) v)
		return false;
	if (out)
		*out = (int64_t) v;
	return true;
}

static M365EventStatus
opt_object(const cJSON *obj, const char *key, const cJSON **out, M365EventError *err)
{
	const cJSON *it = member(obj, key);

	*out = NULL;
	if (it == NULL || cJSON_IsNull(it))
		return M365_EV_OK;
	if (!cJSON_IsObject(it))
		return FAIL(M365_EV_BAD_VALUE, key);
	*out = it;
	return M365_EV_OK;
}

/* ------------------------------------------------------------ the parts */

static M365EventStatus
parse_time(const cJSON *obj, const char *key, M365EventTime *t, M365EventError *err)
{
	const cJSON *it = member(obj, key);
	const cJSON *dt,
			   *tz;
	M365EventStatus st;

	memset(t, 0, sizeof(*t));
	if (it == NULL || cJSON_IsNull(it))
		return M365_EV_OK;
	if (!cJSON_IsObject(it))
		return FAIL(M365_EV_BAD_VALUE, key);
	dt = cJSON_GetObjectItemCaseSensitive(it, M365_F_DATE_TIME);
	if (dt == NULL || !cJSON_IsString(dt))
		return FAILF(M365_EV_BAD_DATETIME, "%s." M365_F_DATE_TIME, key, 0);
	st = m365_parse_datetime(dt->valuestring, &t->dt);
	if (st != M365_EV_OK)
		return FAILF(st, "%s." M365_F_DATE_TIME, key, 0);
	tz = cJSON_GetObjectItemCaseSensitive(it, M365_F_TIME_ZONE);
	if (tz != NULL && !cJSON_IsNull(tz))
	{
		if (!cJSON_IsString(tz) || tz->valuestring[0] == '\0')
			return FAILF(M365_EV_BAD_VALUE, "%s." M365_F_TIME_ZONE, key, 0);
		t->time_zone = tz->valuestring;
	}
	else if (!t->dt.has_offset)
		return FAILF(M365_EV_BAD_VALUE, "%s." M365_F_TIME_ZONE, key, 0);
	t->present = true;
	return M365_EV_OK;
}

static M365EventStatus
parse_attendees(const cJSON *arr, M365EventMode mode, M365EventError *err)
{
	int			i = 0;
	const cJSON *a;

	if (!cJSON_IsArray(arr))
		return FAIL(M365_EV_BAD_VALUE, M365_F_ATTENDEES);
	cJSON_ArrayForEach(a, arr)
	{
		const cJSON *email,
				   *addr,
				   *type;

		if (!cJSON_IsObject(a))
			return FAILF(M365_EV_BAD_VALUE, M365_F_ATTENDEES "[%.0s%d]", "", i);
		email = cJSON_GetObjectItemCaseSensitive(a, M365_F_EMAIL_ADDRESS);
		if (email != NULL && !cJSON_IsNull(email) && !cJSON_IsObject(email))
			return FAILF(M365_EV_BAD_VALUE, M365_F_ATTENDEES "[%.0s%d]." M365_F_EMAIL_ADDRESS, "", i);
		addr = email ? cJSON_GetObjectItemCaseSensitive(email, M365_F_ADDRESS) : NULL;
		if (addr != NULL && !cJSON_IsNull(addr) && !cJSON_IsString(addr))
			return FAILF(M365_EV_BAD_VALUE, M365_F_ATTENDEES "[%.0s%d]." M365_F_EMAIL_ADDRESS "." M365_F_ADDRESS, "", i);
		if (STRICT(mode))
		{
			const char *s = cJSON_IsString(addr) ? addr->valuestring : NULL;

			/* an address is something@something; we check no more than that */
			if (s == NULL || s[0] == '@' || strchr(s, '@') == NULL ||
				strchr(s, '@')[1] == '\0' || strlen(s) > 320)
				return FAILF(M365_EV_BAD_VALUE, M365_F_ATTENDEES "[%.0s%d]." M365_F_EMAIL_ADDRESS "." M365_F_ADDRESS, "", i);
			type = cJSON_GetObjectItemCaseSensitive(a, M365_F_TYPE);
			if (type != NULL && !cJSON_IsNull(type) &&
				(!cJSON_IsString(type) || !in_list(type->valuestring, attendee_type_values)))
				return FAILF(M365_EV_BAD_VALUE, M365_F_ATTENDEES "[%.0s%d]." M365_F_TYPE, "", i);
		}
		i++;
	}
	return M365_EV_OK;
}

static M365EventStatus
parse_categories(const cJSON *arr, M365EventError *err)
{
	int			i = 0;
	const cJSON *c;

	if (!cJSON_IsArray(arr))
		return FAIL(M365_EV_BAD_VALUE, M365_F_CATEGORIES);
	cJSON_ArrayForEach(c, arr)
	{
		if (!cJSON_IsString(c))
			return FAILF(M365_EV_BAD_VALUE, M365_F_CATEGORIES "[%.0s%d]", "", i);
		i++;
	}
	return M365_EV_OK;
}

static M365EventStatus
parse_recurrence(const cJSON *rec, M365EventMode mode, M365EventError *err)
{
	const cJSON *pat = cJSON_GetObjectItemCaseSensitive(rec, "pattern");
	const cJSON *rng = cJSON_GetObjectItemCaseSensitive(rec, "range");
	const cJSON *it;
	const char *ptype = NULL,
			   *rtype = NULL,
			   *s;
	M365DateTime sd,
				ed;
	M365EventStatus st;

	if (!cJSON_IsObject(pat))
		return FAIL(M365_EV_BAD_VALUE, "recurrence.pattern");
	if (!cJSON_IsObject(rng))
		return FAIL(M365_EV_BAD_VALUE, "recurrence.range");

	if ((st = opt_string(pat, M365_F_TYPE, "recurrence.pattern.type", pattern_values,
						 mode, &ptype, err)) != M365_EV_OK)
		return st;
	if (ptype == NULL)
		return FAIL(M365_EV_BAD_VALUE, "recurrence.pattern.type");
	it = cJSON_GetObjectItemCaseSensitive(pat, "interval");
	if (it != NULL && !int_in(it, STRICT(mode) ? 1 : 0, 99999, NULL))
		return FAIL(M365_EV_BAD_VALUE, "recurrence.pattern.interval");
	it = cJSON_GetObjectItemCaseSensitive(pat, "daysOfWeek");
	if (it != NULL && !cJSON_IsNull(it))
	{
		const cJSON *d;
		int			i = 0;

		if (!cJSON_IsArray(it))
			return FAIL(M365_EV_BAD_VALUE, "recurrence.pattern.daysOfWeek");
		cJSON_ArrayForEach(d, it)
		{
			if (!cJSON_IsString(d) || !in_list(d->valuestring, day_values))
				return FAILF(M365_EV_BAD_VALUE, "recurrence.pattern.daysOfWeek[%.0s%d]", "", i);
			i++;
		}
	}
	it = cJSON_GetObjectItemCaseSensitive(pat, "dayOfMonth");
	if (it != NULL && !int_in(it, 0, 31, NULL))
		return FAIL(M365_EV_BAD_VALUE, "recurrence.pattern.dayOfMonth");
	it = cJSON_GetObjectItemCaseSensitive(pat, "month");
	if (it != NULL && !int_in(it, 0, 12, NULL))
		return FAIL(M365_EV_BAD_VALUE, "recurrence.pattern.month");
	if ((st = opt_string(pat, "index", "recurrence.pattern.index", index_values,
						 mode, &s, err)) != M365_EV_OK)
		return st;
	if ((st = opt_string(pat, "firstDayOfWeek", "recurrence.pattern.firstDayOfWeek",
						 day_values, mode, &s, err)) != M365_EV_OK)
		return st;

	if (STRICT(mode))
	{
		/* what each pattern type cannot do without (Graph's rules) */
		bool		need_days = strcasecmp(ptype, "weekly") == 0 ||
			strcasecmp(ptype, "relativeMonthly") == 0 ||
			strcasecmp(ptype, "relativeYearly") == 0;
		bool		need_dom = strcasecmp(ptype, "absoluteMonthly") == 0 ||
			strcasecmp(ptype, "absoluteYearly") == 0;
		bool		need_month = strcasecmp(ptype, "absoluteYearly") == 0 ||
			strcasecmp(ptype, "relativeYearly") == 0;

		it = cJSON_GetObjectItemCaseSensitive(pat, "daysOfWeek");
		if (need_days && cJSON_GetArraySize(it) < 1)
			return FAIL(M365_EV_BAD_VALUE, "recurrence.pattern.daysOfWeek");
		it = cJSON_GetObjectItemCaseSensitive(pat, "dayOfMonth");
		if (need_dom && !int_in(it, 1, 31, NULL))
			return FAIL(M365_EV_BAD_VALUE, "recurrence.pattern.dayOfMonth");
		it = cJSON_GetObjectItemCaseSensitive(pat, "month");
		if (need_month && !int_in(it, 1, 12, NULL))
			return FAIL(M365_EV_BAD_VALUE, "recurrence.pattern.month");
	}

	if ((st = opt_string(rng, M365_F_TYPE, "recurrence.range.type", range_values,
						 mode, &rtype, err)) != M365_EV_OK)
		return st;
	if (rtype == NULL)
		return FAIL(M365_EV_BAD_VALUE, "recurrence.range.type");
	it = cJSON_GetObjectItemCaseSensitive(rng, "startDate");
	if (!cJSON_IsString(it))
		return FAIL(M365_EV_BAD_DATETIME, "recurrence.range.startDate");
	if ((st = m365_parse_date(it->valuestring, &sd)) != M365_EV_OK)
		return FAIL(st, "recurrence.range.startDate");
	it = cJSON_GetObjectItemCaseSensitive(rng, "endDate");
	/* Graph writes "0001-01-01" for "no end date" */
	if (cJSON_IsString(it) && strcmp(it->valuestring, "0001-01-01") != 0)
	{
		if ((st = m365_parse_date(it->valuestring, &ed)) != M365_EV_OK)
			return FAIL(st, "recurrence.range.endDate");
		if (strcasecmp(rtype, "endDate") == 0 &&
			m365_days_from_civil(ed.year, ed.month, ed.day) <
			m365_days_from_civil(sd.year, sd.month, sd.day))
			return FAIL(M365_EV_END_BEFORE_START, "recurrence.range.endDate");
	}
	else if (it != NULL && !cJSON_IsNull(it) && !cJSON_IsString(it))
		return FAIL(M365_EV_BAD_VALUE, "recurrence.range.endDate");
	else if (STRICT(mode) && strcasecmp(rtype, "endDate") == 0)
		return FAIL(M365_EV_BAD_VALUE, "recurrence.range.endDate");
	it = cJSON_GetObjectItemCaseSensitive(rng, "numberOfOccurrences");
	if (it != NULL && !int_in(it, 0, 999999, NULL))
		return FAIL(M365_EV_BAD_VALUE, "recurrence.range.numberOfOccurrences");
	if (STRICT(mode) && strcasecmp(rtype, "numbered") == 0 &&
		!int_in(it, 1, 999999, NULL))
		return FAIL(M365_EV_BAD_VALUE, "recurrence.range.numberOfOccurrences");
	if ((st = opt_string(rng, "recurrenceTimeZone", "recurrence.range.recurrenceTimeZone",
						 NULL, mode, &s, err)) != M365_EV_OK)
		return st;
	return M365_EV_OK;
}

static bool
at_midnight(const M365DateTime *d)
{
	return d->hour == 0 && d->minute == 0 && d->second == 0 && d->usec == 0;
}

/* ---------------------------------------------------------------- event */

static M365EventStatus parse_event(const cJSON *obj, M365EventMode mode, M365Event *ev,
									M365EventError *err);

M365EventStatus
m365_event_parse(const cJSON *obj, M365EventMode mode, M365Event *ev, M365EventError *err)
{
	M365EventStatus st;

	if (cJSON_IsObject(obj))
		index_members(obj);
	st = parse_event(obj, mode, ev, err);
	ix.obj = NULL;
	return st;
}

static M365EventStatus
parse_event(const cJSON *obj, M365EventMode mode, M365Event *ev, M365EventError *err)
{
	M365EventStatus st;
	const cJSON *it;
	const cJSON *body;
	const cJSON *loc;
	const char *type = NULL;

	memset(ev, 0, sizeof(*ev));
	if (err)
	{
		err->status = M365_EV_OK;
		err->field[0] = '\0';
	}
	if (!cJSON_IsObject(obj))
		return FAIL(M365_EV_MALFORMED, "event");

#define CHECK(call) do { if ((st = (call)) != M365_EV_OK) return st; } while (0)

	CHECK(opt_string(obj, M365_F_ID, M365_F_ID, NULL, mode, &ev->id, err));
	CHECK(opt_string(obj, M365_F_CHANGE_KEY, M365_F_CHANGE_KEY, NULL, mode, &ev->change_key, err));
	CHECK(opt_string(obj, M365_F_ICAL_UID, M365_F_ICAL_UID, NULL, mode, &ev->ical_uid, err));
	CHECK(opt_string(obj, M365_F_SERIES_MASTER_ID, M365_F_SERIES_MASTER_ID, NULL, mode,
					 &ev->series_master_id, err));
	CHECK(opt_string(obj, M365_F_TYPE, M365_F_TYPE, NULL, mode, &type, err));
	if (type == NULL || strcasecmp(type, "singleInstance") == 0)
		ev->type = M365_EVT_SINGLE;
	else if (strcasecmp(type, "occurrence") == 0)
		ev->type = M365_EVT_OCCURRENCE;
	else if (strcasecmp(type, "exception") == 0)
		ev->type = M365_EVT_EXCEPTION;
	else if (strcasecmp(type, "seriesMaster") == 0)
		ev->type = M365_EVT_SERIES_MASTER;
	else
		return FAIL(M365_EV_BAD_VALUE, M365_F_TYPE);
	it = member(obj, M365_F_ORIGINAL_START);
	if (it != NULL && !cJSON_IsNull(it))
	{
		if (!cJSON_IsString(it))
			return FAIL(M365_EV_BAD_DATETIME, M365_F_ORIGINAL_START);
		if ((st = m365_parse_datetime(it->valuestring, &ev->original_start)) != M365_EV_OK)
			return FAIL(st, M365_F_ORIGINAL_START);
		ev->has_original_start = true;
	}

	CHECK(opt_string(obj, M365_F_SUBJECT, M365_F_SUBJECT, NULL, mode, &ev->subject, err));
	if (STRICT(mode) && ev->subject &&
		m365_utf8_chars(ev->subject) > M365_SUBJECT_MAX_CHARS)
		return FAIL(M365_EV_TOO_LONG, M365_F_SUBJECT);

	CHECK(opt_object(obj, M365_F_BODY, &body, err));
	if (body)
	{
		CHECK(opt_string(body, M365_F_CONTENT_TYPE, M365_F_BODY "." M365_F_CONTENT_TYPE,
						 body_type_values, mode, &ev->body_type, err));
		CHECK(opt_string(body, M365_F_CONTENT, M365_F_BODY "." M365_F_CONTENT,
						 NULL, mode, &ev->body_content, err));
		if (STRICT(mode) && ev->body_content &&
			strlen(ev->body_content) > M365_BODY_MAX_BYTES)
			return FAIL(M365_EV_TOO_LONG, M365_F_BODY "." M365_F_CONTENT);
	}
	CHECK(opt_object(obj, M365_F_LOCATION, &loc, err));
	if (loc)
		CHECK(opt_string(loc, M365_F_DISPLAY_NAME, M365_F_LOCATION "." M365_F_DISPLAY_NAME,
						 NULL, mode, &ev->location, err));

	CHECK(opt_bool(obj, M365_F_IS_ALL_DAY, &ev->is_all_day, err));
	CHECK(opt_bool(obj, M365_F_IS_CANCELLED, &ev->is_cancelled, err));
	CHECK(parse_time(obj, M365_F_START, &ev->start, err));
	CHECK(parse_time(obj, M365_F_END, &ev->end, err));
	if (!ev->start.present && mode != M365_EV_FROM_CALLER_PATCH)
		return FAILF(M365_EV_BAD_VALUE, "%s", M365_F_START, 0);
	if (!ev->end.present && mode != M365_EV_FROM_CALLER_PATCH)
		return FAILF(M365_EV_BAD_VALUE, "%s", M365_F_END, 0);
	if (ev->is_all_day && ev->start.present && ev->end.present)
	{
		/* all-day events are dates: the wall-clock date is what counts */
		if (!at_midnight(&ev->start.dt))
			return FAIL(M365_EV_NOT_MIDNIGHT, M365_F_START "." M365_F_DATE_TIME);
		if (!at_midnight(&ev->end.dt))
			return FAIL(M365_EV_NOT_MIDNIGHT, M365_F_END "." M365_F_DATE_TIME);
		if (m365_days_from_civil(ev->end.dt.year, ev->end.dt.month, ev->end.dt.day) <=
			m365_days_from_civil(ev->start.dt.year, ev->start.dt.month, ev->start.dt.day))
			return FAIL(M365_EV_END_BEFORE_START, M365_F_END);
	}

	CHECK(opt_string(obj, M365_F_SHOW_AS, M365_F_SHOW_AS, show_as_values, mode, &ev->show_as, err));
	CHECK(opt_string(obj, M365_F_SENSITIVITY, M365_F_SENSITIVITY, sensitivity_values, mode,
					 &ev->sensitivity, err));
	CHECK(opt_string(obj, M365_F_IMPORTANCE, M365_F_IMPORTANCE, importance_values, mode,
					 &ev->importance, err));
	CHECK(opt_string(obj, M365_F_WEB_LINK, M365_F_WEB_LINK, NULL, mode, &ev->web_link, err));
	{
		bool		dummy;

		CHECK(opt_bool(obj, M365_F_IS_REMINDER_ON, &dummy, err));
	}
	it = member(obj, M365_F_REMINDER_MINUTES);
	if (it != NULL && !cJSON_IsNull(it) && !int_in(it, 0, 4 * 7 * 24 * 60 * 52, NULL))
		return FAIL(M365_EV_BAD_VALUE, M365_F_REMINDER_MINUTES);

	it = member(obj, M365_F_LAST_MODIFIED);
	if (it != NULL && !cJSON_IsNull(it))
	{
		if (!cJSON_IsString(it))
			return FAIL(M365_EV_BAD_DATETIME, M365_F_LAST_MODIFIED);
		if ((st = m365_parse_datetime(it->valuestring, &ev->last_modified)) != M365_EV_OK)
			return FAIL(st, M365_F_LAST_MODIFIED);
		/* "0001-01-01T00:00:00Z" means no time */
		ev->has_last_modified = ev->last_modified.year > 1;
	}

	CHECK(opt_object(obj, M365_F_ORGANIZER, &ev->organizer, err));
	it = member(obj, M365_F_ATTENDEES);
	if (it != NULL && !cJSON_IsNull(it))
	{
		CHECK(parse_attendees(it, mode, err));
		ev->attendees = it;
	}
	it = member(obj, M365_F_CATEGORIES);
	if (it != NULL && !cJSON_IsNull(it))
	{
		CHECK(parse_categories(it, err));
		ev->categories = it;
	}
	CHECK(opt_object(obj, M365_F_RECURRENCE, &ev->recurrence, err));
	if (ev->recurrence)
	{
		CHECK(parse_recurrence(ev->recurrence, mode, err));
		if (STRICT(mode) &&
			(ev->type == M365_EVT_OCCURRENCE || ev->type == M365_EVT_EXCEPTION))
			return FAIL(M365_EV_BAD_VALUE, M365_F_RECURRENCE);
	}

	it = member(obj, M365_F_CALENDAR_ID);
	if (it != NULL && !cJSON_IsNull(it))
	{
		int64_t		id;

		if (!int_in(it, 1, 9007199254740991.0, &id))
			return FAIL(M365_EV_BAD_VALUE, M365_F_CALENDAR_ID);
		ev->has_calendar_id = true;
		ev->calendar_id = id;
	}
#undef CHECK
	return M365_EV_OK;
}

/* ------------------------------------------------------- caller writes */

static const char *const readonly_fields[] =
{M365_F_ID, M365_F_ETAG, M365_F_CHANGE_KEY, M365_F_ICAL_UID, M365_F_TYPE,
	M365_F_SERIES_MASTER_ID, M365_F_ORIGINAL_START, "originalStartTimeZone",
	"originalEndTimeZone", M365_F_CREATED, M365_F_LAST_MODIFIED, M365_F_WEB_LINK,
	M365_F_TRANSACTION_ID, M365_F_REMOVED, "@odata.context", "@odata.type",
	"bodyPreview", "isOrganizer", "responseStatus", "hasAttachments", NULL};

void
m365_event_strip_readonly(cJSON *obj)
{
	/* every copy: a JSON text may repeat a name, and the last would win */
	for (const char *const *f = readonly_fields; *f; f++)
	{
		cJSON	   *item;

		while ((item = cJSON_DetachItemFromObjectCaseSensitive(obj, *f)) != NULL)
			cJSON_Delete(item);
	}
}

int
m365_event_merge(cJSON *target, const cJSON *patch, const char **changed, int max)
{
	int			n = 0;
	const cJSON *p;

	cJSON_ArrayForEach(p, patch)
	{
		cJSON	   *old;
		cJSON	   *copy;

		if (p->string == NULL || strcmp(p->string, M365_F_CALENDAR_ID) == 0)
			continue;
		old = cJSON_GetObjectItemCaseSensitive(target, p->string);
		if (old != NULL && cJSON_Compare(old, p, true))
			continue;
		copy = cJSON_Duplicate(p, true);
		if (copy == NULL)
			return -1;
		if (old != NULL)
			cJSON_ReplaceItemInObjectCaseSensitive(target, p->string, copy);
		else if (!cJSON_AddItemToObject(target, p->string, copy))
		{
			cJSON_Delete(copy);
			return -1;
		}
		if (n < max)
			changed[n++] = p->string;
	}
	return n;
}

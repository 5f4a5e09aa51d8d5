/*
 * jsonb_cjson.c — a cJSON tree straight into a jsonb value, without printing
 * it and parsing the text again (see jsonb_cjson.h).
 *
 * The pull stores every Graph event as jsonb; printing each one with cJSON
 * and feeding the text to jsonb_in cost a third of the worker's time in an
 * initial sync. Walking the tree into pushJsonbValue gives the same jsonb:
 * duplicate keys keep the last value (as jsonb_in does), numbers become
 * numeric with cJSON's own shortest round-trip rendering, and a non-finite
 * number becomes null (cJSON prints it as null).
 *
 * Text is checked: every key and string must be valid UTF-8 (what Graph
 * sends) and is converted to the database encoding when that differs, so
 * nothing unreadable lands in a jsonb column. The walk never ereports on bad
 * text; it reports it, and the caller decides (the pull skips the event).
 * Strings are not copied: JsonbValueToJsonb copies them before we return.
 */
#include "postgres.h"

#include <math.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "jsonb_cjson.h"

/* A C string from cJSON as a jsonb string; false when it is not valid text. */
static bool
text_value(const char *s, JsonbValue *v)
{
	int			len = (int) strlen(s);

	if (!pg_verify_mbstr(PG_UTF8, s, len, true))
		return false;
	if (GetDatabaseEncoding() != PG_UTF8 && GetDatabaseEncoding() != PG_SQL_ASCII)
	{
		s = pg_any_to_server(s, len, PG_UTF8);
		len = (int) strlen(s);
	}
	v->type = jbvString;
	v->val.string.val = (char *) s;
	v->val.string.len = len;
	return true;
}

/* A JSON number as numeric, rendered as cJSON renders it. */
static void
number_value(double d, JsonbValue *v)
{
	char		buf[32];

	if (!isfinite(d))
	{
		v->type = jbvNull;
		return;
	}
	v->type = jbvNumeric;
	if (d == floor(d) && fabs(d) < 1e15)
	{
		v->val.numeric = int64_to_numeric((int64) d);
		return;
	}
	snprintf(buf, sizeof(buf), "%1.15g", d);
	if (strtod(buf, NULL) != d)
		snprintf(buf, sizeof(buf), "%1.17g", d);
	v->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(buf),
														 ObjectIdGetDatum(InvalidOid),
														 Int32GetDatum(-1)));
}

/* A scalar node as a jsonb scalar; false on bad text. */
static bool
scalar_value(const cJSON *node, JsonbValue *v)
{
	if (cJSON_IsString(node))
		return node->valuestring != NULL && text_value(node->valuestring, v);
	if (cJSON_IsNumber(node))
		number_value(node->valuedouble, v);
	else if (cJSON_IsBool(node))
	{
		v->type = jbvBool;
		v->val.boolean = cJSON_IsTrue(node);
	}
	else
		v->type = jbvNull;
	return true;
}

/* An object's member, for putting the keys in jsonb's order first. */
typedef struct Member
{
	const cJSON *node;
	int			key_len;
	int			pos;			/* in the document: equal keys keep it */
} Member;

/* jsonb's key order: shorter first, then bytewise; equal keys as they came. */
static int
member_cmp(const void *a, const void *b)
{
	const Member *ma = a;
	const Member *mb = b;
	int			r;

	if (ma->key_len != mb->key_len)
		return ma->key_len < mb->key_len ? -1 : 1;
	r = memcmp(ma->node->string, mb->node->string, ma->key_len);
	if (r != 0)
		return r;
	return ma->pos < mb->pos ? -1 : 1;
}

/*
 * Push one node and its children as `token`; false on bad text. *built is
 * what pushJsonbValue returned last: at the top, the finished container.
 *
 * An object's members are pushed in jsonb's key order, so the sort that
 * pushJsonbValue runs at the object's end finds them in order at once (its
 * quicksort checks for that first); with duplicate keys it sorts them as
 * it always did. The value is the same either way.
 */
static bool
push_node(JsonbParseState **state, const cJSON *node, JsonbIteratorToken token,
		  JsonbValue **built)
{
	JsonbValue	v;
	const cJSON *c;
	bool		is_object = cJSON_IsObject(node);

	check_stack_depth();		/* cJSON nests up to CJSON_NESTING_LIMIT */
	if (!is_object && !cJSON_IsArray(node))
	{
		if (!scalar_value(node, &v))
			return false;
		*built = pushJsonbValue(state, token, &v);
		return true;
	}
	pushJsonbValue(state, is_object ? WJB_BEGIN_OBJECT : WJB_BEGIN_ARRAY, NULL);
	if (!is_object)
	{
		for (c = node->child; c != NULL; c = c->next)
			if (!push_node(state, c, WJB_ELEM, built))
				return false;
	}
	else
	{
		int			n = 0;
		Member	   *m;

		for (c = node->child; c != NULL; c = c->next)
			n++;
		m = palloc(sizeof(Member) * Max(n, 1));
		n = 0;
		for (c = node->child; c != NULL; c = c->next)
		{
			if (c->string == NULL)
				return false;
			m[n].node = c;
			m[n].key_len = (int) strlen(c->string);
			m[n].pos = n;
			n++;
		}
		qsort(m, n, sizeof(Member), member_cmp);
		for (int i = 0; i < n; i++)
		{
			JsonbValue	key;

			if (!text_value(m[i].node->string, &key))
				return false;
			pushJsonbValue(state, WJB_KEY, &key);
			if (!push_node(state, m[i].node, WJB_VALUE, built))
				return false;
		}
		pfree(m);
	}
	*built = pushJsonbValue(state, is_object ? WJB_END_OBJECT : WJB_END_ARRAY, NULL);
	return true;
}

Jsonb *
m365_cjson_to_jsonb(const cJSON *node)
{
	JsonbParseState *state = NULL;
	JsonbValue	v,
			   *built = NULL;

	if (!cJSON_IsObject(node) && !cJSON_IsArray(node))
		return scalar_value(node, &v) ? JsonbValueToJsonb(&v) : NULL;
	if (!push_node(&state, node, WJB_VALUE, &built))
		return NULL;
	return JsonbValueToJsonb(built);
}

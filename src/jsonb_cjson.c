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

/*
 * Push one node and its children as `token`; false on bad text. *built is
 * what pushJsonbValue returned last: at the top, the finished container.
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
	for (c = node->child; c != NULL; c = c->next)
	{
		if (is_object)
		{
			JsonbValue	key;

			if (c->string == NULL || !text_value(c->string, &key))
				return false;
			pushJsonbValue(state, WJB_KEY, &key);
		}
		if (!push_node(state, c, is_object ? WJB_VALUE : WJB_ELEM, built))
			return false;
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

/*
 * jsonb_cjson.c — a cJSON tree straight into a jsonb value, without printing
 * it and parsing the text again (see jsonb_cjson.h).
 *
 * The pull stores every Graph event as jsonb; printing each one with cJSON
 * and feeding the text to jsonb_in cost a third of the worker's time in an
 * initial sync. Walking the tree into a JsonbValue tree gives the same jsonb:
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

/* An object's member, its key as stored, for putting the keys in jsonb's order. */
typedef struct Member
{
	const char *key;			/* in the database encoding */
	int32		len;
	int32		pos;			/* in the document: equal keys keep it; the node's index */
} Member;

/* jsonb's key order: shorter first, then bytewise; equal keys as they came. */
static int
member_cmp(const void *a, const void *b)
{
	const Member *ma = a;
	const Member *mb = b;
	int			r;

	if (ma->len != mb->len)
		return ma->len < mb->len ? -1 : 1;
	r = memcmp(ma->key, mb->key, ma->len);
	if (r != 0)
		return r;
	return ma->pos < mb->pos ? -1 : 1;
}

/*
 * Build one node and its children as a JsonbValue tree in *v; false on bad
 * text. Containers are built whole (an object's pairs already in jsonb's
 * order, duplicate keys reduced to the last, as pushJsonbValue leaves
 * them), so JsonbValueToJsonb converts the tree at once, without the parse
 * state's copying of every value.
 */
static bool
build_node(const cJSON *node, JsonbValue *v)
{
	const cJSON *c;
	int			n = 0;

	check_stack_depth();		/* cJSON nests up to CJSON_NESTING_LIMIT */
	if (!cJSON_IsObject(node) && !cJSON_IsArray(node))
		return scalar_value(node, v);
	for (c = node->child; c != NULL; c = c->next)
		n++;
	if (cJSON_IsArray(node))
	{
		JsonbValue *elems = palloc(sizeof(JsonbValue) * Max(n, 1));

		n = 0;
		for (c = node->child; c != NULL; c = c->next)
			if (!build_node(c, &elems[n++]))
				return false;
		v->type = jbvArray;
		v->val.array.elems = elems;
		v->val.array.nElems = n;
		v->val.array.rawScalar = false;
	}
	else
	{
		Member	   *m = palloc(sizeof(Member) * Max(n, 1));
		const cJSON **nodes = palloc(sizeof(cJSON *) * Max(n, 1));
		JsonbPair  *pairs;
		int			np = 0;

		n = 0;
		for (c = node->child; c != NULL; c = c->next)
		{
			JsonbValue	key;

			if (c->string == NULL || !text_value(c->string, &key))
				return false;
			m[n].key = key.val.string.val;
			m[n].len = key.val.string.len;
			m[n].pos = n;
			nodes[n++] = c;
		}
		/* Graph's members mostly come in order already: then no sort at all */
		for (int i = 1; i < n; i++)
			if (member_cmp(&m[i - 1], &m[i]) > 0)
			{
				qsort(m, n, sizeof(Member), member_cmp);
				break;
			}
		pairs = palloc(sizeof(JsonbPair) * Max(n, 1));
		for (int i = 0; i < n; i++)
		{
			/* equal keys sort by position: the last one is the value kept */
			if (i + 1 < n && m[i + 1].len == m[i].len && memcmp(m[i + 1].key, m[i].key, m[i].len) == 0)
				continue;
			pairs[np].key.type = jbvString;
			pairs[np].key.val.string.val = (char *) m[i].key;
			pairs[np].key.val.string.len = m[i].len;
			if (!build_node(nodes[m[i].pos], &pairs[np].value))
				return false;
			pairs[np].order = np;
			np++;
		}
		pfree(m);
		pfree(nodes);
		v->type = jbvObject;
		v->val.object.pairs = pairs;
		v->val.object.nPairs = np;
	}
	return true;
}

Jsonb *
m365_cjson_to_jsonb(const cJSON *node)
{
	JsonbValue	v;

	if (!build_node(node, &v))
		return NULL;
	return JsonbValueToJsonb(&v);
}
